"""GPU readiness (issue 16, item 9): ``scripts/gpu_check.py`` and the CUDA path of the package.

Two tiers. The default tier runs the script's checks with ``--device cpu`` (gloo, bf16 autocast
on the CPU) and its failure paths, so that its logic is tested without a GPU. The ``gpu`` tier
(``pytest -m gpu``; skipped without CUDA) runs the same checks on CUDA for real and compares
bf16 steps, the teacher cache and the encoder on the GPU with fp32 on the CPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from samd_common.methods import METHODS
from samd_common.models import io as io_module
from samd_common.models import load_encoder
from samd_common.models.tiny import build_tiny_pair
from samd_common.training.teacher_cache import ARRAYS, build_teacher_cache

REPO = Path(__file__).resolve().parents[1]
CHECKS = [
    "environment",
    "teacher-cache",
    "bf16-autocast",
    "student-precision",
    *[f"method:{m}" for m in METHODS],
    "ddp",
]
LINE = re.compile(r"^(PASS|FAIL|SKIP) [\w:.-]+: .+$")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gc = _load_script()


def _main(*argv: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = gc.main(list(argv))
    return code, out.getvalue().splitlines()


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """The whole script once on the CPU: (exit code, stdout lines, JSON report, work dir)."""
    root = tmp_path_factory.mktemp("gpu_check_cpu")
    code, lines = _main("--device", "cpu", "--json", str(root / "report.json"), "--work", str(root))
    return code, lines, json.loads((root / "report.json").read_text()), root


@pytest.fixture(scope="module")
def cpu_setting(cpu_run):
    """The CPU run's setting again (its tiny pair and teacher cache are reused from disk)."""
    return gc.build_setting(torch.device("cpu"), cpu_run[3])


# --- default tier: the script's logic on the CPU ------------------------------------------------


def test_cpu_run_passes_every_check(cpu_run):
    code, _, report, _ = cpu_run
    assert code == 0 and report["ok"] is True and report["device"] == "cpu"
    assert [c["check"] for c in report["checks"]] == CHECKS
    failed = {c["check"]: c["detail"] for c in report["checks"] if c["status"] != "PASS"}
    assert not failed
    detail = {c["check"]: c["detail"] for c in report["checks"]}
    assert detail["ddp"].startswith("gloo, world size 1: 2 SAMD steps")
    assert all(detail[f"method:{m}"].endswith("over 2 steps (fp32)") for m in METHODS)  # CPU
    assert "bf16 autocast on the CPU" in detail["environment"]
    assert report["env"]["torch"] == torch.__version__


def test_report_lines_are_the_checks_then_a_summary(cpu_run):
    _, lines, report, _ = cpu_run
    assert len(lines) == len(CHECKS) + 1
    assert all(LINE.match(line) for line in lines[:-1]), lines
    assert lines[:-1] == [f"{c['status']} {c['check']}: {c['detail']}" for c in report["checks"]]
    n = len(CHECKS)
    assert re.fullmatch(rf"ready: {n} passed, 0 failed, 0 skipped on cpu in [\d.]+ s", lines[-1])
    assert report["summary"] == lines[-1]


