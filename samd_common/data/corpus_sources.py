"""Where a distillation corpus comes from: a file, a folder of files, or a Hugging Face dataset.

A corpus source is one string, ``SOURCE[#COLUMN]``:

* a file — ``.csv`` (read with pandas exactly as before), ``.jsonl``/``.json``, ``.parquet``, or
  ``.txt`` (one text per line; blank lines are skipped), the last three through HF ``datasets``;
* a folder — every such file in it and its sub-folders (hidden ones skipped), in path order;
* a Hub dataset — ``hf:ID[:CONFIG][@SPLIT]``, or a bare ``ID`` that is not a local path
  (``SPLIT`` defaults to ``train``; needs the network or the ``datasets`` cache).

``#COLUMN`` names the text column (default ``text``; a ``.txt`` file has only its lines). Every
source is read into the same ``text[,source]`` frame, with texts stripped and checked, so the
corpus loader, de-duplication and leakage filter in :mod:`~samd_common.data.corpus` treat all of
them alike. Every problem is a :class:`~samd_common.data.tasks.DataError` naming the file (or
dataset) and, for a missing column, the columns it has.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from samd_common.data.tasks import DataError, read_csv_checked

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text"}
"""File suffix → ``datasets`` builder (``csv`` is read with pandas instead)."""
HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class CorpusSource:
    """One parsed corpus source string (see the module docstring)."""

    kind: str  # "file", "folder" or "hub"
    location: str  # path, or Hub dataset id
    column: str = "text"  # the text column
    config: str | None = None  # Hub dataset configuration
    split: str = "train"  # Hub dataset split

    @property
    def name(self) -> str:
        """How messages name this source."""
        if self.kind != "hub":
            return self.location
        config = f":{self.config}" if self.config else ""
        return f"{HUB_PREFIX}{self.location}{config}@{self.split}"


def parse_source(spec: str | Path, column: str | None = None) -> CorpusSource:
    """Parse ``SOURCE[#COLUMN]``; an explicit ``column`` wins over ``#COLUMN``.

    Raises:
        DataError: for a local-looking path that does not exist.
    """
    text = str(spec)
    if not Path(text).exists() and "#" in text:
        text, column = text.rsplit("#", 1)[0], column or text.rsplit("#", 1)[1]
    column = column or "text"
    path = Path(text)
    if path.is_dir():
        return CorpusSource("folder", text, column)
    if path.is_file():
        return CorpusSource("file", text, column)
    if text.startswith(HUB_PREFIX) or _looks_like_hub_id(text):
        ident, _, split = text.removeprefix(HUB_PREFIX).partition("@")
        ident, _, config = ident.partition(":")
        return CorpusSource("hub", ident, column, config or None, split or "train")
    raise DataError(
        f"{text}: corpus file or folder not found. Give a {'/'.join(FORMATS)} file, a folder of "
        f"them, or a Hub dataset as 'hf:ID[:CONFIG][@SPLIT]#COLUMN'."
    )


def _looks_like_hub_id(text: str) -> bool:
    """``owner/name`` (one slash, no file suffix, not absolute or relative to ``.``)."""
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not text.startswith(".")
        and Path(text).suffix.lower() not in FORMATS
    )


def read_source(spec: str | Path, column: str | None = None) -> pd.DataFrame:
    """The source's texts (stripped, checked) as a ``text`` column, plus ``source`` if known.

    ``source`` is the data's own ``source`` column; for a folder without one, each file's path
    inside the folder.

    Raises:
        DataError: naming the file or dataset: not found, unreadable, a missing column (with the
            columns found), an empty or non-string text, or no texts at all.
    """
    src = parse_source(spec, column)
    if src.kind == "folder":
        return _read_folder(Path(src.location), src.column)
    if src.kind == "file":
        return _read_file(Path(src.location), src.column)
    return _frame(_load_hub(src), src.column, src.name)


def _read_folder(folder: Path, column: str) -> pd.DataFrame:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in FORMATS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise DataError(
            f"{folder}: no corpus files ({', '.join(FORMATS)}) in this folder; found {found}."
        )
    frames = []
    for path in files:
        frame = _read_file(path, column)
        if "source" not in frame.columns:
            frame["source"] = str(path.relative_to(folder))
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    log.info("corpus %s: %d texts from %d files", folder, len(out), len(files))
    return out


def _read_file(path: Path, column: str) -> pd.DataFrame:
    """One file of any supported format, as a checked ``text[,source]`` frame."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: unsupported corpus file type {path.suffix!r}; use one of {list(FORMATS)}."
        )
    if fmt == "csv":  # pandas, exactly as the corpus loader always read CSVs
        raw = read_csv_checked(path, (column,))
        texts = raw[column].str.strip()
        if (texts == "").any():
            row = int((texts == "").to_numpy().nonzero()[0][0]) + 2
            raise DataError(f"{path}: column {column!r} is empty at line {row}. Drop empty rows.")
        _require_rows(len(texts), str(path), list(raw.columns))
        return _text_frame(texts.tolist(), raw["source"] if "source" in raw.columns else None)
    if fmt == "text":
        lines = [t.strip() for t in _load_local(path, "text")["text"] if t.strip()]
        _require_rows(len(lines), str(path), None)
        return _text_frame(lines, None)
    return _frame(_load_local(path, fmt), column, str(path))


