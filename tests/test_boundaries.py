"""Bad input never gives a wrong number (issue 17): each boundary ends a bad value in one line.

Config construction (``make_config``, ``TrainConfig``, method ``Params``), the evaluation CLI
(``scripts/evaluate.py``), the sweep runner (``scripts/run_experiments.py``: parameter names and
values, atomic "done" files), ``scripts/collect_results.py`` on unreadable files, model folders,
user tasks as a run's ``tasks``, and resume from the last per-epoch checkpoint. Every error names
the culprit; script errors are one ``error:`` line with exit code 2 and no traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import samd_common.training.loop as loop
from samd_common.data import resolve_task_list, split_task_list
from samd_common.data.tasks import DataError
from samd_common.experiment import load_models, make_config, params_dict, run_experiment, start_run
from samd_common.losses.params import type_problem
from samd_common.models.io import check_model_folder
from samd_common.reporting.results import load_record
from samd_common.training.loop import TrainConfig, check_resumable

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A script of ``scripts/`` as a module (its ``main(argv)`` returns the exit code)."""
    spec = importlib.util.spec_from_file_location(f"{name}_cli", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EVALUATE, RUNNER, COLLECT = (
    _script("evaluate"),
    _script("run_experiments"),
    _script("collect_results"),
)


@pytest.fixture()
def cache(tmp_path_factory, monkeypatch) -> Path:
    """One private cache root (tiny models, teacher caches, memos) for this module's runs."""
    root = tmp_path_factory.getbasetemp() / "boundaries-cache"
    monkeypatch.setenv("SAMD_CACHE_DIR", str(root))
    return root


def _sts_folder(folder: Path, name: str = "mine", n: int = 12) -> Path:
    """A user STS task: ``<name>_test.csv`` with varied scores in 0–5."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "sentence1": [f"a cat number {i}" for i in range(n)],
            "sentence2": [f"a dog number {n - i}" for i in range(n)],
            "score": np.linspace(0, 5, n),
        }
    ).to_csv(folder / f"{name}_test.csv", index=False)
    return folder


def _one_error_line(text: str, *names: str) -> str:
    """The single ``error`` line of a script's stderr; no traceback; it names every culprit."""
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if "error:" in ln]
    assert len(lines) == 1, text
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ notebook parameters
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": -1}, r"epochs must be an integer ≥ 1, got -1"),
        ({"epochs": 0}, r"epochs must be an integer ≥ 1, got 0"),  # 0 is a value, not "unset"
        ({"lr": -0.001}, r"lr must be a finite number > 0, got -0.001"),
        ({"lr": float("nan")}, r"lr must be a finite number > 0, got nan"),
        ({"batch_size": 1}, r"batch_size must be ≥ 2, got 1: the contrastive losses"),
        ({"batch_size": 0}, r"batch_size must be an integer ≥ 2, got 0"),
        ({"max_texts": -10}, r"max_texts must be None \(every corpus text\) or an integer ≥ 1"),
        ({"max_texts": 0}, r"max_texts must be .* got 0"),
        ({"seed": "abc"}, r"seed must be an integer ≥ 0, got 'abc'"),
        ({"seed": -1}, r"seed must be an integer ≥ 0, got -1"),
        ({"max_length": 0}, r"max_length must be an integer ≥ 1, got 0"),
        ({"teacher_layers": 0}, r"teacher_layers must be an integer ≥ 1, got 0"),
        ({"resume": "yes"}, r"resume must be True or False .* got 'yes'"),
        ({"grad_accum": 0}, r"grad_accum must be an integer ≥ 1, got 0"),
        ({"max_steps": 0}, r"max_steps must be a positive number of optimizer steps, .* got 0"),
        ({"warmup_frac": 1.5}, r"warmup_frac must be a finite number ≥ 0 and ≤ 1, got 1.5"),
        ({"max_test": -1}, r"max_test must be None \(every test row\) or an integer ≥ 1, got -1"),
        ({"max_train": 0}, r"max_train must be None .* got 0"),
        ({"dims": (64, 0)}, r"each of dims must be an integer ≥ 1, got 0"),
        ({"params": {"use_sam": "no"}}, r"SAMD parameter use_sam: must be bool .* got 'no'"),
        ({"params": {"use_sam": 1}}, r"use_sam: must be bool .* got 1"),
        ({"params": {"temperature": "0.1"}}, r"temperature: must be float, got '0.1'"),
        ({"params": {"dims": [64, True]}}, r"dims: must be list\[int\] or None"),
        ({"params": '{"use_sam": fals}'}, r"params is not valid JSON .* -p params"),
        (
            {"params": '{"use_sma": false}'},
            r"Unknown SAMD parameter 'use_sma'. Did you mean 'use_sam'",
        ),
        ({"params": "[1]"}, r"params must be a dict .* got list"),
        ({"epoch": 3}, r"Unknown setting 'epoch' for SAMD. Did you mean 'epochs'\?"),
        ({"preset": "smok"}, r"Unknown preset 'smok'. Did you mean 'smoke'\?"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_bad_run_settings_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_config("SAMD", **{"preset": "smoke", **kwargs})


def test_bad_task_lists_name_the_task(tmp_path):
    with pytest.raises(KeyError, match=r"Unknown task 'stbs'. Did you mean 'stsb'\?"):
        make_config("SAMD", preset="smoke", tasks="stbs")
    with pytest.raises(DataError, match=r"no-such-folder: no such file or folder"):
        make_config("SAMD", preset="smoke", tasks=f"stsb;{tmp_path / 'no-such-folder'}:sts")


def test_mteb_settings_are_checked():
    with pytest.raises(ValueError, match=r"n_experiments must be None \(the task's own\) or an"):
        make_config("SKD", preset="smoke", n_experiments=0)
    with pytest.raises(ValueError, match=r"Invalid SKD settings, need cluster in mcl\|kmeans"):
        make_config("SKD", preset="smoke", cluster="kmean")


def test_valid_settings_are_taken_as_given(tmp_path):
    """``params`` as papermill passes it (a JSON string), None = the preset, task lists."""
    cfg = make_config("SAMD", preset="smoke", params='{"use_sam": false}', epochs=None, lr="")
    assert cfg.params["use_sam"] is False and (cfg.train.epochs, cfg.train.lr) == (1, 5e-4)
    assert make_config("SAMD", preset="smoke", tasks="stsb, sickr").eval.tasks == ("stsb", "sickr")
    mine = _sts_folder(tmp_path / "my_eval")
    cfg = make_config("SAMD", preset="smoke", tasks=f"stsb;{mine}:sts", resume=True)
    assert cfg.eval.tasks == ("stsb", f"{mine}:sts") and cfg.train.resume is True
    assert params_dict(None) == {} and params_dict("") == {}


def test_train_config_checks_its_own_fields():
    TrainConfig()  # the paper's defaults pass
    with pytest.raises(ValueError, match="batch_size must be ≥ 2, got 1"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="bf16 must be True or False"):
        TrainConfig(bf16="no")
    with pytest.raises(ValueError, match=r"proj_lr must be a finite number > 0, got 0"):
        TrainConfig(proj_lr=0)


@pytest.mark.parametrize(
    ("annotation", "value", "problem"),
    [
        ("bool", "no", "must be bool (JSON: true/false), got 'no'"),
        ("bool", False, None),
        ("float", 1, None),  # an int is a fine float
        ("float", True, "must be float, got True"),
        ("int | None", None, None),
        ("int", 2.5, "must be int, got 2.5"),
        ("list[int] | None", (64, 32), None),
        ("list[float] | None", [0.5, "x"], "must be list[float] or None, got [0.5, 'x']"),
        ("tuple[str, ...]", 3, None),  # not a simple annotation: left to the class's rules
    ],
)
def test_params_type_problem(annotation, value, problem):
    assert type_problem(annotation, value) == problem


# ------------------------------------------------------------------ tasks and models
def test_task_lists_split_names_and_user_tasks(tmp_path):
    mine = _sts_folder(tmp_path / "my_eval")
    assert split_task_list("stsb,sickr") == ["stsb", "sickr"]
    assert split_task_list(f"stsb; {mine}:sts") == ["stsb", f"{mine}:sts"]
    assert split_task_list(f"{mine}:mine=sts,x=pair") == [f"{mine}:mine=sts,x=pair"]
    resolved = resolve_task_list(["stsb", f"{mine}:sts"])
    assert resolved[0] == "stsb" and resolved[1].name == "mine" and resolved[1].family == "sts"
    assert resolve_task_list(None) is None


def test_model_folder_checks(tmp_path, tiny_dirs):
    check_model_folder("minilm-l6")  # short names and hub ids are not paths
    check_model_folder("org/name")
    check_model_folder(str(tiny_dirs["student"]))
    with pytest.raises(FileNotFoundError, match=r"model '.*nope': no such folder .* short name"):
        check_model_folder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"a folder without config.json, not a model"):
        check_model_folder(str(tmp_path / "empty"))


