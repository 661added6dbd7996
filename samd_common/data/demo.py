"""Tiny synthetic data in the suite's canonical layout (for demos, smoke runs and tests).

Every task of ``data.tasks.TASKS`` gets small train/dev/test CSVs with a learnable signal
(label keywords for classification, paraphrase vs unrelated pairs, graded overlap for STS), plus
an unlabelled ``train_corpus.csv`` (``text,source``). Existing files are never overwritten.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pandas as pd

from samd_common.data.tasks import TASKS

log = logging.getLogger(__name__)

TOPICS = {
    "card": ["card", "pin", "atm", "contactless"],
    "transfer": ["transfer", "payment", "iban", "wire"],
    "refund": ["refund", "return", "money back", "chargeback"],
    "joy": ["happy", "delighted", "great", "wonderful"],
    "anger": ["angry", "furious", "annoyed", "outraged"],
    "sadness": ["sad", "lonely", "gloomy", "miserable"],
}
LABEL_SETS = {
    "banking77": ["card", "transfer", "refund"],
    "tweet": ["joy", "anger", "sadness"],
    "emotion": ["joy", "anger", "sadness"],
}
SIZES = {"train": 60, "dev": 20, "test": 30}


def _classification(task: str, n: int, rng: random.Random) -> pd.DataFrame:
    rows = []
    for i in range(n):
        label = LABEL_SETS[task][i % len(LABEL_SETS[task])]
        base = synthetic_sentences(1, rng.randrange(10**9))[0]
        rows.append(
            {
                "text": f"{base} I feel {rng.choice(TOPICS[label])} about my "
                f"{rng.choice(TOPICS[label])}.",
                "label": label,
            }
        )
    return pd.DataFrame(rows)


def _pairs(n: int, rng: random.Random, positive: str = "1", negative: str = "0") -> pd.DataFrame:
    sents = synthetic_sentences(2 * n, rng.randrange(10**9))
    rows = []
    for i in range(n):
        a = sents[2 * i]
        if i % 2 == 0:
            rows.append(
                {"sentence1": a, "sentence2": a.replace(".", "") + " indeed", "label": positive}
            )
        else:
            rows.append({"sentence1": a, "sentence2": sents[2 * i + 1], "label": negative})
    return pd.DataFrame(rows)


def _sts(n: int, rng: random.Random) -> pd.DataFrame:
    sents = synthetic_sentences(2 * n, rng.randrange(10**9))
    rows = []
    for i in range(n):
        a, b = sents[2 * i].rstrip("."), sents[2 * i + 1].rstrip(".")
        wa, wb = a.split(), b.split()
        keep = i % 6  # 0..5 words copied from a into b → graded similarity
        mixed = " ".join(wa[:keep] + wb[keep:]) if keep else b
        rows.append({"sentence1": a, "sentence2": mixed, "score": round(5.0 * keep / 5, 2)})
    return pd.DataFrame(rows)


def demo_frames(seed: int = 0) -> dict[str, pd.DataFrame]:
    """File name → frame for every task split, plus ``train_corpus.csv``."""
    rng = random.Random(seed)
    frames: dict[str, pd.DataFrame] = {}
    for task in TASKS.values():
        stem = task.files["test"][0].removesuffix("_test.csv")
        for split, n in SIZES.items():
            if task.family == "classification":
                frame = _classification(task.name, n, rng)
            elif task.family == "pair":
                pos, neg = ("T", "F") if task.name == "wic" else ("1", "0")
                frame = _pairs(n, rng, pos, neg)
            else:
                frame = _sts(n, rng)
            frames[f"{stem}_{split}.csv"] = frame
    corpus = synthetic_sentences(300, seed + 1)
    frames["train_corpus.csv"] = pd.DataFrame({"text": corpus, "source": "DEMO"})
    return frames


def write_demo_data(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Write the demo CSVs into ``out_dir``; refuse if any target file already exists.

    Raises:
        FileExistsError: naming the first existing file (nothing is written in that case).
    """
    out_dir = Path(out_dir)
    frames = demo_frames(seed)
    clash = [out_dir / name for name in frames if (out_dir / name).exists()]
    if clash:
        raise FileExistsError(
            f"{clash[0]} exists ({len(clash)} file(s) would be overwritten); refusing to touch "
            f"existing data. Choose another --out folder or delete the demo folder first."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in frames.items():
        frame.to_csv(out_dir / name, index=False)
        paths.append(out_dir / name)
    log.info("wrote %d demo files to %s", len(paths), out_dir)
    return paths


def synthetic_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` short English-like sentences (with digits, accents, emoji, CJK), seeded."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(EXTRAS)}"
        out.append(s[0].upper() + s[1:] + ("." if rng.random() < 0.7 else ""))
    return out


SUBJECTS = [
    "a man",
    "the woman",
    "a child",
    "my friend",
    "the dog",
    "a cat",
    "our team",
    "the teacher",
    "a bank",
    "the customer",
    "an old lady",
    "two kids",
]


VERBS = [
    "is playing",
    "was reading",
    "likes",
    "hates",
    "is cooking",
    "opened",
    "lost",
    "is watching",
    "paid for",
    "forgot",
    "is riding",
    "found",
]


OBJECTS = [
    "a guitar",
    "the newspaper",
    "some pasta",
    "a new card",
    "the football match",
    "a bicycle",
    "the transfer",
    "an umbrella",
    "the movie",
    "a horse",
    "my wallet",
    "the piano",
]


EXTRAS = [
    "",
    " today",
    " in the park",
    " again!",
    " at 10:30",
    " — really?",
    " 😊",
    " near the café",
    " with 2 friends",
    " 東京で",
    " quickly",
    " on Mon­day",
]
