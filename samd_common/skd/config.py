"""SKD run configuration (DESIGN.md §6.9): presets, :class:`SKDConfig`, :func:`make_skd_config`.

``make_skd_config(...)`` resolves every setting as explicit argument > environment variable >
preset (``config.resolve_setting``), the same rule as ``notebook.make_config``. Presets:
``smoke`` (seconds on CPU, tiny models), ``demo`` (minutes on a 2-core CPU), ``cpu-bench`` (the
CPU benchmark) and ``full`` (the reference setting). The pipeline that consumes the config is
``samd_common.skd.run.run_skd``; its steps live in ``samd_common.skd.steps``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from samd_common.config import env_path, resolve_setting
from samd_common.evaluation.mteb_tasks import get_mteb_task
from samd_common.skd.loss import SKDParams
from samd_common.training.loop import TrainConfig

EVAL_MODES = ("replace", "continuous")
SKD_PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on CPU: tiny random models with two tokenizers, synthetic two-task data.
    "smoke": {
        "teacher": "tiny-teacher",
        "student": "tiny-student",
        "tasks": ("Banking77Classification", "EmotionClassification"),
        "max_texts": None,
        "max_length": 32,
        "max_per_token": 50,
        "cluster": "mcl",
        "epochs": 1,
        "batch_size": 32,
        "lr": 5e-4,
        "n_experiments": 2,
    },
    # Minutes on a 2-core CPU: e5-small → MiniLM (cross-tokenizer), two offline MTEB tasks.
    "demo": {
        "teacher": "e5-small",
        "student": "minilm-l6",
        "tasks": ("Banking77Classification", "EmotionClassification"),
        "max_texts": 2000,
        "max_length": 64,
        "max_per_token": 200,
        "cluster": "kmeans",
        "epochs": 1,
        "batch_size": 32,
        "lr": 2e-5,
        "proj_lr": 1e-3,  # W starts at the identity and must move in few steps
        "n_experiments": None,
        "eval_splits": ("test",),  # the headline split only, to save encoding time
    },
    # The CPU benchmark (results/cpu-bench): the cpu-bench teacher → MiniLM, 600 texts per task.
    "cpu-bench": {
        "teacher": "embeddinggemma-300m",
        "student": "minilm-l6",
        "tasks": ("Banking77Classification", "EmotionClassification"),
        "max_texts": 600,
        "max_length": 128,
        "max_per_token": 200,
        "cluster": "kmeans",
        "epochs": 1,
        "batch_size": 32,
        "lr": 2e-5,
        "proj_lr": 1e-3,
        "n_experiments": None,
        "eval_splits": ("test",),
    },
    # The reference: LLM2Vec-Llama-3-8B teacher, its first 4 layers as student, 16 tasks,
    # 5 epochs at lr 5e-6 (Llama/run_train.sh); batch size is not given there.
    "full": {
        "teacher": "llm2vec-llama3-8b",
        "student": "teacher:4",
        "tasks": tuple(str(i) for i in range(1, 17)),
        "max_texts": None,
        "max_length": 512,
        "max_per_token": 1000,
        "cluster": "mcl",
        "epochs": 5,
        "batch_size": 32,
        "lr": 5e-6,
        "n_experiments": None,
    },
}


@dataclass
class SKDConfig:
    """One SKD run (saved with its results)."""

    method: str = "SKD"  # registry key
    mode: str = "all"  # all (one dictionary + student) | sep (one per task)
    teacher: str = "tiny-teacher"  # short name, HF id or local dir
    student: str = "tiny-student"  # name/dir, or "teacher:N" = the teacher's first N layers
    tasks: tuple[str, ...] = ()  # MTEB task names or reference indices 1–16
    data_dir: str | None = None  # folder of {Task}_{split}.csv files (text,label)
    train_csv: str | None = None  # optional corpus (text) replacing the tasks' train texts (all)
    preset: str = "smoke"  # smoke | demo | cpu-bench | full
    seed: int = 0  # data order, dropout, reservoir and k-means seeds
    output_dir: str = "outputs"  # parent of the run folder
    max_texts: int | None = None  # cap on training texts per task (seeded); None = all
    max_length: int = 128  # token cap for teacher and student
    max_per_token: int = 1000  # states kept per token id when gathering (reference 1000)
    cluster: str = "mcl"  # mcl (MCL → k-means) | kmeans (fast mode)
    jobs: int = 1  # parallel clustering processes
    eval_modes: tuple[str, ...] = EVAL_MODES  # replace and/or continuous
    n_experiments: int | None = None  # MTEB experiments (None = the task's own, 10)
    eval_splits: tuple[str, ...] | None = None  # None = the task's own (Emotion: validation, test)
    samples_per_label: int | None = None  # None = the task's own (MTEB metadata)
    params: dict[str, Any] = field(default_factory=dict)  # SKDParams fields
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view."""
        return asdict(self)


