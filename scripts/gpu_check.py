"""GPU readiness: run the package's CUDA path on tiny models and print a short report.

    python scripts/gpu_check.py [--device cuda|cuda:N|cpu] [--json PATH] [--steps 2]
        [--methods SAMD EmbedDistill] [--work DIR]

One line per check, ``PASS/FAIL/SKIP <check>: <detail>``, then a summary line (stdout; a failed
check's traceback goes to stderr):

* ``environment``: torch and CUDA versions, the device and its compute capability, bf16
  support, free memory, and a matmul on the device (catches a torch build without kernels for
  this GPU).
* ``teacher-cache``: tiny student/teacher pair (``models.tiny``), the teacher run on the device
  into a teacher cache (``build_teacher_cache``), and a random SKD sense dictionary.
* ``bf16-autocast``: for SAMD and EmbedDistill, one forward+backward on the device under
  ``torch.autocast(<device>, dtype=torch.bfloat16)`` — what ``training.loop.train`` wraps every
  step in when ``TrainConfig.bf16`` is on and the GPU supports bf16 — against the same step in
  fp32 on the CPU (dropout off, same weights and batch): the Linear layers must run in bf16,
  loss and gradients be finite, the loss within ``BF16_TOL`` and the gradient direction close.
* ``student-precision``: the student as ``experiment.load_models`` loads it (its device and
  dtype) trained ``--steps`` SAMD steps at the paper's lr 2e-5: at least ``MIN_CHANGED`` of its
  weights must change (bf16 *weights* lose AdamW updates below bf16's resolution).
* ``method:<NAME>``: every registry method built on the tiny student and trained ``--steps``
  optimizer steps by ``training.loop.train`` on the device (bf16 exactly when the loop uses it):
  finite losses, no skipped step, weights on the device and moved.
* ``ddp``: a one-process process group (nccl on CUDA, gloo on the CPU); SAMD wrapped in
  ``DistributedDataParallel`` as the loop wraps it trains ``--steps`` steps and must give the
  losses and first gradients of the same steps without DDP.

``--device cpu`` runs the same checks on the CPU (gloo; bf16 autocast on the CPU), so that the
logic can be checked without a GPU. Exit code: 0 when every check that ran passed, 1 when one
failed, 2 when CUDA is wanted but unavailable (nothing runs then). Takes seconds on a GPU.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from transformers.utils import logging as hf_logging

from samd_common.config import RunState
from samd_common.data.demo import synthetic_sentences
from samd_common.experiment import load_models, make_config
from samd_common.files import write_json_atomic
from samd_common.methods import METHODS, TeacherInfo, get_method
from samd_common.models import SentenceEncoder, load_encoder
from samd_common.models.tiny import build_tiny_pair
from samd_common.reporting.results import environment_info
from samd_common.skd.senses import SenseTable, tokenizer_fingerprint
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, param_groups, train
from samd_common.training.teacher_cache import TeacherCache, build_teacher_cache

log = logging.getLogger("gpu_check")
N_TEXTS, BATCH, MAX_LEN = 16, 4, 32  # 4 optimizer steps per pass over the tiny corpus
BF16_METHODS = ("SAMD", "EmbedDistill")  # compared with fp32 on the CPU
BF16_TOL = 0.05  # |loss_bf16 − loss_fp32| ≤ BF16_TOL · max(1, |loss_fp32|): bf16 keeps 8 bits
MIN_GRAD_COSINE = 0.95  # cosine of the bf16 device gradient with the fp32 CPU gradient
MIN_CHANGED = 0.5  # share of student weights an AdamW step must change (fp32: ~97%, bf16: 22%)
DDP_RTOL = 1e-4  # one rank: DDP's averaged gradient is the plain one, up to kernel rounding
NO_CUDA = "no CUDA device: torch {torch} (CUDA build: {cuda}) sees no GPU (install a CUDA build of torch, see README Install)"  # noqa: E501


class CheckFailed(Exception):
    """A check ran and its result is wrong."""


class CheckSkipped(Exception):
    """A check does not apply here (its message says why)."""


@dataclass
class CheckResult:
    """One line of the report."""

    check: str  # e.g. "method:SAMD"
    status: str  # PASS, FAIL or SKIP
    detail: str  # what was measured, or the error
    seconds: float  # wall time of the check

    def line(self) -> str:
        """``STATUS check: detail``."""
        return f"{self.status} {self.check}: {self.detail}"


@dataclass
class Setting:
    """What the method checks share: the tiny models, a teacher cache and a sense dictionary."""

    device: torch.device  # where the checks run
    student: SentenceEncoder  # tiny student on the CPU; each check trains a copy
    texts: list[str]  # the N_TEXTS corpus texts
    cache: TeacherCache  # teacher outputs, computed on ``device``
    info: TeacherInfo  # the teacher widths the builders take
    senses: str  # folder of SKD's sense dictionary


def no_cuda_message() -> str:
    """The one-line error for a machine whose torch sees no GPU."""
    return NO_CUDA.format(torch=torch.__version__, cuda=torch.version.cuda or "none (CPU build)")


def loop_uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether ``training.loop.train`` autocasts to bf16 on ``device`` (its own condition)."""
    return cfg.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()