def test_models_stage_rejects_a_max_length_beyond_the_model(tmp_path, cache):
    cfg = make_config("MRL", preset="smoke", output_dir=str(tmp_path), max_length=1024)
    with pytest.raises(ValueError, match=r"max_length=1024 exceeds the model's position limit"):
        load_models(start_run(cfg))


def test_a_run_scores_user_tasks_given_as_tasks(tmp_path, cache):
    mine = _sts_folder(tmp_path / "my_eval")
    cfg = make_config("MRL", preset="smoke", output_dir=str(tmp_path), tasks=f"stsb;{mine}:sts")
    record = run_experiment(cfg)
    assert {k.split("/")[0] for k in record.metrics if "@" in k} >= {"stsb", "mine"}
    assert not any(k.startswith("sickr/") for k in record.metrics)


# ------------------------------------------------------------------ resume
def test_resume_after_an_interruption_gives_the_uninterrupted_metrics(
    tmp_path, cache, monkeypatch, caplog
):
    """Stopped right after epoch 1 of 2, then resumed: same numbers; epoch 1 is not redone."""
    whole = run_experiment(
        make_config("SAMD", preset="smoke", epochs=2, output_dir=str(tmp_path / "a"))
    )
    save = loop._save

    def stop_after_epoch_1(path, *args, **kwargs):
        save(path, *args, **kwargs)
        if path.name == "epoch-1.pt":
            raise KeyboardInterrupt("killed between epochs")

    monkeypatch.setattr(loop, "_save", stop_after_epoch_1)
    cfg = dict(preset="smoke", epochs=2, output_dir=str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        run_experiment(make_config("SAMD", **cfg))
    assert "stage 'train' of" in caplog.text
    assert "epoch-1.pt is kept: rerun with resume=True to continue from it" in caplog.text
    monkeypatch.setattr(loop, "_save", save)
    first = next((tmp_path / "b").glob("*/checkpoints/epoch-1.pt"))
    stamp = first.stat().st_mtime_ns
    resumed = run_experiment(make_config("SAMD", **cfg, resume=True))
    assert first.stat().st_mtime_ns == stamp  # epoch 1 was loaded, not trained again
    assert resumed.metrics == whole.metrics and resumed.metrics_before == whole.metrics_before
    assert resumed.train["steps"] == whole.train["steps"]
    with pytest.raises(ValueError, match=r"cannot resume from .*epoch-2.pt: it was written with "):
        run_experiment(make_config("SAMD", **{**cfg, "epochs": 3}, resume=True))


def test_check_resumable_ignores_only_settings_that_change_nothing(tmp_path):
    saved = {**TrainConfig().__dict__, "checkpoint_dir": "/old", "show_progress": False}
    check_resumable(saved, TrainConfig(resume=True, checkpoint_dir="/new"), tmp_path / "e.pt")
    with pytest.raises(ValueError, match=r"written with lr=2e-05, this run has lr=0.001"):
        check_resumable(saved, TrainConfig(lr=1e-3), tmp_path / "e.pt")


# ------------------------------------------------------------------ scripts/evaluate.py
@pytest.fixture()
def eval_args(tiny_dirs, demo_dir) -> list[str]:
    return ["--model", str(tiny_dirs["student"]), "--eval-dir", str(demo_dir), "--max-test", "20"]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--max-test", "-1"], ["--max-test", "≥ 1", "'-1'"]),
        (["--max-test", "0"], ["--max-test", "'0'"]),
        (["--batch-size", "0"], ["--batch-size", "'0'"]),
        (["--max-length", "0"], ["--max-length", "'0'"]),
        (["--seed", "-1"], ["--seed", "≥ 0"]),
        (["--dims", "64", "0"], ["--dims"]),
        (["--max-train", "x"], ["--max-train", "'x'"]),
    ],
)
def test_evaluate_cli_rejects_bad_numbers(eval_args, argv, names, capsys):
    with pytest.raises(SystemExit) as exit_:
        EVALUATE.main([*eval_args, *argv])
    assert exit_.value.code == 2
    _one_error_line(capsys.readouterr().err, *names)


