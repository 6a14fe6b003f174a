"""`pyrt embed FILE "text" ...`: sentence embeddings from a converted sentence-transformers model.
Prints JSON ({"model", "dimension", "normalized", "embeddings": [[...], ...]}) to stdout, or writes a
float32 [n, dimension] array with --output x.npy. Without texts, reads one sentence per line from
standard input.

Exit codes: 0 fine, 1 the model cannot be read or run, 2 bad command line."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("embed", help="embed sentences with a converted sentence-transformers model",
                              description=__doc__.split("\n\n")[0],
                              epilog="exit codes: 0 ok, 1 unreadable model or failure, 2 usage")
    p.add_argument("file", help="a .pyrt file converted from a sentence-transformers folder")
    p.add_argument("texts", nargs="*", help="sentences to embed (default: lines of standard input)")
    p.add_argument("--output", "-o", default=None, help="write a .npy file instead of JSON to stdout")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per batch (default 32)")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--normalize", dest="normalize", action="store_true", default=None,
                      help="L2-normalise (default: as the model's modules.json says)")
    norm.add_argument("--no-normalize", dest="normalize", action="store_false", help="return raw pooled vectors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..encoder import SentenceEncoder
    from ..errors import PyrtError

    texts = list(args.texts) if args.texts else [line.rstrip("\n") for line in sys.stdin]
    if not texts:
        print("pyrt embed: no sentences given (arguments or standard input)", file=sys.stderr)
        return EXIT_USAGE
    if args.batch_size < 1:
        print("pyrt embed: --batch-size must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.output is not None and not args.output.endswith(".npy"):
        print("pyrt embed: --output must end in .npy", file=sys.stderr)
        return EXIT_USAGE
    try:
        encoder = SentenceEncoder(args.file)
        embeddings = encoder.encode(texts, batch_size=args.batch_size, normalize=args.normalize)
    except PyrtError as exc:
        print(f"pyrt embed: {args.file}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    normalized = encoder.settings.normalize if args.normalize is None else args.normalize
    if args.output is not None:
        try:
            np.save(args.output, embeddings)
        except OSError as exc:
            print(f"pyrt embed: cannot write {args.output}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{len(texts)} embeddings of dimension {encoder.dimension} -> {args.output}", file=sys.stderr)
        return EXIT_OK
    json.dump({"model": str(args.file), "dimension": encoder.dimension, "normalized": bool(normalized),
               "embeddings": embeddings.tolist()}, sys.stdout)
    sys.stdout.write("\n")
    return EXIT_OK
