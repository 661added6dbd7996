"""The unlabelled distillation corpus: a leakage-free builder, a leakage audit, and the loader.

DESIGN.md §3.2: sample N texts per source from *train* splits only, drop every sentence that
occurs in any dev/test file of the suite (case- and whitespace-normalised), de-duplicate,
optionally leave the out-of-domain sources out entirely, and report what leaked.

A corpus of one's own — a CSV, JSONL, Parquet or text file, a folder of them, or a Hugging Face
dataset (:mod:`~samd_common.data.corpus_sources`) — goes through the same steps:
:func:`load_corpus` reads and samples it, :func:`build_corpus_from` also de-duplicates it and
drops every dev/test sentence, and :func:`audit_corpus` measures its leakage.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from samd_common.data.corpus_sources import read_source
from samd_common.data.holdout import has_holdout, holdout_indices
from samd_common.data.tasks import TASKS, find_split_file, load_split

log = logging.getLogger(__name__)

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Case-fold and collapse whitespace: the key under which two sentences count as equal."""
    return _SPACE.sub(" ", text).strip().casefold()


def split_texts(eval_dir: Path, task: str, split: str) -> list[str]:
    """All texts (every text column) of one split of one task; empty if the file is absent."""
    spec = TASKS[task]
    path = find_split_file(spec, split, eval_dir)
    if path is None:
        return []
    data = load_split(spec, path)
    return data.text1 + (data.text2 or [])


def protected_texts(eval_dirs: list[Path]) -> dict[str, dict[str, set[str]]]:
    """Normalised sentences per task and split (``dev``, ``test``) over every given folder."""
    out: dict[str, dict[str, set[str]]] = {name: {"dev": set(), "test": set()} for name in TASKS}
    for eval_dir in eval_dirs:
        for name in TASKS:
            for split in ("dev", "test"):
                out[name][split].update(
                    normalize_text(t) for t in split_texts(eval_dir, name, split)
                )
    return out


def _all_protected(protected: dict[str, dict[str, set[str]]]) -> set[str]:
    return set().union(*(s for splits in protected.values() for s in splits.values()))


def heldout_texts(eval_dir: Path) -> dict[str, set[str]]:
    """Normalised sentences of each task's held-out dev slice (:mod:`~samd_common.data.holdout`).

    Only tasks with a train split and no dev split in ``eval_dir`` have one (Banking77, MRPC);
    the slice is the one the dev protocol scores (``holdout.dev_view``), whatever the run.
    """
    out: dict[str, set[str]] = {}
    for name, spec in TASKS.items():
        files = {s: find_split_file(spec, s, eval_dir) for s in ("train", "dev")}
        if not has_holdout({s for s, path in files.items() if path is not None}):
            continue
        train = load_split(spec, files["train"])
        held = train.subset(holdout_indices(train, stratify=spec.family == "classification"))
        out[name] = {normalize_text(t) for t in held.text1 + (held.text2 or [])}
    return out


@dataclass
class CorpusReport:
    """What the builder kept and dropped, and how much of each dev/test set the corpus holds."""

    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    overlap: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    # held-out dev slices kept out (build_corpus(holdout=True)): per task, their distinct
    # sentences and how many occur in the corpus (0)
    holdout: dict[str, dict[str, int]] = field(default_factory=dict)


def overlap_report(
    corpus: list[str],
    protected: dict[str, dict[str, set[str]]],
) -> dict[str, dict[str, float]]:
    """Per task: distinct test (and dev+test) sentences, how many occur in ``corpus``, the %."""
    keys = {normalize_text(t) for t in corpus}
    report = {}
    for name, splits in protected.items():
        both = splits["dev"] | splits["test"]
        if both:
            hit, hit_test = len(both & keys), len(splits["test"] & keys)
            report[name] = {
                "test_sentences": len(splits["test"]),
                "test_in_corpus": hit_test,
                "test_percent": round(100.0 * hit_test / max(len(splits["test"]), 1), 2),
                "eval_sentences": len(both),
                "in_corpus": hit,
                "percent": round(100.0 * hit / len(both), 2),
            }
    return report


