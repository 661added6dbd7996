"""Token lengths of a corpus under each model's tokenizer, to choose ``max_length`` from them.

    python scripts/token_lengths.py --corpus outputs/bench/corpus.csv \
        [--models minilm-l6 embeddinggemma-300m] [--lengths 32 48 64 96 128] [--coverage 0.99] \
        [--json outputs/bench/token_lengths.json]

A text's length is counted as the model sees it: its prompt (EmbeddingGemma's
``task: sentence similarity | query: ``, e5's ``query: ``) and special tokens included, since
``max_length`` caps all of them. The script prints one markdown table — per tokenizer the length
percentiles and, per candidate ``max_length``, the share of texts it keeps whole (not
truncated) — and the smallest candidate that keeps at least ``--coverage`` of the texts whole
under every tokenizer (or says that none does).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from samd_common.data.corpus_sources import read_source
from samd_common.models.table import resolve_model

PERCENTILES = (50, 90, 95, 99)


def token_lengths(model: str, texts: list[str], batch: int = 4096) -> np.ndarray:
    """(N,) token count of ``prompt + text`` with special tokens, under ``model``'s tokenizer."""
    spec, path = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    out = []
    for start in range(0, len(texts), batch):
        chunk = [spec.prompt + t for t in texts[start : start + batch]]
        out += [len(ids) for ids in tokenizer(chunk, add_special_tokens=True)["input_ids"]]
    return np.asarray(out, dtype=np.int64)


def coverage(lengths: np.ndarray, max_length: int) -> float:
    """Share of texts whose length fits in ``max_length`` tokens (not truncated)."""
    return float(np.mean(lengths <= max_length))


def summary(lengths: dict[str, np.ndarray], candidates: list[int]) -> dict[str, dict]:
    """Per tokenizer: text count, length percentiles, mean, max and coverage per candidate."""
    return {
        name: {
            "texts": len(n),
            "mean": float(n.mean()),
            "percentiles": {p: float(np.percentile(n, p)) for p in PERCENTILES},
            "max": int(n.max()),
            "coverage": {m: coverage(n, m) for m in candidates},
        }
        for name, n in lengths.items()
    }


def choose_max_length(stats: dict[str, dict], candidates: list[int], target: float) -> int | None:
    """Smallest candidate whose coverage is ≥ ``target`` under every tokenizer (None: none)."""
    for m in sorted(candidates):
        if all(s["coverage"][m] >= target for s in stats.values()):
            return m
    return None


def markdown(stats: dict[str, dict], candidates: list[int]) -> str:
    """The table: one row per tokenizer, percentiles then ``≤ m`` coverage columns (%)."""
    head = ["tokenizer", "texts", "mean", *(f"p{p}" for p in PERCENTILES), "max"]
    head += [f"≤ {m}" for m in candidates]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in stats.items():
        row = [name, f"{s['texts']:,}", f"{s['mean']:.1f}"]
        row += [f"{s['percentiles'][p]:.0f}" for p in PERCENTILES] + [str(s["max"])]
        row += [f"{100 * s['coverage'][m]:.2f} %" for m in candidates]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the chosen ``max_length``; optionally write JSON."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--corpus", required=True, help="corpus source (CSV with a text column, …)")
    p.add_argument("--models", nargs="+", default=["minilm-l6", "embeddinggemma-300m"])
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 48, 64, 96, 128])
    p.add_argument("--coverage", type=float, default=0.99, help="share of texts kept whole")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args(argv)
    texts = read_source(args.corpus)["text"].tolist()
    lengths = {model: token_lengths(model, texts) for model in args.models}
    stats = summary(lengths, args.lengths)
    chosen = choose_max_length(stats, args.lengths, args.coverage)
    print(markdown(stats, args.lengths))
    if chosen is None:
        print(f"\nno candidate keeps {100 * args.coverage:g} % whole under every tokenizer")
    else:
        print(f"\nmax_length {chosen}: the smallest keeping ≥ {100 * args.coverage:g} % whole")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"corpus": args.corpus, "stats": stats, "chosen": chosen}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
