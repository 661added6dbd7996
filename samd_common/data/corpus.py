"""The unlabelled distillation corpus: a leakage-free builder, a leakage audit, and the loader.

DESIGN.md §3.2: sample N texts per source from *train* splits only, drop every sentence that
occurs in any dev/test file of the suite (case- and whitespace-normalised), de-duplicate,
optionally leave the out-of-domain sources out entirely, and report what leaked.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from samd_common.data.tasks import TASKS, DataError, find_split_file, load_split, read_csv_checked

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


@dataclass
class CorpusReport:
    """What the builder kept and dropped, and how much of each dev/test set the corpus holds."""

    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    overlap: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)


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


def _clean_pool(pool: list[str], banned: set[str], seen: set[str]) -> tuple[list[str], int, int]:
    """Drop texts whose key is ``banned`` or already ``seen`` (adding the kept ones to ``seen``).

    Returns ``(kept texts, dropped as eval overlap, dropped as duplicates)``.
    """
    clean, n_banned, n_dup = [], 0, 0
    for text in pool:
        key = normalize_text(text)
        if key in banned:
            n_banned += 1
        elif key in seen:
            n_dup += 1
        else:
            seen.add(key)
            clean.append(text)
    return clean, n_banned, n_dup


def build_corpus(
    eval_dir: Path,
    n_per_source: int,
    seed: int = 0,
    include_ood: bool = False,
    protect_dirs: list[Path] | None = None,
) -> tuple[pd.DataFrame, CorpusReport]:
    """Sample a leakage-free ``text,source`` corpus from the suite's train splits.

    Args:
        eval_dir: folder with the task CSVs (train splits are the only source of text).
        n_per_source: texts sampled per task (fewer if a source has fewer clean texts).
        seed: sampling seed.
        include_ood: keep out-of-domain tasks as sources (off by default: OOD stays unseen).
        protect_dirs: extra folders whose dev/test sentences must also be excluded.

    Returns:
        (corpus frame with columns ``text, source``, report).
    """
    protected = protected_texts([eval_dir, *(protect_dirs or [])])
    banned = _all_protected(protected)
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    settings = {
        "eval_dir": str(eval_dir),
        "n_per_source": n_per_source,
        "seed": seed,
        "include_ood": include_ood,
        "protect_dirs": [str(p) for p in protect_dirs or []],
    }
    rows, report = [], CorpusReport(settings=settings)
    for name, spec in TASKS.items():
        if spec.ood and not include_ood:
            continue
        pool = split_texts(eval_dir, name, "train")
        if not pool:
            log.info("source %s: no train split in %s, skipped", name, eval_dir)
            continue
        clean, n_banned, n_dup = _clean_pool(pool, banned, seen)
        take = rng.permutation(len(clean))[:n_per_source]
        rows += [{"text": clean[i], "source": name.upper()} for i in sorted(take)]
        report.sources[name] = {
            "train_texts": len(pool),
            "dropped_eval_overlap": n_banned,
            "dropped_duplicates": n_dup,
            "clean": len(clean),
            "sampled": len(take),
        }
    frame = pd.DataFrame(rows, columns=["text", "source"])
    report.overlap = overlap_report(frame["text"].tolist(), protected)
    return frame, report


def audit_corpus(corpus_csv: Path, eval_dirs: list[Path]) -> dict[str, object]:
    """Leakage of an existing corpus: overlap with every task's dev/test sentences, by source."""
    frame = read_csv_checked(corpus_csv, ("text",))
    texts = frame["text"].tolist()
    protected = protected_texts(eval_dirs)
    result: dict[str, object] = {
        "corpus": str(corpus_csv),
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


def load_corpus(path: str | Path, max_texts: int | None = None, seed: int = 0) -> list[str]:
    """Texts of a ``text[,source]`` corpus CSV (an unnamed index column is ignored).

    Raises:
        DataError: if the file or its ``text`` column is missing, or a text is empty.
    """
    path = Path(path)
    frame = read_csv_checked(path, ("text",))
    texts = frame["text"].str.strip()
    if (texts == "").any():
        row = int(np.flatnonzero((texts == "").to_numpy())[0]) + 2
        raise DataError(f"{path}: column 'text' is empty at line {row}. Drop empty rows.")
    out = texts.tolist()
    if max_texts is not None and len(out) > max_texts:
        keep = np.sort(np.random.default_rng(seed).permutation(len(out))[:max_texts])
        out = [out[i] for i in keep]
    return out
