"""scripts/collect_results.py on synthetic sweeps with known numbers (fast, no models)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from samd_common.data.tasks import TASKS
from samd_common.methods import METHODS
from samd_common.reporting import compare
from samd_common.reporting import tables as report
from samd_common.reporting.results import RunRecord, load_record

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
    mteb_teacher = {"method": "eval", "model": "e5-small"}  # scripts/evaluate.py --protocol mteb
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
    long = report.collect(report.load_runs(sweep), [])
    baselines = [name for name, spec in METHODS.items() if not spec.ours]
    assert "SAMD-MRL" not in baselines and "MinED" in baselines
    unrestricted = compare.difference_vs_best(long, "SAMD", 384)
    assert unrestricted[0]["baseline"] == "SAMD-MRL"
    diffs = {d["group"]: d for d in compare.difference_vs_best(long, "SAMD", 384, baselines)}
    ident = diffs["avg ID"]
    assert ident["baseline"] == "MinED" and ident["paired"] and ident["seeds"] == [0, 1, 2]
    assert ident["diff"] == pytest.approx(2.0)  # per seed 70−69, 72−70, 74−71 = 1, 2, 3
    assert ident["spread"] == pytest.approx(1 / math.sqrt(3))  # std 1 of (1, 2, 3) / sqrt(3)


def _long(values: dict[str, dict[int, float]]) -> pd.DataFrame:
    rows = [
        dict(kind=report.DISTILLED, label=label, seed=seed, task=group, dim=384, value=v)
        for label, per_seed in values.items()
        for seed, v in per_seed.items()
        for group in report.AVERAGES
    ]
    return pd.DataFrame(rows)


def test_differences_are_paired_on_shared_seeds():
    # Seed 1's corpus is 10 points easier for everyone; B has an extra, even easier seed 2.
    long = _long({"A": {0: 70.0, 1: 80.0}, "B": {0: 69.0, 1: 79.0, 2: 90.0}, "C": {5: 60.0}})
    d = compare.difference_vs_best(long, "A", 384, ["B"])[0]
    assert d["paired"] and d["seeds"] == [0, 1] and (d["n_method"], d["n_baseline"]) == (2, 3)
    assert d["diff"] == pytest.approx(1.0)  # the unpaired means would say 75 − 79.33 = −4.33
    assert d["spread"] == pytest.approx(0.0)  # A beats B by exactly 1 on every shared seed
    # C beats nobody but is the only candidate; no seed in common: unpaired fallback.
    u = compare.difference_vs_best(long, "A", 384, ["C"])[0]
    assert not u["paired"] and u["seeds"] == [0, 1, 5]
    assert u["diff"] == pytest.approx(15.0)
    assert u["spread"] == pytest.approx(math.sqrt(50.0 / 2))  # var(70, 80) / 2, C has one seed
    single = compare.difference_vs_best(_long({"A": {3: 1.0}, "B": {3: 0.5}}), "A", 384)[0]
    assert single["seeds"] == [3] and math.isnan(single["spread"])
    lines = [cr._diff_line(x) for x in (d, u)]
    assert lines[0] == "- avg ID: A − B = +1.00 ± 0.00 (paired over seeds 0, 1)"
    assert lines[1] == ("- avg ID: A − C = +15.00 ± 5.00 (no shared seed: means over 2 vs 1 seeds)")


def test_results_md_sections(collected):
    text = (collected / "results.md").read_text()
    assert "SAMD − MinED = +2.00 ± 0.58 (paired over seeds 0, 1, 2)" in text
    assert "## Per-task main scores @96" in text
    skd = text.split("## MTEB classification (SKD runs)")[1]
    assert _row(skd, "SKD/continuous")[1:] == ["81.00", "81.00"]
    assert _row(skd, "SKD/student")[1] == "75.00"
    assert _row(skd, "teacher (e5-small)")[1:] == ["83.00", "83.00"]  # MTEB-keyed: SKD table
    assert "teacher (e5-small)" not in text.split("## MTEB classification (SKD runs)")[0]
    assert "validation" not in skd


def test_gap_recovered_section_and_csv(collected):
    """(distilled − undistilled) / (teacher − undistilled), known values of constructed runs."""
    text = (collected / "results.md").read_text().split("## Share of the teacher–student gap")[1]
    at_384 = text.split("### @384")[1].split("###")[0]
    assert _row(at_384, "SAMD")[1:] == ["72.00", "66.7", "72.00", "66.7"]  # (72 − 60) / (78 − 60)
    assert _row(at_384, "MinED")[1:3] == ["70.00", "55.6"]
    at_96 = text.split("### @96")[1].split("##")[0]  # the teacher lacks 96: its 768 (80) is used
    assert _row(at_96, "SAMD")[1:3] == ["68.00", "50.0"]  # (68 − 56) / (80 − 56)
    gap = pd.read_csv(collected / "gap.csv").query("label == 'SAMD' and dim == 384").iloc[0]
    assert gap["avg OOD gap %"] == pytest.approx(200 / 3)


def test_no_gap_section_without_a_teacher(tmp_path):
    write_run(tmp_path / "runs", "SAMD", 0, suite_metrics(70.0))
    assert cr.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert "gap recovered" not in (tmp_path / "out" / "results.md").read_text()
    assert not (tmp_path / "out" / "gap.csv").exists()


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
    assert "### Headline: `results/cpu-bench`" in text and "(results/cpu-bench/results.md)" in text
    table = text.split("### Headline")[1].split("###")[0]
    head = ["seeds", "avg ID @384", "gap @384", "avg OOD @384", "gap @384"]
    assert _row(table, "method")[1:6] == head
    assert _row(table, "method")[6] == "avg ID @96"  # a quarter of the full dim
    # (72 − 60) / (78 − 60), the mean of 3 seeds; MRL has one
    assert _row(table, "SAMD")[1:6] == ["3", "72.00", "67 %", "72.00", "67 %"]
    assert _row(table, "MRL")[1] == "1"
    assert _row(table, "student (undistilled)")[1:3] == ["-", "60.00"]
    assert "(results/cpu-bench/matryoshka.png)" in text


def test_ablation_effects(sweep, collected):
    long = report.collect(report.load_runs(sweep), [])
    effects = {d["group"]: d for d in compare.ablation_effects(long, 384)}
    assert set(effects) == {"avg ID", "avg OOD"}
    ident = effects["avg ID"]
    assert (ident["method"], ident["baseline"]) == ("SAMD", "SAMD+no-sam")
    # paired on seed 0 (SAMD 70 vs the ablation's 71), not SAMD's 3-seed mean 72
    assert ident["diff"] == pytest.approx(-1.0) and ident["seeds"] == [0]
    assert math.isnan(ident["spread"])
    section = (collected / "results.md").read_text().split("## Ablations (@384)")[1]
    assert "- avg ID: SAMD − SAMD+no-sam = -1.00 (seed 0 only: no spread yet)" in section


def test_cost_table_ranges(collected):
    def run(label: str, seed: int, **timings: float) -> dict:
        return {"label": label, "seed": seed, "record": RunRecord("m", "s", timings=timings)}

    runs = [
        run("B", 0, train_s=100.4, total_s=300.0),
        run("B", 1, train_s=180.0, total_s=299.8),
        run("a", 0, train_s=5.0, peak_rss_mb=2e3),
        run("c", 0, encode_s=9.0),  # not a training run
    ]
    cost = report.cost_table(runs)
    assert list(cost.index) == ["a", "B"] and list(cost["runs"]) == [1, 2]
    assert cost.at["B", "train s"] == "100–180" and cost.at["B", "total s"] == "300"
    assert cost.at["a", "train s"] == "5.0" and cost.at["a", "peak RSS MB"] == "2000"
    assert cost.at["B", "peak RSS MB"] == "-"
    assert "## Cost (measured per run" in (collected / "results.md").read_text()
    assert report.cost_table(runs[3:]).empty


def test_per_task_paired_differences(sweep, collected):
    long = report.collect(report.load_runs(sweep), [])
    pairs = [("SAMD", "MinED"), ("SAMD", "SAMD+no-sam"), ("SAMD", "SAMD"), ("SAMD", "absent")]
    table = compare.per_task(long, pairs, 384)
    assert list(table.index) == ["SAMD − MinED", "SAMD − SAMD+no-sam", "SAMD − SAMD"]
    assert (table.loc["SAMD − MinED", ["banking77", "sts12 (OOD)", "avg OOD"]] == 2.0).all()
    assert table.loc["SAMD − SAMD+no-sam", "wic"] == pytest.approx(-1.0)
    assert (table.loc["SAMD − SAMD"].drop("seeds") == 0).all()  # identical runs: difference 0
    assert table.loc["SAMD − MinED", "seeds"] == "0, 1, 2"
    assert table.loc["SAMD − SAMD+no-sam", "seeds"] == "0"
    section = (collected / "results.md").read_text().split("## Per-task paired differences")[1]
    assert "| SAMD − MinED | +2.00 |" in section
    assert (collected / "differences.csv").is_file()


def test_metric_keys_parse_and_format_every_kind():
    from samd_common.reporting.keys import key_depths, key_dims, metric_key, parse_key

    k = parse_key("replace/EmotionClassification/validation/accuracy@48")
    assert (k.head, k.name, k.metric, k.dim, k.depth) == (
        "replace/EmotionClassification/validation/accuracy",
        "replace/EmotionClassification/validation",
        "accuracy",
        48,
        None,
    )
    grid = parse_key("avg/all/id@384/L3")
    assert (grid.head, grid.dim, grid.depth) == ("avg/all/id", 384, 3)
    assert str(grid) == "avg/all/id@384/L3" == metric_key("avg/all/id", 384, 3)
    assert parse_key("n_texts") is None and parse_key("stsb/spearman@x") is None
    keys = ["stsb/spearman@384", "stsb/spearman@64", "avg/all/id@128", "x@32/L1", "x@16/L2"]
    assert key_dims(keys) == [384, 128, 64] and key_dims(keys, head="avg/all/id") == [128]
    assert key_dims(keys, depth=True) == [384, 128, 64, 32, 16]
    assert key_depths(keys) == [1, 2]


def test_run_record_reads_old_files_and_round_trips(tmp_path):
    old = REPO / "results" / "skd-demo" / "runs" / "SKD-sep-xtok" / "seed0" / "results.json"
    record = load_record(old)  # written before RunRecord: no dims, SKD fields at the top
    assert record.method == "SKD" and record.dims == [] and record.extra["flavour"] == "SKD-sep"
    assert record.train["last"] and record.metrics_before and record.teacher == "e5-small"
    payload = json.loads(old.read_text())
    again = RunRecord.from_json(record.to_json())
    assert again.to_json() == {**payload, "dims": []}  # only the always-written dims is added
    table = cr.results_table(record)
    assert list(table.columns) == ["before@384", "replace@384", "continuous@384"]


def test_show_prints_run_tables(sweep, capsys):
    path = sweep / "SAMD" / "seed0" / "results.json"
    assert cr.main(["--show", str(path), str(sweep / "SKD" / "seed0" / "results.json")]) == 0
    out = capsys.readouterr().out
    assert "SAMD: embeddinggemma-300m → minilm-l6" in out and "before@384" in out
    assert "continuous@384" in out  # the SKD run: its MTEB table


# ------------------------------------------------------------------ training curves (--curves)
def _add_history(root: Path, label: str, seed: int, losses: list[float]) -> None:
    """Give a written run the ``history`` a run records (``training.history.thin_history``)."""
    path = root / label / f"seed{seed}" / "results.json"
    payload = json.loads(path.read_text())
    steps = [10 * i for i in range(len(losses))]
    payload["history"] = {"log_every": 10, "steps": {"step": steps, "lr": [2e-5] * len(losses)}}
    payload["history"]["steps"]["loss"] = losses
    path.write_text(json.dumps(payload))


@pytest.fixture()
def curve_sweep(tmp_path):
    root = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(root, "SAMD", seed, suite_metrics(70.0 + seed))
        _add_history(root, "SAMD", seed, [2.0 - seed, 1.5, 1.2])
    write_run(root, "MinED", 0, suite_metrics(69.0))  # recorded before histories: none
    write_run(root, "MinED", 1, suite_metrics(69.5))
    _add_history(root, "MinED", 1, [3.0, 2.0])
    return root


def test_sweep_curves_one_panel_per_label_one_line_per_run_with_a_history(curve_sweep):
    from samd_common.reporting.curves import plot_sweep_curves

    fig = plot_sweep_curves(report.load_runs(curve_sweep))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert list(panels) == ["MinED", "SAMD"]
    assert [line.get_label() for line in panels["SAMD"].get_lines()] == ["seed 0", "seed 1"]
    assert [line.get_label() for line in panels["MinED"].get_lines()] == ["seed 1"]
    assert list(panels["SAMD"].get_lines()[1].get_ydata()) == [1.0, 1.5, 1.2]
    assert list(panels["MinED"].get_lines()[0].get_xdata()) == [0, 10]


def test_collect_curves_writes_the_figure_and_section(curve_sweep, tmp_path):
    out = tmp_path / "out"
    assert cr.main([str(curve_sweep), "--out", str(out), "--curves"]) == 0
    assert (out / "curves.png").stat().st_size > 0
    text = (out / "results.md").read_text()
    assert "## Training curves" in text and "of the 3 run(s)" in text
    assert text.rstrip().endswith("![training curves](curves.png)")
    plain = tmp_path / "plain"
    assert cr.main([str(curve_sweep), "--out", str(plain)]) == 0  # without the option: none
    assert (
        not (plain / "curves.png").exists()
        and "Training curves" not in (plain / "results.md").read_text()
    )


def test_collect_curves_skips_sweeps_without_histories(sweep, tmp_path, caplog):
    out, plain = tmp_path / "out", tmp_path / "plain"
    with caplog.at_level("WARNING"):
        assert cr.main([str(sweep), "--out", str(out), "--curves"]) == 0
    assert not (out / "curves.png").exists()
    assert "no run has a training history" in caplog.text
    assert cr.main([str(sweep), "--out", str(plain)]) == 0
    assert (out / "results.md").read_bytes() == (plain / "results.md").read_bytes()