def _bad_sts_dir(tmp_path: Path, demo_dir: Path) -> Path:
    """The demo data with one STS-B score outside its declared 0–5 range."""
    folder = tmp_path / "bad"
    folder.mkdir()
    for path in demo_dir.glob("*.csv"):
        (folder / path.name).write_bytes(path.read_bytes())
    frame = pd.read_csv(folder / "stsb_test.csv")
    frame.loc[3, "score"] = 99
    frame.to_csv(folder / "stsb_test.csv", index=False)
    return folder


@pytest.mark.parametrize(
    "case", ["max_length", "unknown_task", "no_model", "not_a_model", "bad_scores", "user_mteb"]
)
def test_evaluate_cli_user_errors_are_one_line(case, eval_args, tmp_path, demo_dir, capsys):
    (tmp_path / "empty").mkdir()
    argv, names = {
        "max_length": (["--max-length", "1024", "--tasks", "stsb"], ["max_length=1024", "≤ 128"]),
        "unknown_task": (["--tasks", "stbs"], ["'stbs'", "Did you mean 'stsb'"]),
        "no_model": (["--model", str(tmp_path / "nope")], ["nope", "no such folder"]),
        "not_a_model": (["--model", str(tmp_path / "empty")], ["empty", "not a model folder"]),
        "bad_scores": (
            ["--eval-dir", str(_bad_sts_dir(tmp_path, demo_dir)), "--tasks", "stsb"],
            ["stsb_test.csv", "99"],
        ),
        "user_mteb": (["--protocol", "mteb", "--user-tasks", "x"], ["--user-tasks", "suite"]),
    }[case]
    assert EVALUATE.main([*eval_args, *argv]) == 2
    _one_error_line(capsys.readouterr().err, *names)
    with pytest.raises((ValueError, KeyError, OSError)):  # --debug: the exception itself
        EVALUATE.main([*eval_args, *argv, "--debug"])


