"""scripts/collect_results.py on synthetic sweeps with known numbers (fast, no models)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from samd_common import report
from samd_common.data import TASKS
from samd_common.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
DIMS = [384, 192, 96, 48]


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "collect_results", REPO / "scripts" / "collect_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cr = _load_script()


def suite_metrics(base: float, overrides: dict[str, float] | None = None, dims=DIMS) -> dict:
    """Every task scores ``base`` at the full dim, 2 points less per halving; no avg keys."""
    metrics = {}
    for t in TASKS.values():
        full = (overrides or {}).get(t.name, base)
        for d in dims:
            metrics[f"{t.name}/{t.main_score}@{d}"] = full - 2 * math.log2(dims[0] / d)
    return metrics


def write_run(root: Path, label: str, seed: int, metrics: dict, before: dict | None = None):
    run_dir = root / label / f"seed{seed}"
    run_dir.mkdir(parents=True)
    payload = {
        "method": label.split("+")[0],
        "model": "minilm-l6",
        "teacher": "embeddinggemma-300m",
        "config": {"seed": seed, "preset": "cpu-bench"},
        "metrics": metrics,
        "metrics_before": before if before is not None else suite_metrics(60.0),
        "dims": DIMS,
        "timings": {"train_s": 1.0},
    }
    (run_dir / "results.json").write_text(json.dumps(payload))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for seed, base in enumerate([70.0, 72.0, 74.0]):
        write_run(root, "SAMD", seed, suite_metrics(base))
    for seed, base in enumerate([69.0, 70.0, 71.0]):
        write_run(root, "MinED", seed, suite_metrics(base))
    write_run(root, "MRL", 0, suite_metrics(68.0, {"stsb": 79.0}))
    write_run(root, "SAMD+no-sam", 0, suite_metrics(71.0))  # beats MinED, but an ablation
    write_run(root, "SAMD-MRL", 0, suite_metrics(71.5))  # beats MinED, but ours: no baseline
    skd = {
        "continuous/Banking77Classification/accuracy@384": 81.0,
        "replace/Banking77Classification/accuracy@384": 79.0,
        "continuous/Banking77Classification/validation/accuracy@384": 50.0,
        "continuous/avg/mteb/accuracy@384": 81.0,
        "avg/all/id@384": 81.0,
    }
    write_run(root, "SKD", 0, skd, {"student/Banking77Classification/accuracy@384": 75.0})
    ref = root / "_reference"
    ref.mkdir()
    teacher = {"method": "eval", "model": "embeddinggemma-300m", "dims": [768, 384]}
    teacher["metrics"] = suite_metrics(80.0, dims=[768, 384])
    (ref / "teacher.json").write_text(json.dumps(teacher))
    mteb_teacher = {"method": "eval", "model": "e5-small"}  # scripts/skd.py evaluate-model
    mteb_teacher["metrics"] = {
        "Banking77Classification/accuracy@384": 83.0,
        "Banking77Classification/validation/accuracy@384": 10.0,
        "avg/mteb/accuracy@384": 83.0,
    }
    (ref / "teacher-mteb.json").write_text(json.dumps(mteb_teacher))
    (ref / "notes.txt").write_text("ignored")
    (root / "README.md").write_text("ignored")
    return root


@pytest.fixture(scope="module")
def collected(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert cr.main([str(sweep), "--out", str(out), "--dims", "384", "96"]) == 0
    return out


def _row(markdown: str, label: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{markdown}")


def _main_table(out: Path, dim: int = 384) -> tuple[list[str], str]:
    text = (out / "results.md").read_text()
    table = text.split(f"## Per-task main scores @{dim}")[1].split("##")[0]
    header = [c.strip() for c in table.strip().splitlines()[0].strip("|").split("|")]
    return header, table


def test_mean_std_and_bold(collected):
    header, table = _main_table(collected)
    samd, mrl = _row(table, "SAMD"), _row(table, "MRL")
    assert samd[header.index("banking77")] == "**72.00 ± 2.00**"
    assert samd[header.index("stsb")] == "72.00 ± 2.00"
    assert mrl[header.index("stsb")] == "**79.00**"  # one seed: just the mean
    assert _row(table, "MinED")[header.index("banking77")] == "70.00 ± 1.00"
    assert samd[header.index("n seeds")] == "3"
    assert "emotion (OOD)" in header and "avg ID" in header and "avg OOD" in header


def test_teacher_student_and_ablation_rows(collected):
    header, table = _main_table(collected)
    labels = [line.strip("|").split("|")[0].strip() for line in table.strip().splitlines()[2:]]
    assert labels[:2] == ["teacher (embeddinggemma-300m)", "student (undistilled)"]
    assert _row(table, "student (undistilled)")[header.index("avg ID")] == "60.00"
    assert _row(table, "teacher (embeddinggemma-300m)")[header.index("tweet")] == "78.00"  # @384
    header, table = _main_table(collected, 96)  # the teacher was not evaluated at 96
    assert _row(table, "teacher (embeddinggemma-300m) @768")[header.index("tweet")] == "80.00"
    assert "SAMD+no-sam" in labels and "SKD" not in labels


def test_best_baseline_excludes_ablations(sweep):
    summary = report.summarize(report.collect(report.load_runs(sweep), []))
    baselines = [name for name, spec in METHODS.items() if not spec.ours]
    assert "SAMD-MRL" not in baselines and "MinED" in baselines
    unrestricted = report.difference_vs_best(summary, "SAMD", 384)
    assert unrestricted[0]["baseline"] == "SAMD-MRL"
    diffs = {d["group"]: d for d in report.difference_vs_best(summary, "SAMD", 384, baselines)}
    assert diffs["avg ID"]["baseline"] == "MinED"
    assert diffs["avg ID"]["diff"] == pytest.approx(2.0)
    assert diffs["avg ID"]["spread"] == pytest.approx(math.sqrt(4 / 3 + 1 / 3))


def test_results_md_sections(collected):
    text = (collected / "results.md").read_text()
    assert "SAMD − MinED = +2.00 ± 1.29 (n = 3 vs 3 seeds)" in text
    assert "## Per-task main scores @96" in text
    skd = text.split("## MTEB classification (SKD runs)")[1]
    assert _row(skd, "SKD/continuous")[1:] == ["81.00", "81.00"]
    assert _row(skd, "SKD/student")[1] == "75.00"
    assert _row(skd, "teacher (e5-small)")[1:] == ["83.00", "83.00"]  # MTEB-keyed: SKD table
    assert "teacher (e5-small)" not in text.split("## MTEB classification (SKD runs)")[0]
    assert "validation" not in skd


def test_csv_numbers(collected):
    summary = pd.read_csv(collected / "summary.csv")
    row = summary.query("label == 'SAMD' and task == 'banking77' and dim == 384").iloc[0]
    assert (row["mean"], row["std"], row["n"]) == (pytest.approx(72.0), pytest.approx(2.0), 3)
    avg = summary.query("label == 'MinED' and task == 'avg OOD' and dim == 96").iloc[0]
    assert avg["mean"] == pytest.approx(66.0)
    table = pd.read_csv(collected / "table_384.csv", index_col="label")
    assert table.loc["SAMD", "banking77 mean"] == pytest.approx(72.0)
    assert table.loc["SAMD", "banking77 std"] == pytest.approx(2.0)
    assert pd.isna(table.loc["MRL", "stsb std"]) and table.loc["MRL", "stsb mean"] == 79.0
    matryoshka = pd.read_csv(collected / "matryoshka.csv")
    samd = matryoshka.query("label == 'SAMD' and group == 'avg ID'").iloc[0]
    assert samd["d/2 %"] == pytest.approx(100 * 70 / 72)
    assert samd["d/8 %"] == pytest.approx(100 * 66 / 72)
    assert (collected / "table_96.csv").is_file() and (collected / "skd.csv").is_file()


def test_pngs_written(collected):
    for name in ("matryoshka.png", "tasks.png"):
        path = collected / name
        assert path.is_file() and path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stdout_and_default_out(sweep, tmp_path, capsys):
    for item in sweep.rglob("*"):  # a copy, since the default output folder is RESULTS_DIR
        if item.is_file():
            target = tmp_path / item.relative_to(sweep)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.read_bytes())
    assert cr.main([str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert "## Per-task main scores @384" in stdout and "**72.00 ± 2.00**" in stdout
    assert (tmp_path / "results.md").is_file() and (tmp_path / "tasks.png").is_file()


def test_averages_recomputed_match_given():
    metrics = suite_metrics(70.0, {"banking77": 76.0, "emotion": 50.0})
    filled = report.with_averages(metrics)
    assert filled["avg/classification/id@384"] == pytest.approx(73.0)
    assert filled["avg/all/ood@384"] == pytest.approx((50 + 70 + 70) / 3)
    assert report.with_averages({**metrics, "avg/all/id@384": 1.0})["avg/all/id@384"] == 1.0


def test_empty_directory_exit_2(tmp_path, caplog):
    assert cr.main([str(tmp_path)]) == 2
    assert "run scripts/run_experiments.py first" in caplog.text
    assert cr.main([str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "results.md").exists()


def test_readme_results_section_is_generated_from_the_collected_files(sweep, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "update_readme", REPO / "scripts" / "update_readme.py"
    )
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    assert "No committed results yet" in readme.results_section(tmp_path)
    cr.main([str(sweep), "--out", str(tmp_path / "results" / "cpu-bench")])
    text = readme.results_section(tmp_path)
    assert "### `results/cpu-bench`" in text and "#### Per-task main scores @384" in text
    assert "72.00 ± 2.00" in text  # SAMD's mean ± std over its three seeds
    assert "(results/cpu-bench/matryoshka.png)" in text


def test_ablation_effects(sweep, collected):
    summary = report.summarize(report.collect(report.load_runs(sweep), []))
    effects = {d["group"]: d for d in report.ablation_effects(summary, 384)}
    assert set(effects) == {"avg ID", "avg OOD"}
    ident = effects["avg ID"]
    assert (ident["method"], ident["baseline"]) == ("SAMD", "SAMD+no-sam")
    assert ident["diff"] == pytest.approx(1.0)  # SAMD 72 ± 2 (3 seeds) vs the ablation's 71
    assert ident["spread"] == pytest.approx(2 / math.sqrt(3))
    section = (collected / "results.md").read_text().split("## Ablations (@384)")[1]
    assert "- avg ID: SAMD − SAMD+no-sam = +1.00 ± 1.15 (n = 3 vs 1 seeds)" in section