def run_check(name: str, fn: Callable[[], str]) -> CheckResult:
    """Run one check, print its report line and return it; an exception is a FAIL."""
    start = time.perf_counter()
    try:
        status, detail = "PASS", fn()
    except CheckSkipped as err:
        status, detail = "SKIP", str(err)
    except Exception as err:  # noqa: BLE001 - every error is a failed check, reported
        log.error("check %s failed", name, exc_info=True)
        message = (str(err).strip().splitlines() or [""])[0][:300]
        status, detail = "FAIL", f"{type(err).__name__}: {message}"
    result = CheckResult(name, status, detail, time.perf_counter() - start)
    print(result.line(), flush=True)
    return result


def environment_check(device: torch.device) -> str:
    """Versions, the device and a matmul on it (a torch without kernels for this GPU fails)."""
    x = torch.randn(64, 64, device=device)
    value = float((x @ x.T).trace())  # = ‖x‖² ≥ 0
    if not math.isfinite(value) or value <= 0:
        raise CheckFailed(f"a 64×64 matmul on {device} gave trace {value}, expected > 0")
    versions = f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}"
    if device.type == "cpu":
        return f"{versions}, cpu ({torch.get_num_threads()} threads), bf16 autocast on the CPU"
    major, minor = torch.cuda.get_device_capability(device)
    free, total = torch.cuda.mem_get_info(device)
    bf16 = "yes" if torch.cuda.is_bf16_supported() else "no (the loop trains in fp32)"
    return (
        f"{versions}, {torch.cuda.get_device_name(device)} (sm_{major}{minor}), bf16 {bf16}, "
        f"free {free / 2**30:.1f} of {total / 2**30:.1f} GiB"
    )


def build_setting(device: torch.device, work: Path) -> Setting:
    """Tiny pair in ``work``, the teacher cache built on ``device``, a random sense dictionary."""
    dirs = build_tiny_pair(work / "tiny")
    teacher = load_encoder(str(dirs["teacher"]), device=device, attn_implementation="eager")
    student = load_encoder(
        str(dirs["student"]), device="cpu", max_length=MAX_LEN, attn_implementation="eager"
    )
    texts = synthetic_sentences(N_TEXTS, seed=1)
    cache = build_teacher_cache(
        teacher, texts, MAX_LEN, cache_dir=work / "cache", show_progress=False
    )
    info = TeacherInfo.from_cache("tiny-teacher", cache)
    ids = teacher.tokenize(texts)["input_ids"].unique()[:12].tolist()  # some teacher tokens
    gen = np.random.default_rng(0)
    senses = {int(v): gen.standard_normal((2, cache.hidden_dim)) for v in ids}
    meta = {"kind": "senses", "tokenizer": tokenizer_fingerprint(teacher.tokenizer)}
    SenseTable.from_dict(senses, meta=meta, dtype=np.float32).save(work / "senses")
    return Setting(device, student, texts, cache, info, str(work / "senses"))


def build_method(
    setting: Setting, name: str, dropout: bool = True, student: SentenceEncoder | None = None
) -> nn.Module:
    """``name``'s loss module around ``student`` (default: a copy of the CPU student).

    The projections are seeded. ``dropout=False`` zeroes every dropout probability, so that two
    runs compare exactly (``train`` calls ``.train()``, so eval mode is no option).
    """
    spec = get_method(name)
    student = copy.deepcopy(setting.student) if student is None else student
    if not dropout:
        cfg = student.backbone.config
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
        for module in student.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    params = {**spec.defaults, **({"dictionary": setting.senses} if name == "SKD" else {})}
    torch.manual_seed(0)
    return spec.build(student, setting.info, params)