def _require_rows(n: int, name: str, columns: list[str] | None) -> None:
    """An empty corpus file is an error (``columns``: None for a text file, which has none)."""
    if n == 0:
        what = "no non-blank line" if columns is None else f"0 rows; columns found: {columns}"
        raise DataError(f"{name}: the corpus has no texts ({what}).")


def _text_frame(texts: list[str], sources: Any) -> pd.DataFrame:
    frame = pd.DataFrame({"text": texts}, dtype=object)
    if sources is not None:
        frame["source"] = [str(s) for s in sources]
    return frame


def _frame(data: Any, column: str, name: str) -> pd.DataFrame:
    """Check ``data[column]`` (a ``datasets.Dataset``) and build the ``text[,source]`` frame."""
    found = list(data.column_names)
    _require_rows(len(data), name, found)
    if column not in found:
        raise DataError(
            f"{name}: missing column {column!r}; found {found}. Rename it to {column!r} or "
            f"pick a column with '{name}#<column>'."
        )
    texts = []
    for i, value in enumerate(data[column], start=1):
        if not isinstance(value, str):
            got = "null" if value is None else f"{type(value).__name__} {value!r:.40}"
            raise DataError(f"{name}: column {column!r} at row {i} is not a text but {got}.")
        if not value.strip():
            raise DataError(f"{name}: column {column!r} is empty at row {i}. Drop empty rows.")
        texts.append(value.strip())
    return _text_frame(texts, data["source"] if "source" in found else None)


def _load_local(path: Path, builder: str) -> Any:
    """``datasets.load_dataset`` on one local file, held in memory (no copy left in a cache).

    Errors (pyarrow, JSON, decoding) become a DataError on the file; an empty file has no rows.
    """
    import datasets

    if path.stat().st_size == 0:
        return datasets.Dataset.from_dict({})
    if builder == "parquet":  # datasets fails on a parquet file without rows: answer it here
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        if meta.num_rows == 0:
            return datasets.Dataset.from_dict({c: [] for c in meta.schema.names})
    try:
        with tempfile.TemporaryDirectory(prefix="samd-corpus-") as cache:
            return datasets.load_dataset(
                builder, data_files=[str(path)], split="train", cache_dir=cache, keep_in_memory=True
            )
    except Exception as err:  # whatever the reader raises, report it (its root cause) on the file
        raise DataError(f"{path}: cannot be read as {builder} ({_root_cause(err)}).") from err


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}"


def _load_hub(src: CorpusSource) -> Any:
    """A Hub dataset split (needs the network, or the ``datasets`` cache when offline)."""
    import datasets

    try:
        return datasets.load_dataset(src.location, src.config, split=src.split)
    except Exception as err:  # offline, unknown id, unknown config/split: say which
        raise DataError(
            f"{src.name}: not a local file or folder, and loading it as a Hugging Face dataset "
            f"failed ({_root_cause(err)}). Check the path, or the id, config and split "
            f"(online, or with the dataset in the datasets cache)."
        ) from err
