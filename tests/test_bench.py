"""The benchmark script runs end to end (tiny models, a couple of steps; numbers not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_script_smoke(tiny_dirs, tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "scripts/bench.py",
        "--teacher",
        str(tiny_dirs["teacher"]),
        "--student",
        str(tiny_dirs["student"]),
        "--methods",
        "SAMD",
        "MinED",
        "DSKD",
        "CDM",
        "EMO",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--batch-size",
        "8",
        "--output",
        str(out),
    ]
    env = {"HF_HUB_OFFLINE": "1", "SAMD_CACHE_DIR": str(tmp_path / "cache"), "PATH": ""}
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["steps"]) == {
        "SimCSE",
        "SAMD (cache)",
        "MinED (cache)",
        "DSKD (cache)",
        "CDM (cache)",
        "EMO (cache)",
        "SAMD (live teacher)",
    }
    assert report["steps"]["SimCSE"]["ratio_mean"] == 1.0
    assert report["alignment"]["speedup"] > 1
