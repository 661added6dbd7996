"""A user's own evaluation tasks: CSV files and a family are enough, no edit of the package.

Files follow the suite's naming — ``<task>_test.csv`` (required), ``<task>_train.csv`` and
``<task>_dev.csv`` (or ``_validation``/``_valid``/``_val``) in one folder — with the columns of
their family, and are scored by the same protocol and checks as the built-in nine:

* ``sts`` — ``sentence1,sentence2,score``: Spearman of cosine scores against the gold scores
  (finite, not all equal, at least 2 rows; inside ``score_range`` when one is given);
* ``pair`` — ``sentence1,sentence2,label`` with binary labels (1/0, T/F, true/false,
  entails/neutral): AP of cosine scores, plus accuracy/F1 at a threshold fitted on dev (else
  train);
* ``classification`` — ``text,label`` and a train file: logistic regression on the frozen
  embeddings, accuracy and macro-F1.

``"auto"`` reads each test file's header and picks the family its columns name.

Example:
    >>> specs = user_tasks("my_eval", "sts")  # every my_eval/<task>_test.csv, read as STS
    >>> tasks = load_tasks(["stsb", *specs], eval_dir)  # built-in names and specs mix
"""

from __future__ import annotations

import csv
import difflib
import math
import re
from collections.abc import Collection, Mapping
from pathlib import Path

