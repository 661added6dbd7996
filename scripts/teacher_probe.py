"""How much of the teacher's embedding a student's embedding predicts linearly (held out).

    python scripts/teacher_probe.py --teacher embeddinggemma-300m \
        --students minilm-l6 outputs/.../student [...] --eval-dir ../shared/data/eval \
        [--corpus corpus.csv] [--max-length 96] [--n-texts 12000] [--json probe.json]

A diagnostic for distillation: a ridge regression from the student's sentence embedding to the
teacher's (unit-normalised, centred on the fitted rows' mean) is fit on most of a corpus sample
and scored on the rest — held-out R² and mean cosine between predicted and true centred teacher
vectors, overall and per corpus source. A student that learnt the teacher's geometry predicts it
better than the undistilled one; a pointwise loss through a student-side head can reach at most
this fit on new texts. The corpus is the bench corpus (``build_corpus(eval_dir, None,
holdout=True)``) unless ``--corpus`` names another; the teacher's embeddings come from its cache
(``build_teacher_cache``: a hit when a run already cached that corpus at that ``max_length``,
otherwise it is built once).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

log = logging.getLogger("teacher_probe")


def linear_fit(
    student: np.ndarray,
    teacher: np.ndarray,
    groups: np.ndarray | None = None,
    n_fit: int | None = None,
    alpha: float = 1.0,
) -> dict:
    """Held-out fit of the centred, unit-normalised teacher embedding from the student's.

    Args:
        student: (N, D_s) student embeddings.
        teacher: (N, D_t) teacher embeddings, same rows (normalised here).
        groups: optional (N,) labels (e.g. corpus sources) for per-group cosines.
        n_fit: rows fit (the first ``n_fit``; the rest are scored); default 5/6 of N.
        alpha: ridge penalty.

    Returns:
        ``{"r2", "cos", "per_group": {label: cos}, "n_fit", "n_scored"}``: held-out R² of the
        centred teacher vectors and the mean cosine between predicted and true centred vectors.

    Raises:
        ValueError: if the row counts differ or fewer than 2 rows are left to score.
    """
    if len(student) != len(teacher) or (groups is not None and len(groups) != len(student)):
        raise ValueError(
            f"student ({len(student)}), teacher ({len(teacher)}) and groups rows differ: "
            "embed the same texts in the same order."
        )
    n_fit = len(student) * 5 // 6 if n_fit is None else n_fit
    if len(student) - n_fit < 2:
        raise ValueError(f"{len(student)} rows and n_fit={n_fit} leave < 2 rows to score.")
    t = teacher / np.maximum(np.linalg.norm(teacher, axis=1, keepdims=True), 1e-12)
    t = t - t[:n_fit].mean(0)
    pred = Ridge(alpha=alpha).fit(student[:n_fit], t[:n_fit]).predict(student[n_fit:])
    true = t[n_fit:]
    r2 = 1.0 - ((true - pred) ** 2).sum() / ((true - true.mean(0)) ** 2).sum()
    cos = (pred * true).sum(1) / np.maximum(
        np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1), 1e-12
    )
    held = groups[n_fit:] if groups is not None else None
    per_group = {} if held is None else {str(g): float(cos[held == g].mean()) for g in set(held)}
    return {
        "r2": float(r2),
        "cos": float(cos.mean()),
        "per_group": dict(sorted(per_group.items())),
        "n_fit": n_fit,
        "n_scored": len(student) - n_fit,
    }


def corpus_frame(args: argparse.Namespace):
    """The corpus (``text, source``) the probe samples from."""
    from samd_common.data.corpus import build_corpus
    from samd_common.data.corpus_sources import read_source

    if args.corpus:
        frame = read_source(args.corpus, None)
        return frame if "source" in frame else frame.assign(source="corpus")
    frame = build_corpus(Path(args.eval_dir), None, holdout=True)[0]
    return frame.assign(text=frame["text"].str.strip())  # as a run reads it back (load_corpus)


def main(argv: list[str] | None = None) -> int:
    """Probe every student against one teacher; print (and optionally write) the fits."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--students", nargs="+", required=True, help="short names or model folders")
    p.add_argument("--eval-dir", help="task CSVs (the bench corpus is built from them)")
    p.add_argument("--corpus", help="another corpus source instead of the bench corpus")
    p.add_argument("--max-length", type=int, default=96)
    p.add_argument("--n-texts", type=int, default=12000, help="seeded sample of the corpus")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not (args.eval_dir or args.corpus):
        p.error("give --eval-dir (the bench corpus is built from it) or --corpus.")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from samd_common.models import load_encoder
    from samd_common.training.teacher_cache import build_teacher_cache

    frame = corpus_frame(args)
    texts = frame["text"].tolist()
    teacher = load_encoder(
        args.teacher, device="cpu", max_length=args.max_length, attn_implementation="eager"
    )
    cache = build_teacher_cache(teacher, texts, max_length=args.max_length, layers=1)
    rows = np.random.default_rng(args.seed).permutation(len(texts))[: args.n_texts]
    target = np.asarray(cache.arrays["pooled"][rows], dtype=np.float32)
    groups = frame["source"].to_numpy()[rows]
    out = {}
    for name in args.students:
        student = load_encoder(name, device="cpu", max_length=args.max_length)
        emb = np.asarray(student.encode([texts[i] for i in rows]), dtype=np.float32)
        fit = out[name] = linear_fit(emb, target, groups)
        log.info(
            "%s: held-out R² %.3f, cosine %.3f, per source %s",
            name,
            fit["r2"],
            fit["cos"],
            {k: round(v, 3) for k, v in fit["per_group"].items()},
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
