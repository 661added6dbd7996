"""Typed run configuration: one dataclass per concern, defaults equal to the paper setting.

:class:`EvalConfig` / :class:`MTEBConfig` (the two evaluation protocols), the preset table
(:data:`PRESETS` of :class:`Preset`), :class:`ExperimentConfig` (one run), and the contract of
``experiment.run_experiment``'s stages: :class:`RunState` (what they hand to each other) and
:class:`RunHooks` (a registry entry's own stages, e.g. SKD's).

Paths resolve from the environment when not given explicitly:
``SAMD_EVAL_DIR`` (evaluation CSVs), ``SAMD_TRAIN_CSV`` (distillation corpus),
``SAMD_OUTPUT_DIR`` (results) and ``SAMD_CACHE_DIR`` (provisioned models, teacher cache).
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_DIMS: tuple[int, ...] = (768, 512, 384, 256, 128, 64)
"""Matryoshka dims evaluated by default (those above the model's width are dropped)."""


def env_path(var: str, default: str | Path | None) -> Path | None:
    """Return ``$var`` as a ``Path`` if set and non-empty, else ``default`` (as a Path or None)."""
    value = os.environ.get(var, "").strip()
    if value:
        return Path(value).expanduser()
    return None if default is None else Path(default).expanduser()


def is_unset(value: Any) -> bool:
    """Whether a run setting was left to its default: None or an empty string (0 is a value)."""
    return value is None or (isinstance(value, str) and not value.strip())


def resolve_setting(
    explicit: Any, preset: Any, env: str | None = None, use_env: bool = True
) -> Any:
    """One run setting: ``explicit`` (unless :func:`is_unset`) > ``$env`` > ``preset``.

    The variable is read with :func:`env_path` and returned as a string; it is skipped when
    ``env`` is None or ``use_env`` is false (e.g. the smoke preset, which uses generated data).
    A given 0 is kept (and rejected by the range checks), not read as "use the default".
    """
    if not is_unset(explicit):
        return explicit
    value = env_path(env, None) if env is not None and use_env else None
    return preset if value is None else str(value)


def check_count(name: str, value: object, minimum: int, none_means: str | None = None) -> None:
    """``value`` is an int ≥ ``minimum`` (or None when ``none_means`` says what None does).

    Raises:
        ValueError: naming the parameter, the value and the valid range.
    """
    if value is None and none_means:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        allowed = f"an integer ≥ {minimum}"
        allowed = f"{none_means} or {allowed}" if none_means else allowed
        raise ValueError(f"{name} must be {allowed}, got {value!r}. Pass a value in that range.")


def check_number(
    name: str, value: object, low: float, high: float | None = None, *, open_low: bool = False
) -> None:
    """``value`` is a finite real number in ``[low, high]`` (``(low, high]`` when ``open_low``).

    Raises:
        ValueError: naming the parameter, the value and the valid range.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value <= high)
    if not ok:
        rng = f"> {low}" if open_low else f"≥ {low}"
        rng = rng if high is None else f"{rng} and ≤ {high}"
        raise ValueError(f"{name} must be a finite number {rng}, got {value!r}.")


def check_bool(name: str, value: object) -> None:
    """``value`` is ``True`` or ``False`` (not ``"no"``, 0 or 1, which Python would read as truth).

    Raises:
        ValueError: naming the parameter and the value.
    """
    if not isinstance(value, bool):
        raise ValueError(
            f"{name} must be True or False (JSON: true/false), got {value!r}; "
            "strings such as 'no' are not read as booleans."
        )


def cache_root() -> Path:
    """Root of every on-disk cache: ``$SAMD_CACHE_DIR`` or ``~/.cache/samd``."""
    return env_path("SAMD_CACHE_DIR", Path.home() / ".cache" / "samd")


@dataclass
class EvalConfig:
    """How the 9-task suite is evaluated (DESIGN.md §7.1)."""

    eval_dir: str | None = None
    """Folder with the task CSVs (canonical or paper layout); None → ``$SAMD_EVAL_DIR``."""
    tasks: tuple[str, ...] | None = None
    """Task names to run (see ``samd_common.data.tasks.TASKS``); None runs all nine."""
    dims: tuple[int, ...] | None = None
    """Matryoshka dims; None → the halving series width, width/2, … ≥ 16 plus ``DEFAULT_DIMS``
    that fit (``evaluation.default_dims``)."""
    max_train: int | None = None
    """Cap on the rows of a classifier/threshold training split (stratified, seeded); None = all."""
    max_test: int | None = None
    """Cap on test rows (seeded) for quick looks; None = all (needed for comparable numbers)."""
    batch_size: int = 64
    """Texts per encoder forward pass."""
    max_length: int = 256
    """Tokens per text at encoding time (longer texts are truncated)."""
    seed: int = 0
    """Seed of the train-split subsample and of the logistic regression."""
    lr_max_iter: int = 200
    """Iteration cap of the logistic-regression solver (lbfgs)."""
    split: str = "test"
    """``"test"``: score the test splits. ``"dev"``: the dev protocol (``data.holdout``): each
    task's dev split, else a fixed held-out slice of its train split (Banking77, MRPC), and no
    score for tasks with neither (SciTail, STS12, unless the folder adds dev rows for them:
    ``data.ood_dev``); never a test row."""
    holdout: bool = False
    """Keep the held-out dev slices (``data.holdout``) out of a run's corpus in test mode too,
    so one corpus serves dev and test runs (always on with ``split="dev"``)."""
    every_epoch: bool = False
    """Also score the student after every training epoch, at its full dim only (one suite
    evaluation per epoch): the ``history["epochs"]`` of the results JSON and the notebook's
    curve. The final evaluation (every dim) is unchanged."""

    def resolved_eval_dir(self) -> Path:
        """The evaluation folder, from the field or ``$SAMD_EVAL_DIR``.

        Raises:
            ValueError: if neither is set.
        """
        path = (
            Path(self.eval_dir).expanduser() if self.eval_dir else env_path("SAMD_EVAL_DIR", None)
        )
        if path is None:
            raise ValueError(
                "No evaluation folder: pass eval_dir=/--eval-dir or set SAMD_EVAL_DIR "
                "(real data: ../shared/data/eval; tiny synthetic data: run "
                "`python scripts/prepare_demo_multitask_data.py` and use data/demo)."
            )
        return path


@dataclass
class MTEBConfig:
    """How the MTEB classification protocol is run (DESIGN.md §7.2; SKD is scored with it)."""

    tasks: tuple[str, ...] = ()
    """MTEB task names (``evaluation.mteb_tasks.MTEB_TASKS``; make_config also takes 1–16)."""
    splits: tuple[str, ...] | None = None
    """Evaluation splits; None = the task's own (Emotion: validation and test)."""
    n_experiments: int | None = None
    """Undersampling experiments per task; None = the task's own (10)."""
    samples_per_label: int | None = None
    """Training rows per label; None = the task's own (MTEB metadata: 8, Emotion 16)."""


@dataclass(frozen=True)
class Preset:
    """One row of :data:`PRESETS`: the values a run takes unless given explicitly."""

    teacher: str  # short name, Hugging Face id or local dir
    student: str  # short name, HF id, local dir, or "teacher:N" (the teacher's first N layers)
    max_texts: int | None  # corpus cap (seeded sample; SKD: per task); None = all
    max_length: int  # token cap for student and teacher
    epochs: int  # passes over the corpus
    batch_size: int  # texts per step
    lr: float  # peak learning rate of the student
    train: dict[str, Any] = field(default_factory=dict)  # other TrainConfig fields (proj_lr)
    corpus_seed: int | None = None  # corpus sample seed; None = the run's seed (a corpus per seed)
    per_source: int | None = 3000  # built corpus without max_texts: texts per source; None = all
    max_train: int | None = None  # suite: cap on classifier/threshold fit rows; None = all
    max_test: int | None = None  # suite: cap on test rows; None = all
    dims: tuple[int, ...] | None = None  # suite: Matryoshka dims; None = the halving series
    eval_seed: int | None = None  # suite: subsample/classifier seed; None = the run's seed
    eval_split: str = "test"  # suite: "test" | "dev" (EvalConfig.split, data.holdout)
    holdout: bool = False  # suite: keep the held-out dev slices out of the corpus in test mode too
    mteb_tasks: tuple[str, ...] = ("Banking77Classification", "EmotionClassification")  # MTEB
    mteb_splits: tuple[str, ...] | None = None  # MTEB: evaluation splits; None = the task's own
    n_experiments: int | None = None  # MTEB: experiments per task; None = the task's own (10)
    params: dict[str, Any] = field(default_factory=dict)  # method parameters the preset sets
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method replacements

    def for_method(self, name: str) -> Preset:
        """This preset with ``methods[name]``'s values in place of the shared ones."""
        return replace(self, **self.methods.get(name, {}), methods={})


PRESETS: dict[str, Preset] = {
    # Seconds on CPU: tiny random models with two tokenizers, synthetic data (tests, CI).
    "smoke": Preset(
        teacher="tiny-teacher",
        student="tiny-student",
        max_texts=64,
        max_length=32,
        epochs=1,
        batch_size=16,
        lr=5e-4,
        max_train=60,
        n_experiments=2,
        methods={
            "SKD": {
                "max_texts": None,
                "batch_size": 32,
                "train": {"proj_lr": None},  # W at the student's lr
                "params": {"max_per_token": 50, "cluster": "mcl"},
            }
        },
    ),
    # `make demo`: distillation that shows in minutes on a 2-core CPU (≈ 4 min for the run, ≈ 3
    # for the teacher's reference evaluation). e5-small → minilm-l3 (all-MiniLM-L6-v2's first 3
    # layers: a student with a real gap to close, 9.4 points in-domain on this protocol, where
    # minilm-l6 is within 1 point of e5-small), 4,800 clean texts, 300 steps at lr 1e-4: with
    # SAMD's defaults (½·L_span + ½·L_unif) avg ID 66.73 → 68.32 / OOD 54.71 → 61.34 @384 and
    # 61.02 → 66.07 / 49.30 → 59.72 @96 (teacher 76.13 / 73.67 and 73.24 / 70.19); at lr 2e-5 an
    # earlier SAMD changed avg ID by −0.39 @384 (probes in results/demo/README.md). Eval capped at
    # 1,000 fit / 500 test rows. SKD: 2,000 training texts per MTEB task, k-means, test split only.
    "demo": Preset(
        teacher="e5-small",
        student="minilm-l3",
        max_texts=4800,
        max_length=64,
        epochs=1,  # unused while max_steps is set
        batch_size=32,
        lr=1e-4,
        # The whole update (α = 1), not SAMD's default ½: on this far-apart pair distillation
        # gains on every family, and the half-way student keeps about half of it (the relational
        # SAMD: avg ID 67.42 / OOD 57.91 at ½ vs 67.80 / 58.96 at 1; results/demo/README.md).
        train={"max_steps": 300, "interpolate": 1.0},
        max_train=1000,
        max_test=500,
        dims=(384, 256, 128, 64),
        mteb_splits=("test",),  # the headline split only, to save encoding time
        methods={
            "SKD": {
                "max_texts": 2000,
                "train": {"proj_lr": 1e-3},  # W starts at the identity and must move in few steps
                "params": {"max_per_token": 200, "cluster": "kmeans"},
            }
        },
    ),
    # The CPU benchmark (results/cpu-bench): a stronger teacher, 600 clean texts per in-domain
    # source (3,600), one epoch, evaluation capped at 1,000 fit / 1,000 test rows per task with a
    # fixed subsample (eval_seed) so that every method and seed is scored on the same rows.
    # SKD: 600 training texts per MTEB task, k-means, test split only.
    "cpu-bench": Preset(
        teacher="embeddinggemma-300m",
        student="minilm-l6",
        max_texts=3600,
        max_length=128,
        epochs=1,
        batch_size=32,
        lr=2e-5,
        max_train=1000,
        max_test=1000,
        eval_seed=0,
        dims=(384, 256, 128, 64),
        mteb_splits=("test",),
        methods={
            "SKD": {
                "max_texts": 600,
                "train": {"proj_lr": 1e-3},
                "params": {"max_per_token": 200, "cluster": "kmeans"},
            }
        },
    ),
    # The paper setting: 5 epochs, lr 2e-5, batch 32, cosine schedule, full corpus and eval.
    # SKD's reference: the LLM2Vec-Llama-3-8B teacher, its first 4 layers as student, the 16
    # reference tasks, 5 epochs at lr 5e-6 (Llama/run_train.sh; batch size not given there).
    "full": Preset(
        teacher="e5-small",
        student="minilm-l6",
        max_texts=None,
        max_length=128,
        epochs=5,
        batch_size=32,
        lr=2e-5,
        mteb_tasks=tuple(str(i) for i in range(1, 17)),
        methods={
            "SKD": {
                "teacher": "llm2vec-llama3-8b",
                "student": "teacher:4",
                "max_length": 512,
                "lr": 5e-6,
                "train": {"proj_lr": None},
                "params": {"max_per_token": 1000, "cluster": "mcl"},
            }
        },
    ),
}

# The benchmark where distillation can show (issue 15; to replace cpu-bench as the headline).
# Corpus: every clean in-domain train text (no per-source cap; OOD sources excluded; every
# dev/test sentence and the held-out dev slices of Banking77/MRPC left out, see holdout) drawn
# with the fixed corpus_seed, so every method and seed trains on the same texts and the
# teacher (whose cache is keyed by the texts) runs once for the whole sweep; the run's seed
# varies initialisation, dropout and data order. Evaluation and SKD: cpu-bench's (1,000 fit /
# 1,000 test rows per task, one fixed subsample, eval_seed 0, dims 384/256/128/64).
# Dev protocol ("bench-dev" below: same corpus, scored on dev rows, never on test): each
# task's dev split; Banking77 and MRPC (no dev split) a fixed held-out slice of train (998 /
# 815 rows, stratified for Banking77), kept out of the corpus and the classifier's fit rows;
# SciTail and STS12 have only a test split, so they have no dev score: OOD dev = Emotion's dev
# split alone, SciTail/STS12 are read on test only (data/holdout.py) — unless eval_dir is the
# folder of scripts/ood_dev_splits.py, which adds leakage-free dev rows for both from the seed
# paper's validation files and leaves the corpus as it is (data/ood_dev.py; `make ood-dev`).
# max_length 96, from the token lengths (scripts/token_lengths.py; prompt and special tokens
# counted): 96 tokens keep 100.00 % (MiniLM) / 99.99 % (EmbeddingGemma) of the 31,254 corpus
# texts whole. 64 would be the smallest with ≥ 99 % (99.92 % / 99.80 %), but max_length also
# caps the texts at evaluation, where 64 would cut 0.06 % / 0.15 % of the test-mode eval
# texts: at 96 none is cut (longest: 83 / 95 tokens), so the scores equal cpu-bench's
# protocol (128) token for token (dev mode: one teacher text of 105 tokens is cut). Batches
# are padded to their longest text, so 96 costs little more than 64 in training.
# Budget, set on the dev protocol (results/bench-dev/README.md): 1,000 optimizer steps (max_steps
# replaces epochs) of batch 32 at lr 2e-5 (cpu-bench's) for minilm-l6; the half-depth minilm-l3
# gained 2.7 points avg ID on dev at lr 1e-4, so `make bench` passes lr=1e-4 for it. SAMD trains
# at lr 1e-4 on minilm-l6 too: under its WiSE-FT (α = ½) the larger step gained on dev (findings
# 23, 25) and on test (+0.31 ± 0.07 avg ID with L_rel, three seeds).
# SKD: as in cpu-bench (600 texts per MTEB task, k-means, test split only).
PRESETS["bench"] = replace(
    PRESETS["cpu-bench"],
    max_texts=None,
    max_length=96,
    train={"proj_lr": 1e-3, "max_steps": 1000},  # epochs unused while max_steps is set
    corpus_seed=0,
    per_source=None,
    holdout=True,
    methods={**PRESETS["cpu-bench"].methods, "SAMD": {"lr": 1e-4}},
)
PRESETS["bench-dev"] = replace(PRESETS["bench"], eval_split="dev")  # bench's dev protocol


def get_preset(name: str) -> Preset:
    """``PRESETS[name]``, or ``ValueError`` naming the closest preset and all of them."""
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown preset {name!r}.{hint} Choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


def default_mteb_dir() -> Path | None:
    """``$SAMD_MTEB_DIR``, else ``../shared/data/mteb`` next to the repository, else None."""
    env = env_path("SAMD_MTEB_DIR", None)
    if env is not None:
        return env
    guess = Path(__file__).resolve().parents[2] / "shared" / "data" / "mteb"
    return guess if guess.is_dir() else None


@dataclass
class ExperimentConfig:
    """One distillation run as the notebooks describe it (saved with its results)."""

    method: str  # registry key = notebook name, e.g. "SAMD"
    teacher: str  # short name, Hugging Face id or local dir
    student: str  # short name, HF id, local dir, or "teacher:N" (SKD: the teacher's first N)
    preset: str  # smoke | demo | cpu-bench | full
    seed: int  # seeds everything (data order, dropout, eval subsampling)
    output_dir: str  # run folder parent (results JSON, student, checkpoints)
    train_csv: str | None  # corpus (text[,source]); None → a clean one from eval_dir (SKD: tasks')
    eval_dir: str | None  # task CSVs; None → $SAMD_EVAL_DIR (MTEB: {Task}_{split}.csv files)
    max_texts: int | None  # corpus cap (seeded sample; SKD: per task); None = all
    max_length: int  # token cap for student and teacher
    teacher_layers: int  # last teacher layers whose attention is cached
    params: dict[str, Any]  # method hyper-parameters (validated by the method)
    train: Any  # training.TrainConfig
    eval: EvalConfig | MTEBConfig  # the registry entry's protocol: the 9-task suite or MTEB
    eval_before: bool = True  # also evaluate the undistilled student (the "before" row)
    corpus_seed: int | None = None  # corpus sample seed; None = ``seed`` (a corpus per seed)
    per_source: int | None = 3000  # built corpus without max_texts: texts per source; None = all

    def __post_init__(self) -> None:
        """Range checks of the run's own numbers (``train``/``eval`` check theirs)."""
        check_count("seed", self.seed, 0)
        check_count("max_texts", self.max_texts, 1, "None (every corpus text)")
        check_count("max_length", self.max_length, 1)
        check_count("teacher_layers", self.teacher_layers, 1)
        check_count("corpus_seed", self.corpus_seed, 0, "None (the run's seed)")
        check_count("per_source", self.per_source, 1, "None (every text of a source)")
        check_bool("eval_before", self.eval_before)
        if not isinstance(self.params, dict):
            raise ValueError(
                f"params must be a dict of method parameters, got {type(self.params).__name__} "
                f"{self.params!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view (``dataclasses.asdict``)."""
        return asdict(self)


Stage = Callable[["RunState"], None]


@dataclass(frozen=True)
class RunHooks:
    """A registry entry's own parts of ``experiment.run_experiment`` (None: the shared one).

    Each stage takes the run's :class:`RunState` and fills its part of it; the stages run in the
    order of the fields below.
    """

    protocol: str = "suite"  # evaluation protocol: "suite" (EvalConfig) | "mteb" (MTEBConfig)
    flavour: Callable[[ExperimentConfig], str] | None = None  # run label; None = the method
    settings: type | None = None  # dataclass of the method's pipeline parameters (in params)
    inputs: Stage | None = None  # evaluation tasks and training texts
    models: Stage | None = None  # the student (and what it is derived from)
    eval_before: Stage | None = None  # the undistilled student's scores
    teacher_cache: Stage | None = None  # the teacher's outputs over the texts
    train: Stage | None = None  # the method on the student
    eval_after: Stage | None = None  # the distilled student's scores


@dataclass
class RunState:
    """What the stages of one run (``experiment.run_experiment``) hand to each other."""

    cfg: ExperimentConfig  # the run's config
    run_dir: Path  # the run folder
    spec: Any  # its registry entry (methods.MethodSpec)
    build_method: Callable[..., Any]  # (student, teacher cache | None, params) → loss module
    flavour: str = ""  # run label: the method, or its variant (SKD-sep)
    tasks: Any = None  # loaded evaluation tasks (suite: TaskData list; MTEB: by name)
    texts: Any = None  # training texts (SKD: per task)
    student: Any = None  # the SentenceEncoder being distilled
    teacher: Any = None  # the teacher, while a stage needs it loaded
    cache: Any = None  # teacher cache over ``texts``
    dims: list[int] = field(default_factory=list)  # evaluated Matryoshka dims
    metrics_before: dict[str, float] = field(default_factory=dict)  # undistilled student
    metrics: dict[str, float] = field(default_factory=dict)  # distilled student
    depths: list[int] = field(default_factory=list)  # elastic depth grid: layer counts
    depth_grid: dict[str, float] = field(default_factory=dict)  # "{key}/L{k}"
    train_summary: dict[str, Any] = field(default_factory=dict)  # steps, skipped, last step
    students: dict[str, str] = field(default_factory=dict)  # saved student folders by name
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    extra: dict[str, Any] = field(default_factory=dict)  # the method's own record fields
    scratch: dict[str, Any] = field(default_factory=dict)  # a method's own in-flight objects


def halving_dims(width: int, minimum: int = 16) -> list[int]:
    """Nested dims ``[width, width//2, …]`` down to ``minimum`` (MRL/SAMD-MRL default).

    Args:
        width: full embedding width D.
        minimum: smallest dim kept (16 or 32 in the MRL setting).

    Returns:
        Descending list of K dims; ``[width]`` when ``width < 2·minimum``.
    """
    if width <= 0 or minimum <= 0:
        raise ValueError(f"width and minimum must be positive, got {width} and {minimum}.")
    dims = [width]
    while dims[-1] // 2 >= minimum:
        dims.append(dims[-1] // 2)
    return dims