def default_mteb_dir() -> Path | None:
    """``$SAMD_MTEB_DIR``, else ``../shared/data/mteb`` next to the repository, else None."""
    env = env_path("SAMD_MTEB_DIR", None)
    if env is not None:
        return env
    guess = Path(__file__).resolve().parents[2] / "shared" / "data" / "mteb"
    return guess if guess.is_dir() else None


def make_skd_config(
    *,
    mode: str = "all",
    teacher: str | None = None,
    student: str | None = None,
    tasks: str | list[str] | tuple[str, ...] | None = None,
    eval_dir: str | None = None,
    train_csv: str | None = None,
    preset: str = "full",
    seed: int = 0,
    output_dir: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    max_texts: int | None = None,
    cluster: str | None = None,
    jobs: int = 1,
    params: dict[str, Any] | None = None,
    **overrides: Any,
) -> SKDConfig:
    """The run config: explicit arguments (empty/0 = unset) > environment > preset.

    ``tasks`` may be a comma-separated string (``"2,4"`` or ``"Banking77,Emotion"``).
    ``overrides`` may set any other ``SKDConfig`` or ``TrainConfig`` field.
    """
    if preset not in SKD_PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(SKD_PRESETS)}.")
    p = SKD_PRESETS[preset]
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    names = tuple(get_mteb_task(t).name for t in (tasks or p["tasks"]))
    train_fields = {f.name for f in fields(TrainConfig)}
    own = {f.name for f in fields(SKDConfig)}
    unknown = set(overrides) - train_fields - own
    if unknown:
        raise ValueError(f"Unknown setting(s) {sorted(unknown)}; see SKDConfig / TrainConfig.")
    tcfg = TrainConfig(
        epochs=epochs or p["epochs"],
        lr=lr or p["lr"],
        batch_size=batch_size or p["batch_size"],
        seed=seed,
        **{
            "proj_lr": p.get("proj_lr"),
            **{k: v for k, v in overrides.items() if k in train_fields},
        },
    )
    skd_params = {**(params or {})}
    SKDParams.from_dict({**skd_params, "mode": mode})  # validate early
    keys = ("max_length", "max_per_token", "n_experiments", "eval_splits")
    preset_values = {k: p[k] for k in keys if k in p}
    own_values = {**preset_values, **{k: v for k, v in overrides.items() if k in own}}
    out = resolve_setting(output_dir, "outputs", "SAMD_OUTPUT_DIR")
    data_dir = eval_dir or (None if preset == "smoke" else default_mteb_dir())
    return SKDConfig(
        mode=mode,
        teacher=teacher or p["teacher"],
        student=student or p["student"],
        tasks=names,
        data_dir=str(data_dir) if data_dir else None,
        train_csv=train_csv or None,
        preset=preset,
        seed=seed,
        output_dir=out,
        max_texts=max_texts or p["max_texts"],
        cluster=cluster or p["cluster"],
        jobs=jobs,
        params=skd_params,
        train=tcfg,
        **own_values,
    )