def test_without_cuda_it_exits_2_with_one_line_and_runs_nothing(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gc.main(["--json", str(tmp_path / "r.json")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and not (tmp_path / "r.json").exists()
    assert out.err.splitlines() == [gc.no_cuda_message()]
    assert out.err.startswith(f"no CUDA device: torch {torch.__version__} ")
    assert out.err.rstrip().endswith("(install a CUDA build of torch, see README Install)")


def test_a_failed_check_exits_1_and_skips_what_depends_on_it(monkeypatch):
    def broken(device, work):
        raise RuntimeError("CUDA error: no kernel image is available\nsecond line")

    monkeypatch.setattr(gc, "build_setting", broken)
    code, lines = _main("--device", "cpu", "--methods", "mrl", "SAMD")
    assert code == 1
    assert lines[0].startswith("PASS environment: ")
    assert lines[1] == "FAIL teacher-cache: RuntimeError: CUDA error: no kernel image is available"
    skip = "needs the teacher cache, which failed above"
    want = ["bf16-autocast", "student-precision", "method:MRL", "method:SAMD", "ddp"]
    assert lines[2:-1] == [f"SKIP {name}: {skip}" for name in want]
    assert lines[-1].startswith("NOT READY: 1 passed, 1 failed, 5 skipped on cpu in ")


def test_exit_code_counts_failures_not_skips():
    res = [gc.CheckResult("a", "PASS", "", 0.0), gc.CheckResult("b", "SKIP", "", 0.0)]
    assert gc.exit_code(res) == 0
    assert gc.exit_code([*res, gc.CheckResult("c", "FAIL", "", 0.0)]) == 1


def test_bad_arguments_are_argparse_errors_that_say_what_to_do(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gc.main(["--device", "cpu", "--methods", "SAMDD"])
    assert exit_info.value.code == 2 and "Did you mean 'SAMD'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gc.main(["--device", "mps"])
    assert "use cuda, cuda:N or cpu" in capsys.readouterr().err


def test_bf16_step_runs_the_linear_layers_in_bf16_and_stays_close(cpu_setting, monkeypatch):
    step = gc.bf16_step(cpu_setting, "EmbedDistill")
    assert step["linear_dtypes"] == ["torch.bfloat16"] and step["grads_finite"]
    gap = abs(step["loss"] - step["fp32_cpu"])
    assert 0 < gap <= gc.BF16_TOL * max(1.0, abs(step["fp32_cpu"]))  # rounded, yet close
    assert step["grad_cosine"] >= gc.MIN_GRAD_COSINE
    monkeypatch.setattr(gc, "BF16_TOL", 0.0)  # bf16's rounding is then a failure
    with pytest.raises(gc.CheckFailed, match=r"^SAMD: bf16 loss [\d.]+ vs fp32 CPU [\d.]+"):
        gc.bf16_check(cpu_setting)


def test_precision_check_fails_for_a_student_loaded_with_bf16_weights(
    cpu_run, cpu_setting, monkeypatch
):
    work = cpu_run[3]  # the CPU run's work dir (tiny/ and cache/)
    detail = gc.precision_check(cpu_setting, work, 2)
    assert re.fullmatch(r"(9\d|100)% of the student's float32 weights changed in 2 steps.*", detail)
    # What experiment.load_models gets on a bf16 GPU: load_encoder's "auto" dtype is bf16 there.
    monkeypatch.setattr(io_module, "pick_dtype", lambda spec, device: torch.bfloat16)
    with pytest.raises(gc.CheckFailed, match=r"only \d+% of the student's bfloat16 weights"):
        gc.precision_check(cpu_setting, work, 2)


def test_the_experiment_trains_fp32_student_weights_where_auto_means_bf16(
    cpu_run, cpu_setting, monkeypatch
):
    """On a bf16 GPU the table's "auto" dtype is bf16; the trained student must still be fp32."""
    pick = io_module.pick_dtype
    gpu_like = lambda spec, device: torch.bfloat16 if spec.dtype == "auto" else pick(spec, device)  # noqa: E731
    monkeypatch.setattr(io_module, "pick_dtype", gpu_like)
    detail = gc.precision_check(cpu_setting, cpu_run[3], 2)  # experiment.load_models inside
    assert "float32 weights changed" in detail


class _DoublingDDP(DistributedDataParallel):
    """DDP whose gradient all-reduce returns twice the gradient (a broken collective)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

        def double(_state, bucket):
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer() * 2)
            return fut

        self.register_comm_hook(None, double)


def test_ddp_check_catches_a_wrong_gradient_all_reduce(cpu_setting, monkeypatch):
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", _DoublingDDP)
    with pytest.raises(gc.CheckFailed, match="differ under DDP"):
        gc.ddp_check(cpu_setting, 2)
    assert not torch.distributed.is_initialized()  # the group was torn down after the failure


def test_method_check_fails_when_no_weight_moves(cpu_setting, monkeypatch):
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, closure=None: None)
    with pytest.raises(gc.CheckFailed, match="no weight changed in 2 steps"):
        gc.method_check(cpu_setting, "MRL", 2)


# --- gpu tier: the CUDA path for real (pytest -m gpu) -------------------------------------------


@pytest.fixture(scope="module")
def cuda_setting(tmp_path_factory):
    return gc.build_setting(torch.device("cuda", 0), tmp_path_factory.mktemp("gpu_check_cuda"))


@pytest.mark.gpu
@needs_cuda
def test_gpu_check_passes_on_cuda(tmp_path):
    code, lines = _main("--json", str(tmp_path / "report.json"))
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["check"] for c in report["checks"]] == CHECKS
    status = {c["check"]: c["status"] for c in report["checks"]}
    bf16 = torch.cuda.is_bf16_supported()
    assert status.pop("bf16-autocast") == ("PASS" if bf16 else "SKIP")
    assert set(status.values()) == {"PASS"}, lines
    assert code == 0 and report["device"] == "cuda:0"
    detail = {c["check"]: c["detail"] for c in report["checks"]}
    assert torch.cuda.get_device_name(0) in detail["environment"]
    assert detail["ddp"].startswith("nccl, world size 1")
    precision = "(bf16)" if bf16 else "(fp32)"
    assert all(detail[f"method:{m}"].endswith(precision) for m in METHODS)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["SAMD", "EmbedDistill"])
def test_a_bf16_step_on_cuda_matches_fp32_on_the_cpu(cuda_setting, name):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16 (the loop trains in fp32 there)")
    step = gc.bf16_step(cuda_setting, name)
    assert step["linear_dtypes"] == ["torch.bfloat16"] and step["grads_finite"]
    assert step["loss"] == pytest.approx(step["fp32_cpu"], rel=gc.BF16_TOL, abs=gc.BF16_TOL)
    assert step["grad_cosine"] >= gc.MIN_GRAD_COSINE


@pytest.mark.gpu
@needs_cuda
def test_teacher_cache_and_encoder_on_cuda_match_the_cpu(tmp_path):
    """fp32 on both (exact up to kernels); the GPU's default bf16 weights (dtype "auto") close."""
    dirs = build_tiny_pair(tmp_path / "tiny")
    texts = [f"sentence {i}: the cat sat on the mat, 猫 🐈" for i in range(12)]
    caches, embeddings = {}, {}
    runs = [("cpu", "cpu", None), ("fp32", "cuda", "float32"), ("auto", "cuda", None)]
    for run, device, dtype in runs:
        teacher = load_encoder(
            str(dirs["teacher"]), device=device, dtype=dtype, attn_implementation="eager"
        )
        caches[run] = build_teacher_cache(
            teacher, texts, 32, cache_dir=tmp_path / run, show_progress=False
        )
        student = load_encoder(str(dirs["student"]), device=device, dtype=dtype)
        embeddings[run] = student.encode(texts)  # (N, D_s)
    for name in ARRAYS:
        a, b = caches["cpu"].arrays[name], caches["fp32"].arrays[name]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
    np.testing.assert_allclose(embeddings["cpu"], embeddings["fp32"], atol=1e-4)
    for got, want in [
        (caches["auto"].arrays["pooled"], caches["cpu"].arrays["pooled"]),  # (N, D_t)
        (embeddings["auto"], embeddings["cpu"]),  # (N, D_s)
    ]:
        got, want = (torch.tensor(np.asarray(x, np.float32)) for x in (got, want))
        assert torch.nn.functional.cosine_similarity(got, want).min() > 0.99