def _row_status(
    pool: list[str], banned: set[str], seen: set[str], held: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """Per text: ``eval_overlap``, ``holdout``, ``duplicate`` or ``clean``.

    ``eval_overlap``: key in ``banned``; ``holdout``: key in ``held``; ``duplicate``: key
    ``seen``. The clean texts' keys are added to ``seen``.
    """
    status = []
    for text in pool:
        key = normalize_text(text)
        if key in banned:
            status.append("eval_overlap")
        elif key in held:
            status.append("holdout")
        elif key in seen:
            status.append("duplicate")
        else:
            seen.add(key)
            status.append("clean")
    return status


def _clean_pool(
    pool: list[str], banned: set[str], seen: set[str], held: set[str]
) -> tuple[list[str], dict[str, int]]:
    """Drop texts whose key is ``banned``, ``held`` out or already ``seen``.

    The kept ones are added to ``seen``. Returns ``(kept texts, counts)``, the counts keyed
    ``dropped_eval_overlap``, ``dropped_holdout`` and ``dropped_duplicates``.
    """
    status = _row_status(pool, banned, seen, held)
    clean = [text for text, s in zip(pool, status, strict=True) if s == "clean"]
    dropped = {
        "dropped_eval_overlap": status.count("eval_overlap"),
        "dropped_holdout": status.count("holdout"),
        "dropped_duplicates": status.count("duplicate"),
    }
    return clean, dropped


def sample_indices(n: int, max_texts: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``max_texts`` out of ``n`` (all if ``n <= max_texts``).

    Raises:
        ValueError: if ``max_texts`` is not None or a positive integer.
    """
    if max_texts is not None and (
        isinstance(max_texts, bool) or int(max_texts) != max_texts or max_texts < 1
    ):
        raise ValueError(
            f"max_texts must be a positive integer or None (all texts), got {max_texts!r}."
        )
    if max_texts is None or n <= max_texts:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:max_texts])


def build_corpus(
    eval_dir: Path,
    n_per_source: int | None,
    seed: int = 0,
    include_ood: bool = False,
    protect_dirs: list[Path] | None = None,
    holdout: bool = False,
) -> tuple[pd.DataFrame, CorpusReport]:
    """Sample a leakage-free ``text,source`` corpus from the suite's train splits.

    Args:
        eval_dir: folder with the task CSVs (train splits are the only source of text).
        n_per_source: texts sampled per task (fewer if a source has fewer clean texts); None
            keeps every clean text of every source.
        seed: sampling seed.
        include_ood: keep out-of-domain tasks as sources (off by default: OOD stays unseen).
        protect_dirs: extra folders whose dev/test sentences must also be excluded.
        holdout: also leave out every sentence of the held-out dev slices of the tasks that
            have no dev split (:func:`heldout_texts`), so the corpus serves the dev protocol.

    Returns:
        (corpus frame with columns ``text, source``, report).
    """
    protected = protected_texts([eval_dir, *(protect_dirs or [])])
    banned = _all_protected(protected)
    held_by_task = heldout_texts(eval_dir) if holdout else {}
    held = set().union(*held_by_task.values())
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    settings = {
        "eval_dir": str(eval_dir),
        "n_per_source": n_per_source,
        "seed": seed,
        "include_ood": include_ood,
        "protect_dirs": [str(p) for p in protect_dirs or []],
        "holdout": holdout,
    }
    rows, report = [], CorpusReport(settings=settings)
    for name, spec in TASKS.items():
        if spec.ood and not include_ood:
            continue
        pool = split_texts(eval_dir, name, "train")
        if not pool:
            log.info("source %s: no train split in %s, skipped", name, eval_dir)
            continue
        clean, dropped = _clean_pool(pool, banned, seen, held)
        take = rng.permutation(len(clean))[:n_per_source]
        rows += [{"text": clean[i], "source": name.upper()} for i in sorted(take)]
        report.sources[name] = {"train_texts": len(pool), **dropped, "clean": len(clean)}
        report.sources[name]["sampled"] = len(take)
    frame = pd.DataFrame(rows, columns=["text", "source"])
    report.overlap = overlap_report(frame["text"].tolist(), protected)
    keys = {normalize_text(t) for t in frame["text"]}
    report.holdout = {
        name: {"sentences": len(texts), "in_corpus": len(texts & keys)}
        for name, texts in held_by_task.items()
    }
    return frame, report


def build_corpus_from(
    source: str | Path,
    eval_dirs: list[Path],
    max_texts: int | None = None,
    seed: int = 0,
    column: str | None = None,
) -> tuple[pd.DataFrame, CorpusReport]:
    """A leakage-free ``text,source`` corpus from one's own source, like :func:`build_corpus`.

    Reads ``source`` (any corpus source, see :mod:`~samd_common.data.corpus_sources`), drops every
    text that occurs in a dev/test file of ``eval_dirs`` and every repeat (case- and whitespace-
    normalised; the first occurrence stays), then samples ``max_texts`` of the rest as
    :func:`load_corpus` does.

    Returns:
        (corpus frame, report with per-source counts, as :func:`build_corpus`'s).
    """
    frame = read_source(source, column)
    if "source" not in frame.columns:
        frame["source"] = str(source)
    protected = protected_texts([Path(d) for d in eval_dirs])
    frame["status"] = _row_status(frame["text"].tolist(), _all_protected(protected), set())
    clean = frame[frame["status"] == "clean"]
    picked = clean.iloc[sample_indices(len(clean), max_texts, seed)]
    settings = {"source": str(source), "column": column or "text", "max_texts": max_texts}
    settings.update(seed=seed, eval_dirs=[str(d) for d in eval_dirs])
    report = CorpusReport(settings=settings)
    for name, rows in frame.groupby("source", sort=False):
        report.sources[str(name)] = {
            "train_texts": len(rows),
            "dropped_eval_overlap": int((rows["status"] == "eval_overlap").sum()),
            "dropped_duplicates": int((rows["status"] == "duplicate").sum()),
            "clean": int((rows["status"] == "clean").sum()),
            "sampled": int(picked.index.isin(rows.index).sum()),
        }
    out = picked[["text", "source"]].reset_index(drop=True)
    report.overlap = overlap_report(out["text"].tolist(), protected)
    return out, report


def audit_corpus(
    corpus: str | Path, eval_dirs: list[Path], column: str | None = None
) -> dict[str, object]:
    """Leakage of an existing corpus (any source): overlap with every task's dev/test sentences.

    With a ``source`` column (or a folder of files), also the leaking rows per source.
    """
    frame = read_source(corpus, column)
    texts = frame["text"].tolist()
    protected = protected_texts(eval_dirs)
    result: dict[str, object] = {
        "corpus": str(corpus),
        "rows": len(texts),
        "overlap": overlap_report(texts, protected),
    }
    if "source" in frame.columns:
        banned = _all_protected(protected)
        by_source = frame.assign(leak=[normalize_text(t) in banned for t in texts])
        result["leaking_rows_by_source"] = (
            by_source.groupby("source")["leak"].sum().astype(int).to_dict()
        )
    return result


def load_corpus(
    path: str | Path,
    max_texts: int | None = None,
    seed: int = 0,
    *,
    column: str | None = None,
    protect_dirs: list[Path] | None = None,
) -> list[str]:
    """Texts of a corpus source, optionally a seeded sample of ``max_texts`` of them.

    ``path`` is any corpus source: a ``text[,source]`` CSV (an unnamed index column is ignored),
    a JSONL / Parquet / text file, a folder of them or a Hugging Face dataset
    (:mod:`~samd_common.data.corpus_sources`; ``column`` or ``path#column`` names the text
    column). With ``protect_dirs``, dev/test sentences and repeats are dropped first
    (:func:`build_corpus_from`); without, every text is kept as it is (stripped).

    Raises:
        DataError: if the source or its text column is missing, a text is empty, or it has none.
        ValueError: if ``max_texts`` is not None or a positive integer.
    """
    if protect_dirs is not None:
        frame, _ = build_corpus_from(path, protect_dirs, max_texts, seed, column)
        return frame["text"].tolist()
    texts = read_source(path, column)["text"].tolist()
    return [texts[i] for i in sample_indices(len(texts), max_texts, seed)]


def without_heldout(texts: list[str], eval_dir: Path) -> list[str]:
    """``texts`` less every sentence of a held-out dev slice of ``eval_dir`` (``heldout_texts``).

    For a corpus read from a file, so that the dev protocol's rows never reach distillation.
    """
    held = set().union(*heldout_texts(eval_dir).values())
    return [t for t in texts if normalize_text(t) not in held]