def test_evaluate_cli_scores_only_user_tasks_when_only_they_are_asked(tiny_dirs, tmp_path):
    mine = _sts_folder(tmp_path / "my_eval")
    out = tmp_path / "r.json"
    argv = ["--model", str(tiny_dirs["student"]), "--user-tasks", f"{mine}:sts"]
    assert EVALUATE.main([*argv, "--output", str(out)]) == 0  # no eval folder needed
    record = load_record(out)
    assert {k.split("/")[0] for k in record.metrics if not k.startswith("avg/")} == {"mine"}
    assert record.config["eval"]["tasks"] == [f"{mine}:sts"]


def test_evaluate_cli_scores_the_dev_protocol_with_split_dev(eval_args, tmp_path):
    """``--split dev`` scores the dev rows (the teacher row of a dev sweep), not the test rows."""
    rows = {}
    for split in ("test", "dev"):
        out = tmp_path / f"{split}.json"
        argv = [*eval_args, "--tasks", "stsb", "--split", split, "--output", str(out)]
        assert EVALUATE.main(argv) == 0
        record = load_record(out)
        assert record.config["eval"]["split"] == split
        rows[split] = record.metrics
    assert rows["dev"]["stsb/spearman@32"] != rows["test"]["stsb/spearman@32"]  # other rows


def test_evaluate_cli_interpolates_a_student_with_its_start(eval_args, tiny_dirs, tmp_path, capsys):
    """``--interpolate-from``: a model blended with itself scores as itself; α is recorded; a
    model of another shape, or ``--alpha`` alone, is a one-line error."""
    scores = {}
    for name, extra in (("plain", []), ("wise", ["--interpolate-from", str(tiny_dirs["student"])])):
        out = tmp_path / f"{name}.json"
        argv = [*eval_args, "--tasks", "stsb", *extra, "--output", str(out)]
        assert EVALUATE.main([*argv, *(["--alpha", "0.3"] if extra else [])]) == 0
        scores[name] = load_record(out)
    assert scores["wise"].metrics == pytest.approx(scores["plain"].metrics)
    assert scores["wise"].config["interpolate"]["alpha"] == 0.3
    other = ["--interpolate-from", str(tiny_dirs["teacher"]), "--alpha", "0.5", "--tasks", "stsb"]
    assert EVALUATE.main([*eval_args, *other]) == 2
    _one_error_line(capsys.readouterr().err, "the model it was trained from")
    assert EVALUATE.main([*eval_args, "--alpha", "0.5", "--tasks", "stsb"]) == 2
    _one_error_line(capsys.readouterr().err, "--alpha", "--interpolate-from")