def dataset(setting: Setting, name: str) -> DistillDataset:
    """The tiny corpus with the teacher cache and the string maps ``name`` reads."""
    tok = setting.student.tokenizer
    return DistillDataset(
        setting.texts, tok, MAX_LEN, cache=setting.cache, maps=get_method(name).maps
    )


def first_batches(data: DistillDataset, n: int, device: torch.device) -> list[dict]:
    """The first ``n`` batches of ``BATCH`` texts, collated and on ``device``."""
    batches = []
    for b in range(n):
        items = [data[(b * BATCH + i) % len(data)] for i in range(BATCH)]
        batches.append({k: v.to(device) for k, v in data.collate(items).items()})
    return batches


def method_check(setting: Setting, name: str, steps: int) -> str:
    """Train ``name`` ``steps`` optimizer steps with ``training.loop.train`` on the device."""
    spec = get_method(name)
    method = build_method(setting, name).to(setting.device)
    before = {n: p.detach().clone() for n, p in method.named_parameters()}
    data = dataset(setting, name)
    cfg = TrainConfig(max_steps=steps, batch_size=BATCH, show_progress=False, **spec.train_defaults)
    hist = train(method, data, cfg, collate_fn=data.collate)
    losses = [s["loss"] for s in hist.steps]
    if hist.skipped_nonfinite or len(losses) != steps or not all(map(math.isfinite, losses)):
        raise CheckFailed(f"losses {losses}, {hist.skipped_nonfinite} non-finite steps skipped")
    where = {p.device for p in method.parameters()}
    if where != {setting.device}:
        raise CheckFailed(f"parameters on {sorted(map(str, where))}, expected {setting.device}")
    moved = max(float((p.detach() - before[n]).abs().max()) for n, p in method.named_parameters())
    if moved == 0:
        raise CheckFailed(f"no weight changed in {steps} steps (losses {losses})")
    precision = "bf16" if loop_uses_bf16(cfg, setting.device) else "fp32"
    return f"loss {losses[0]:.4f} → {losses[-1]:.4f} over {steps} steps ({precision})"


def precision_check(setting: Setting, work: Path, steps: int) -> str:
    """The student as ``experiment.load_models`` loads it: most of its weights move in training.

    An AdamW step at the paper's lr (2e-5) is below bf16's resolution for weights of ~0.05 (one
    bf16 step there is 2.4e-4), so a student whose *weights* are bf16 barely trains: bf16
    belongs in the loop's autocast, the trained weights in fp32.
    """
    cfg = make_config(
        "SAMD",
        student=str(work / "tiny" / "tiny-student"),
        preset="smoke",
        max_length=MAX_LEN,
        output_dir=str(work / "run"),
    )
    run = RunState(cfg, work / "run", get_method("SAMD"), build_method=None)
    load_models(run)  # the run's own loader: its device, its dtype
    student = run.student.to(setting.device)
    dtype = str(next(student.parameters()).dtype).removeprefix("torch.")
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    method = build_method(setting, "SAMD", student=student)
    data = dataset(setting, "SAMD")
    train_cfg = TrainConfig(max_steps=steps, batch_size=BATCH, show_progress=False)
    train(method, data, train_cfg, collate_fn=data.collate)
    changed = sum(int((p.detach() != before[n]).sum()) for n, p in student.named_parameters())
    share = changed / sum(p.numel() for p in student.parameters())
    done = f"{share:.0%} of the student's {dtype} weights changed in {steps} steps"
    done += f" at lr {train_cfg.lr:g}"
    if share < MIN_CHANGED:
        raise CheckFailed(
            f"only {done}, as experiment.load_models loads it: updates below the weights' "
            "resolution are lost. Load the trained student in float32 (load_encoder(..., "
            "dtype='float32')) and keep bf16 for the autocast."
        )
    return done


