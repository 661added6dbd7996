"""scripts/learning_curve.py: budget-tagged runs → rows, gap shares, figure; ablations apart."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("learning_curve", REPO / "scripts/learning_curve.py")
lc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lc)


def averages(id_: float, ood: float) -> dict[str, float]:
    return {"avg/all/id@384": id_, "avg/all/ood@384": ood, "avg/all/id@96": id_ - 5}


def write(root: Path, label: str, seed: int, id_: float, ood: float) -> None:
    folder = root / label / f"seed{seed}"
    folder.mkdir(parents=True)
    payload = {
        "method": label.split("+")[0],
        "model": "minilm-l6",
        "metrics": averages(id_, ood),
        "metrics_before": averages(70.0, 60.0),
        "timings": {"train_s": 10.0},
    }
    (folder / "results.json").write_text(json.dumps(payload))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write(root, "SAMD+s250", 0, 72.0, 61.0)
    write(root, "SAMD+s1000", 0, 75.0, 65.0)
    write(root, "EmbedDistill+s1000", 0, 74.0, 58.0)
    write(root, "SAMD+s1000-no-span", 0, 74.5, 64.0)
    write(root, "SAMD", 0, 99.0, 99.0)  # no budget tag: not part of the curve
    ref = root / "_reference"
    ref.mkdir()
    teacher = {"method": "eval", "model": "teacher", "metrics": averages(80.0, 70.0)}
    (ref / "teacher-embeddinggemma-300m.json").write_text(json.dumps(teacher))
    return root


def test_rows_gains_and_gap_shares(archive):
    frame = lc.collect(archive, 384)
    assert len(frame) == 4 and 99.0 not in frame["id"].tolist()
    assert frame.attrs["teacher"] == {"id": 80.0, "ood": 70.0}
    samd = frame[(frame.method == "SAMD") & (frame.variant == "") & (frame.steps == 1000)].iloc[0]
    assert (samd.id_gain, samd.id_gap) == (5.0, 0.5)  # (75 − 70) / (80 − 70)
    assert samd.ood_gap == pytest.approx(0.5)
    emb = frame[frame.method == "EmbedDistill"].iloc[0]
    assert emb.ood_gap == pytest.approx(-0.2)  # it loses OOD: a negative share
    assert set(frame.loc[frame.variant != "", "variant"]) == {"no-span"}


def test_main_writes_csv_figure_and_table(archive, tmp_path, capsys):
    out = tmp_path / "out"
    assert lc.main([str(archive), "--out", str(out)]) == 0
    assert (out / "learning_curve.png").stat().st_size > 0
    rows = pd.read_csv(out / "learning_curve.csv")
    assert sorted(rows.steps.unique()) == [250, 1000]
    table = (out / "learning_curve.md").read_text()
    assert "teacher ID 80.00 / OOD 70.00" in table and "no-span" in capsys.readouterr().out


def test_no_budget_tagged_runs_is_exit_2(tmp_path):
    write(tmp_path / "runs", "SAMD", 0, 75.0, 65.0)
    assert lc.main([str(tmp_path / "runs")]) == 2


def test_gap_share_without_a_gap_is_none():
    assert lc.gap_share(75.0, 70.0, None) is None and lc.gap_share(75.0, 70.0, 70.0) is None
