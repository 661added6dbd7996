"""Dev rows for the out-of-domain pair and STS tasks, so that dev decisions see OOD transfer.

The suite's SciTail and STS12 files are test splits only, so the dev protocol
(:mod:`~samd_common.data.holdout`) scores Emotion alone out of domain: a design decision made on
dev never sees the two tasks that hold most of the teacher's OOD lead. The seed paper's data
folder (``samd/multi-data`` in ``../shared/data``) holds validation files for both —
``scitail_validation.csv`` (SciTail's dev split) and ``sts12_validation.csv`` (pairs of STS12's
train split) — and :func:`build_ood_dev` turns them into dev splits:

* a pair is dropped when either sentence (case- and whitespace-normalised) occurs in **any**
  file of the evaluation folder — any task, any split. No test sentence enters dev, and since
  the distillation corpus is drawn from those files' train splits, no dev sentence is in the
  corpus either: the corpus built from the new folder is the same, text for text, and so is
  the teacher cache keyed by it;
* duplicate pairs are dropped; the columns are the suite's (``sentence1, sentence2, label`` or
  ``score``).

The output folder links every file of the evaluation folder and adds ``scitail_dev.csv`` and
``sts12_dev.csv``: pass it as ``eval_dir`` of a ``bench-dev`` run (or ``--eval-dir`` of
``scripts/evaluate.py --split dev``) and the dev OOD average covers Emotion, SciTail and STS12 as
the test one does. In test mode nothing changes but the pair accuracy threshold of SciTail,
fitted on its dev rows instead (its main score, average precision, needs none).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from samd_common.data.corpus import normalize_text
from samd_common.data.tasks import TASKS, read_csv_checked

log = logging.getLogger(__name__)

OOD_DEV_FILES = {"scitail": "scitail_validation.csv", "sts12": "sts12_validation.csv"}
"""Task → its validation file in the seed paper's data folder (``samd/multi-data``)."""


def folder_sentences(eval_dir: Path) -> set[str]:
    """Normalised sentences of every CSV in ``eval_dir`` (every text column of every split)."""
    columns = {c for spec in TASKS.values() for c in spec.text_columns}  # text, sentence1, 2
    out: set[str] = set()
    for path in sorted(eval_dir.glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for column in sorted(columns):
            if column in frame:
                out.update(frame[column].map(normalize_text))
    return out


def ood_dev_rows(path: Path, task: str, banned: set[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """One task's dev rows from ``path``, less pairs sharing a sentence with ``banned``.

    Args:
        path: a validation CSV with the task's columns (``TaskSpec.text_columns`` + label).
        task: ``"scitail"`` or ``"sts12"`` (any suite pair or STS task).
        banned: normalised sentences no dev pair may contain (:func:`folder_sentences`).

    Returns:
        ``(rows, counts)``: the kept rows with the suite's columns only, and
        ``{"read", "overlap", "duplicate", "kept"}`` row counts.
    """
    spec = TASKS[task]
    if spec.family not in ("pair", "sts"):
        raise ValueError(f"{task!r} is a {spec.family} task; OOD dev rows are for pair/STS tasks.")
    columns = (*spec.text_columns, spec.label_column)
    frame = read_csv_checked(path, columns)[list(columns)]
    keys = [frame[c].map(normalize_text) for c in spec.text_columns]
    overlap = keys[0].isin(banned) | keys[1].isin(banned)
    clean = frame[~overlap]
    kept = clean[~pd.concat(keys, axis=1)[~overlap].duplicated()]
    counts = {"read": len(frame), "overlap": int(overlap.sum())}
    counts |= {"duplicate": len(clean) - len(kept), "kept": len(kept)}
    return kept.reset_index(drop=True), counts


def build_ood_dev(source_dir: Path, eval_dir: Path, out_dir: Path) -> dict[str, dict[str, int]]:
    """Write ``out_dir``: links to every file of ``eval_dir`` plus a dev split per OOD task.

    Args:
        source_dir: the seed paper's data folder holding :data:`OOD_DEV_FILES`.
        eval_dir: the suite's evaluation folder (left untouched).
        out_dir: created if needed; an existing ``<task>_dev.csv`` there is overwritten.

    Returns:
        Per task, :func:`ood_dev_rows`'s counts.
    """
    source_dir, eval_dir, out_dir = Path(source_dir), Path(eval_dir), Path(out_dir)
    missing = [n for n in OOD_DEV_FILES.values() if not (source_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{source_dir} lacks {missing}: pass the seed paper's data folder "
            "(../shared/data/samd/multi-data) as the source."
        )
    if out_dir.resolve() == eval_dir.resolve():
        raise ValueError("out_dir must differ from eval_dir: the evaluation folder is not edited.")
    banned = folder_sentences(eval_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    replaced = {name for task in OOD_DEV_FILES for name in TASKS[task].files["dev"]}
    for path in sorted(eval_dir.glob("*.csv")):
        _fresh(out_dir / path.name)
        if path.name not in replaced:  # a dev file of its own gives way to the one built here
            (out_dir / path.name).symlink_to(path.resolve())
    report = {}
    for task, name in OOD_DEV_FILES.items():
        rows, report[task] = ood_dev_rows(source_dir / name, task, banned)
        _fresh(out_dir / f"{task}_dev.csv")  # never write through a link into eval_dir
        rows.to_csv(out_dir / f"{task}_dev.csv", index=False)
        log.info("%s dev: %s → %s", task, report[task], out_dir / f"{task}_dev.csv")
    return report


def _fresh(path: Path) -> None:
    """Remove ``path`` (a link or a file) if it exists, so that a write cannot follow a link."""
    if path.is_symlink() or path.exists():
        path.unlink()