def _loss_and_grads(
    method: nn.Module, batch: dict, bf16: bool = False
) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward (under bf16 autocast if ``bf16``, as the loop runs it) and backward at step 0.

    Returns:
        The loss and every gradient (name → float32 CPU tensor).
    """
    device = next(iter(batch.values())).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, _ = method(batch, 0, 10)
    loss.backward()  # outside the autocast, as in the loop
    grads = {n: p.grad.float().cpu() for n, p in method.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def bf16_step(setting: Setting, name: str) -> dict[str, Any]:
    """One step of ``name`` on the device under bf16 autocast vs the same step in fp32 on the CPU.

    Returns:
        ``loss`` (bf16, device), ``fp32_cpu`` (the reference), ``linear_dtypes`` (output dtypes
        of the student's Linear layers under autocast), ``grads_finite``, ``grad_cosine``
        (cosine of the two flattened gradients over the parameters both have one for).
    """
    data = dataset(setting, name)
    batch = first_batches(data, 1, torch.device("cpu"))[0]
    ref_loss, ref_grads = _loss_and_grads(build_method(setting, name, dropout=False), batch)
    method = build_method(setting, name, dropout=False).to(setting.device)
    dtypes: set[str] = set()
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: dtypes.add(str(out.dtype)))
        for m in method.student.modules()
        if isinstance(m, nn.Linear)
    ]
    device_batch = {k: v.to(setting.device) for k, v in batch.items()}
    loss, grads = _loss_and_grads(method, device_batch, bf16=True)
    for hook in hooks:
        hook.remove()
    shared = sorted(set(grads) & set(ref_grads))
    a = torch.cat([grads[n].flatten() for n in shared])
    b = torch.cat([ref_grads[n].flatten() for n in shared])
    return {
        "loss": loss,
        "fp32_cpu": ref_loss,
        "linear_dtypes": sorted(dtypes),
        "grads_finite": bool(torch.isfinite(a).all()),
        "grad_cosine": float(nn.functional.cosine_similarity(a, b, dim=0)),
    }


def bf16_check(setting: Setting) -> str:
    """``bf16_step`` for ``BF16_METHODS``: bf16 Linear layers, finite, close to fp32."""
    if setting.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise CheckSkipped("this GPU has no bf16; the training loop trains in fp32 on it")
    parts = []
    for name in BF16_METHODS:
        r = bf16_step(setting, name)
        gap = abs(r["loss"] - r["fp32_cpu"])
        if r["linear_dtypes"] != ["torch.bfloat16"]:
            raise CheckFailed(f"{name}: Linear outputs {r['linear_dtypes']} under autocast")
        if not (math.isfinite(r["loss"]) and r["grads_finite"]):
            raise CheckFailed(f"{name}: loss {r['loss']}, gradients finite: {r['grads_finite']}")
        if gap > BF16_TOL * max(1.0, abs(r["fp32_cpu"])) or r["grad_cosine"] < MIN_GRAD_COSINE:
            raise CheckFailed(
                f"{name}: bf16 loss {r['loss']:.6f} vs fp32 CPU {r['fp32_cpu']:.6f}, gradient "
                f"cosine {r['grad_cosine']:.3f} (limits {BF16_TOL} rel., {MIN_GRAD_COSINE})"
            )
        parts.append(f"{name} {r['loss']:.4f} vs fp32 CPU {r['fp32_cpu']:.4f}")
    return "; ".join(parts) + f"; Linear layers in bf16, gradient cosine ≥ {MIN_GRAD_COSINE}"


def train_steps(model: nn.Module, method: nn.Module, batches: list[dict]) -> tuple[list, dict]:
    """AdamW steps of ``model`` (``method`` or its DDP wrapper) at lr 1e-3, in fp32.

    Returns:
        The losses, and the gradients of the first backward (name → CPU tensor).
    """
    optimizer = torch.optim.AdamW(param_groups(method, TrainConfig(lr=1e-3)))
    losses, first = [], {}
    for step, batch in enumerate(batches):
        loss, _ = model(batch, step, len(batches))
        loss.backward()
        if step == 0:
            grads = ((n, p.grad) for n, p in method.named_parameters() if p.grad is not None)
            first = {n: g.detach().cpu().clone() for n, g in grads}
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses, first


def ddp_check(setting: Setting, steps: int) -> str:
    """SAMD under a one-rank DDP group (nccl on CUDA, gloo on the CPU) vs the plain steps."""
    device, backend = setting.device, "nccl" if setting.device.type == "cuda" else "gloo"
    batches = first_batches(dataset(setting, "SAMD"), steps, device)
    plain = build_method(setting, "SAMD", dropout=False).to(device)
    want, want_grads = train_steps(plain, plain, batches)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with tempfile.TemporaryDirectory(prefix="gpu_check-ddp-") as tmp:
        store = dist.FileStore(str(Path(tmp) / "store"), 1)
        dist.init_process_group(backend, store=store, rank=0, world_size=1)
        try:
            method = build_method(setting, "SAMD", dropout=False).to(device)
            ids = [device] if device.type == "cuda" else None  # as the loop's DDP wrapper
            model = nn.parallel.DistributedDataParallel(
                method, device_ids=ids, find_unused_parameters=True
            )
            got, got_grads = train_steps(model, method, batches)
        finally:
            dist.destroy_process_group()
    if set(got_grads) != set(want_grads) or not np.allclose(got, want, rtol=DDP_RTOL):
        raise CheckFailed(f"losses {got} under DDP, {want} without (or other parameters)")
    bad = [n for n in want_grads if not torch.allclose(got_grads[n], want_grads[n], 1e-3, 1e-6)]
    if bad:
        raise CheckFailed(f"first gradients differ under DDP for {len(bad)} tensors: {bad[:3]}")
    return (
        f"{backend}, world size 1: {steps} SAMD steps, losses {got[0]:.4f} → {got[-1]:.4f} "
        f"and first gradients equal those without DDP"
    )


def run_checks(
    device: torch.device, work: Path, methods: list[str], steps: int
) -> list[CheckResult]:
    """Every check in report order; those needing the teacher cache SKIP when it failed."""
    results = [run_check("environment", lambda: environment_check(device))]
    box: dict[str, Setting] = {}

    def setting_check() -> str:
        setting = box["setting"] = build_setting(device, work)
        return f"{N_TEXTS} texts through the tiny teacher on {device}, D_t {setting.info.dim}"

    results.append(run_check("teacher-cache", setting_check))
    checks: list[tuple[str, Callable[[Setting], str]]] = [("bf16-autocast", bf16_check)]
    checks.append(("student-precision", lambda s: precision_check(s, work, steps)))
    checks += [(f"method:{m}", lambda s, m=m: method_check(s, m, steps)) for m in methods]
    checks.append(("ddp", lambda s: ddp_check(s, steps)))
    for name, fn in checks:
        if "setting" not in box:
            results.append(run_check(name, _skip("needs the teacher cache, which failed above")))
        else:
            results.append(run_check(name, lambda fn=fn: fn(box["setting"])))
    return results


def _skip(reason: str) -> Callable[[], str]:
    def skip() -> str:
        raise CheckSkipped(reason)

    return skip


def summary(results: list[CheckResult], device: torch.device, seconds: float) -> str:
    """The last report line: counts per status, the device and the wall time."""
    count = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    verdict = "ready" if exit_code(results) == 0 else "NOT READY"
    return (
        f"{verdict}: {count['PASS']} passed, {count['FAIL']} failed, {count['SKIP']} skipped "
        f"on {device} in {seconds:.1f} s"
    )


def exit_code(results: list[CheckResult]) -> int:
    """0 when no check failed (skips allowed), else 1."""
    return int(any(r.status == "FAIL" for r in results))


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring); ``parse_args`` also checks the values."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per training check")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="registry keys (all)")
    p.add_argument("--work", type=Path, help="folder for the tiny models and cache (a temp dir)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line, its device, step count and method names checked."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        args.device = torch.device(args.device)
    except RuntimeError:
        p.error(f"--device {args.device!r} is no torch device; use cuda, cuda:N or cpu")
    if args.device.type not in ("cuda", "cpu"):
        p.error(f"--device {args.device} is not checked here; use cuda, cuda:N or cpu")
    if args.steps < 1:
        p.error(f"--steps must be ≥ 1, got {args.steps}")
    try:
        args.methods = [get_method(m).name for m in args.methods]
    except KeyError as err:
        p.error(err.args[0])  # the registry's message, with its "did you mean"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the checks, print the report, write the JSON; return the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        print(no_cuda_message(), file=sys.stderr)
        return 2
    if args.device.type == "cuda" and args.device.index is None:
        args.device = torch.device("cuda", torch.cuda.current_device())  # as .to("cuda") places
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        results = run_checks(args.device, args.work or Path(tmp), args.methods, args.steps)
    line = summary(results, args.device, time.perf_counter() - start)
    print(line, flush=True)
    if args.json:
        report = {
            "device": str(args.device),
            "ok": exit_code(results) == 0,
            "summary": line,
            "checks": [asdict(r) for r in results],
            "env": environment_info(),
        }
        write_json_atomic(args.json, report)
    return exit_code(results)


if __name__ == "__main__":
    hf_logging.disable_progress_bar()  # no bars for loading/saving the tiny models
    sys.exit(main())