def test_evaluate_cli_as_a_process_exits_2_without_traceback(tmp_path):
    cmd = [sys.executable, "scripts/evaluate.py", "--model", str(tmp_path / "nope")]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2
    _one_error_line(out.stderr, "nope", "no such folder")


# ------------------------------------------------------------------ scripts/run_experiments.py
@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--param", "epoch=3"], ["--param epoch", "did you mean 'epochs'", "only warn"]),
        (["--param", "max_length=64"], ["--param max_length", "has no parameter"]),
        (["--param", "epochs=-1"], ["SAMD: epochs must be an integer ≥ 1, got -1"]),
        (["--param", "batch_size=1"], ["SAMD: batch_size must be ≥ 2"]),
        (["--param", 'params={"use_sam": "no"}'], ["use_sam", "must be bool"]),
        (["--param", "params=not json"], ["params is not valid JSON"]),
        (["--param", "epochs"], ["--param 'epochs'", "name=value"]),
        (["--param", "seed=3"], ["--param seed: the runner sets it; use --seeds"]),
        (["--param", "interpolate=2"], ["interpolate"]),
        (["--seeds", "-1"], ["seed must be an integer ≥ 0, got -1"]),
        (["--preset", "smok"], ["Unknown preset 'smok'. Did you mean 'smoke'?"]),
        (["--methods", "SAMX"], ["Unknown method 'SAMX'", "'SAMD'"]),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None,
)
def test_runner_rejects_bad_parameters_before_any_run(argv, names, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(RUNNER, "run_one", lambda *a: pytest.fail("a run started"))
    base = ["--methods", "SAMD", "--preset", "smoke", "--output-dir", str(tmp_path)]
    assert RUNNER.main([*base, *argv]) == 2
    _one_error_line(capsys.readouterr().err, *names)
    assert not any(tmp_path.iterdir())


def _fake_run(calls: list, error: Exception | None = None):
    """A ``run_one`` that records its call and writes a results JSON (or raises ``error``)."""

    def run_one(method, seed, run_dir, params):
        calls.append((method, seed, params))
        if error is not None:
            raise error
        return RUNNER.write_json_atomic(run_dir / "results.json", {"method": method, "metrics": {}})

    return run_one


def test_runner_passes_interpolate_to_the_notebook(tmp_path, monkeypatch):
    """``--param interpolate=1`` (the Makefile's SAMD+no-wise rows) reaches the run's config."""
    calls: list = []
    monkeypatch.setattr(RUNNER, "run_one", _fake_run(calls))
    base = ["--methods", "SAMD", "--preset", "smoke", "--output-dir", str(tmp_path)]
    assert RUNNER.main([*base, "--tag", "no-wise", "--param", "interpolate=1"]) == 0
    assert calls[0][2]["interpolate"] == 1
    assert make_config("SAMD", preset="smoke", interpolate=1.0).train.interpolate == 1.0
    assert make_config("SAMD", preset="smoke", interpolate=None).train.interpolate == 0.5


def test_runner_reruns_a_truncated_results_file_and_skips_a_valid_one(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(RUNNER, "run_one", _fake_run(calls))
    done = tmp_path / "smoke" / "MRL" / "seed0" / "results.json"
    done.parent.mkdir(parents=True)
    done.write_text('{"method": "MRL", "metr')  # killed while writing (an older runner)
    argv = ["--methods", "MRL", "--preset", "smoke", "--output-dir", str(tmp_path), "--resume"]
    assert RUNNER.main(argv) == 0
    assert len(calls) == 1 and calls[0][2]["resume"] is True
    assert json.loads(done.read_text())["method"] == "MRL"
    assert RUNNER.main(argv) == 0 and len(calls) == 1  # now done: skipped
    assert RUNNER.is_done(done) and not RUNNER.is_done(tmp_path / "missing.json")


def test_runner_summary_is_one_line_per_failure(tmp_path, monkeypatch, capsys):
    from papermill.exceptions import PapermillExecutionError

    message = "teacher: model '/x/no-such-teacher': no such folder (/x/no-such-teacher). " * 8
    error = PapermillExecutionError(4, 2, "cfg = ...", "FileNotFoundError", message, ["tb"])
    monkeypatch.setattr(RUNNER, "run_one", _fake_run([], error))
    argv = ["--methods", "MRL", "--preset", "smoke", "--output-dir", str(tmp_path)]
    assert RUNNER.main(argv) == 1
    failed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 1 and "FileNotFoundError: teacher: model" in failed[0]
    assert failed[0].endswith("…") and " no-such-teacher" not in failed[0][-3:]  # cut at a word


# ------------------------------------------------------------------ scripts/collect_results.py
def test_collect_results_skips_unreadable_results(tmp_path, caplog, capsys):
    good = {"method": "SAMD", "model": "m", "config": {}, "metrics": {"stsb/spearman@8": 50.0}}
    for label, seed, text in [
        ("SAMD", 0, json.dumps(good)),
        ("SAMD", 1, json.dumps(good)[:40]),  # truncated
        ("MRL", 0, "[]"),  # JSON, but no record
    ]:
        path = tmp_path / label / f"seed{seed}" / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(text)
    assert COLLECT.main([str(tmp_path)]) == 0
    assert "SAMD/seed1/results.json: unreadable" in caplog.text
    assert "MRL/seed0/results.json: unreadable" in caplog.text
    bad = tmp_path / "SAMD" / "seed1" / "results.json"
    assert COLLECT.main(["--show", str(bad)]) == 2
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------ front doors (notebook tier)
def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)


@pytest.mark.notebooks
def test_readme_papermill_command_with_params_json(tmp_path):
    """The README's ``-p params '{"use_sam": false}'`` (a string to papermill) is parsed."""
    env = {**os.environ, "SAMD_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "papermill", "CTKD/SAMD.ipynb", str(tmp_path / "out.ipynb")]
    cmd += ["-p", "preset", "smoke", "-p", "output_dir", str(tmp_path / "runs")]
    out = _run([*cmd, "-p", "params", '{"use_sam": false}'], env)
    assert out.returncode == 0, out.stderr[-3000:]
    record = load_record(next((tmp_path / "runs").glob("*/results.json")))
    assert record.config["params"]["use_sam"] is False
    bad = _run([*cmd, "-p", "epochs", "-1"], env)
    assert bad.returncode != 0 and "epochs must be an integer ≥ 1, got -1" in bad.stderr


@pytest.mark.notebooks
def test_runner_resume_continues_an_interrupted_run(tmp_path):
    """A run stopped between epochs 1 and 2 and rerun with --resume: the uninterrupted numbers.

    A kill after epoch 1's checkpoint leaves the run folder with ``checkpoints/epoch-1.pt`` and
    without epoch 2, the student or any results JSON (checkpoints and results are written
    atomically, at their ends); the second run is cut back to exactly that.
    """
    env = {**os.environ, "SAMD_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "scripts/run_experiments.py", "--methods", "SAMD", "--preset", "smoke"]
    cmd += ["--param", "epochs=2"]
    for name in ("whole", "cut"):
        out = _run([*cmd, "--output-dir", str(tmp_path / name)], env)
        assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    seed_dir = tmp_path / "cut" / "smoke" / "SAMD" / "seed0"
    run_dir = next(seed_dir.glob("*/checkpoints")).parent
    for path in (seed_dir / "results.json", run_dir / "results.json"):
        path.unlink()
    (run_dir / "checkpoints" / "epoch-2.pt").unlink()
    shutil.rmtree(run_dir / "student")
    stamp = (run_dir / "checkpoints" / "epoch-1.pt").stat().st_mtime_ns
    out = _run([*cmd, "--output-dir", str(tmp_path / "cut"), "--resume"], env)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert (run_dir / "checkpoints" / "epoch-1.pt").stat().st_mtime_ns == stamp  # not redone
    assert (run_dir / "checkpoints" / "epoch-2.pt").is_file()
    whole = load_record(tmp_path / "whole" / "smoke" / "SAMD" / "seed0" / "results.json")
    resumed = load_record(seed_dir / "results.json")
    assert resumed.metrics == whole.metrics and resumed.config["train"]["resume"] is True