from samd_common.data.checks import DataError
from samd_common.data.tasks import (
    FAMILIES,
    MAIN_SCORES,
    SPLITS,
    TASKS,
    TaskData,
    TaskSpec,
    file_aliases,
    get_task,
    load_tasks,
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_TEST_SUFFIX = "_test.csv"
_FIT_SUFFIXES = file_aliases("", split="train") + file_aliases("", split="dev")
_COLUMNS = {  # family → columns its files must have
    "sts": {"sentence1", "sentence2", "score"},
    "pair": {"sentence1", "sentence2", "label"},
    "classification": {"text", "label"},
}


def _infer_family(path: Path) -> str:
    """The family whose columns ``path``'s header holds (``"auto"``)."""
    with path.open(encoding="utf-8", newline="") as handle:
        header = set(next(csv.reader(handle), []))
    found = [f for f, cols in _COLUMNS.items() if cols <= header]
    if len(found) != 1:
        raise DataError(
            f"{path}: cannot tell the family from the columns {sorted(header)}; name it "
            f"explicitly (one of {list(FAMILIES)}) or use the columns "
            + "; ".join(f"{f}: {','.join(sorted(c))}" for f, c in _COLUMNS.items())
            + "."
        )
    return found[0]


def _family(value: str, name: str, test_file: Path) -> str:
    family = str(value).strip().lower()
    if family == "auto":
        return _infer_family(test_file)
    if family not in FAMILIES:
        close = difflib.get_close_matches(family, FAMILIES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"task {name!r}: unknown family {value!r}.{hint} Use one of {list(FAMILIES)} or 'auto'."
        )
    return family


def _spec(
    name: str,
    family: str,
    test_file: Path,
    score_range: tuple[float, float] | None,
    ood: bool,
) -> TaskSpec:
    if not _NAME.fullmatch(name) or name == "avg":
        raise DataError(
            f"{test_file}: task name {name!r} cannot be used in metric keys like "
            f"'{name}/spearman@256'; rename the file with letters, digits, '_', '-' or '.'."
        )
    family = _family(family, name, test_file)
    files = {split: file_aliases(name, split=split) for split in SPLITS}
    if test_file.name not in files["test"]:  # a single file not named <task>_test.csv
        files = {"train": (), "dev": (), "test": (test_file.name,)}
    rng = score_range if family == "sts" else None
    return TaskSpec(name, family, files, MAIN_SCORES[family], ood, rng, str(test_file.parent))


def _checked_range(score_range: tuple[float, float] | None) -> tuple[float, float] | None:
    if score_range is None:
        return None
    low, high = (float(v) for v in score_range)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(
            f"score_range must be (low, high) with finite low < high, got {score_range!r}."
        )
    return low, high


def _test_files(source: Path, families: str | Mapping[str, str]) -> dict[str, Path]:
    """Task name → test file: the one file given, or the folder's ``<task>_test.csv`` files."""
    if source.is_file():
        if source.name.endswith(_FIT_SUFFIXES):
            raise DataError(
                f"{source}: this is a train/dev file; pass the task's _test.csv file or its folder."
            )
        return {source.name.removesuffix(_TEST_SUFFIX).removesuffix(".csv"): source}
    if not source.is_dir():
        raise DataError(
            f"{source}: no such file or folder. Pass a folder of <task>_test.csv files "
            "(plus optional _train/_dev files) or one CSV file."
        )
    found = {p.name.removesuffix(_TEST_SUFFIX): p for p in sorted(source.glob(f"*{_TEST_SUFFIX}"))}
    wanted = list(families) if isinstance(families, Mapping) else list(found)
    missing = [n for n in wanted if n not in found]
    if missing or not wanted:
        csvs = sorted(p.name for p in source.glob("*.csv"))
        raise DataError(
            f"{source}: no test file for task(s) {missing or '(any)'}; expected "
            f"{(missing or ['<task>'])[0]}{_TEST_SUFFIX}. CSV files there: {csvs[:8]}."
        )
    return {n: found[n] for n in wanted}


def user_tasks(
    source: str | Path,
    families: str | Mapping[str, str],
    score_range: tuple[float, float] | None = None,
    ood: Collection[str] = (),
) -> list[TaskSpec]:
    """Specs of a user's own tasks, ready for ``load_tasks`` / ``evaluate_suite``.

    Args:
        source: a folder of ``<task>_test.csv`` files (plus optional ``<task>_train.csv`` /
            ``<task>_dev.csv``), or one CSV file (``x_test.csv`` picks up its ``x_train.csv`` /
            ``x_dev.csv`` siblings; any other name is a test-only task named after the file).
        families: one family for every test file found (``"sts"``, ``"pair"``,
            ``"classification"`` or ``"auto"``), or task name → family to take only those tasks.
        score_range: inclusive ``(low, high)`` of the gold scores of the STS tasks (checked at
            load time); None checks only that they are finite and not all equal.
        ood: names of tasks to average as out-of-domain (``avg/…/ood``) rather than in-domain.

    Returns:
        One ``TaskSpec`` per task, in name order for a folder (dict order for a mapping).

    Raises:
        DataError: a missing file or folder, an unknown family, a name unusable in metric keys;
        ValueError: a bad ``score_range`` or an ``ood`` name that is not one of the tasks.
    """
    source = Path(source).expanduser()
    rng = _checked_range(score_range)
    tests = _test_files(source, families)
    ood = {ood} if isinstance(ood, str) else set(ood)
    unknown = sorted(set(ood) - set(tests))
    if unknown:
        raise ValueError(f"ood names {unknown} are not among the tasks {sorted(tests)}.")
    if isinstance(families, Mapping) and set(tests) - set(families):
        raise DataError(
            f"{source}: no family given for task {sorted(set(tests) - set(families))[0]!r}; "
            f"families names {list(families)}."
        )
    return [
        _spec(
            name,
            families[name] if isinstance(families, Mapping) else families,
            path,
            rng,
            name in ood,
        )
        for name, path in tests.items()
    ]


def load_user_tasks(
    source: str | Path,
    families: str | Mapping[str, str],
    score_range: tuple[float, float] | None = None,
    ood: Collection[str] = (),
) -> list[TaskData]:
    """``load_tasks(user_tasks(...))``: the user's tasks, loaded and checked like the built-ins."""
    return load_tasks(user_tasks(source, families, score_range, ood), None)


def parse_user_tasks(text: str) -> list[TaskSpec]:
    """``user_tasks`` from one string, the syntax a CLI flag or a notebook parameter takes.

    ``"PATH"`` (family ``auto``), ``"PATH:FAMILY"`` (one family for every test file) or
    ``"PATH:task=family,task=family"`` (only those tasks).

    Example:
        >>> parse_user_tasks("my_eval:sts")  # == user_tasks("my_eval", "sts")
    """
    path, sep, rest = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    if not sep or "/" in rest or not rest.strip():
        return user_tasks(text.strip(), "auto")
    if "=" not in rest:
        return user_tasks(path, rest)
    pairs = [item.partition("=") for item in rest.split(",") if item.strip()]
    bad = [name for name, eq, family in pairs if not eq or not name.strip() or not family.strip()]
    if bad:
        raise DataError(
            f"{text!r}: cannot read the task list {rest!r}; write PATH:task=family,task=family "
            f"(families: {', '.join(FAMILIES)}, auto)."
        )
    return user_tasks(path, {name.strip(): family.strip() for name, _, family in pairs})


def _is_task_name(item: str) -> bool:
    """A built-in task, or a word that is no path (a typo of one: ``get_task`` suggests it)."""
    if item in TASKS:
        return True
    return not any(c in item for c in ":/\\") and not Path(item).expanduser().exists()


def split_task_list(text: str) -> list[str]:
    """A task list given as one string → its items: built-in names and ``PATH[:family]`` specs.

    Items are separated by ``;``. An item whose comma-separated parts all look like task names
    gives one item per name, so ``"stsb,sickr"``, ``"my_eval:sts"`` and
    ``"stsb;my_eval:a=sts,b=pair"`` all read as meant.
    """
    items: list[str] = []
    for chunk in (c.strip() for c in text.split(";")):
        parts = [t.strip() for t in chunk.split(",") if t.strip()]
        if parts and all(_is_task_name(t) for t in parts):
            items += parts
        elif chunk:
            items.append(chunk)
    return items


def resolve_task_list(items: Collection[str | TaskSpec] | None) -> list[str | TaskSpec] | None:
    """Items of a task list → what ``load_tasks`` takes (None stays None: all nine).

    Built-in names are checked (``get_task``), ``PATH[:family]`` items become their specs
    (:func:`parse_user_tasks`), specs pass as they are.

    Raises:
        KeyError: an unknown task name, with the closest one;
        DataError: a user-task item whose folder, files or families are wrong.
    """
    if items is None:
        return None
    out: list[str | TaskSpec] = []
    for item in items:
        if isinstance(item, TaskSpec):
            out.append(item)
        elif _is_task_name(item):
            out.append(get_task(item).name)
        else:
            out += parse_user_tasks(item)
    return out
