"""`pyrt embed FILE "text" ...`: sentence embeddings from a converted sentence-transformers model.
Prints JSON ({"model", "dimension", "normalized", "embeddings": [[...], ...]}) to stdout, or writes a
float32 [n, dimension] array with --output x.npy. Without texts, reads one sentence per line from
standard input."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from .exits import EXIT_OK, EXIT_USAGE, CommandError, command
from .options import at_least, subcommand_parser

EXIT_CODES = "0 ok, 1 unreadable model, missing package or failure, 2 usage"


def register(subparsers: Any) -> None:
    p = subcommand_parser(subparsers, "embed", __doc__, "embed sentences with a converted sentence-transformers model",
                          EXIT_CODES)
    p.add_argument("file", help="a .pyrt file converted from a sentence-transformers folder")
    p.add_argument("texts", nargs="*", help="sentences to embed (default: lines of standard input)")
    p.add_argument("--output", "-o", default=None, help="write a .npy file instead of JSON to stdout")
    p.add_argument("--batch-size", type=at_least(1), default=32, help="sentences per batch (default 32)")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--normalize", dest="normalize", action="store_true", default=None,
                      help="L2-normalise (default: as the model's modules.json says)")
    norm.add_argument("--no-normalize", dest="normalize", action="store_false", help="return raw pooled vectors")
    p.set_defaults(func=run)


def embed(args: argparse.Namespace) -> int:
    from ..encoder import SentenceEncoder

    if args.output is not None and not args.output.endswith(".npy"):
        raise CommandError("--output must end in .npy", EXIT_USAGE)
    texts = list(args.texts) if args.texts else [line.rstrip("\n") for line in sys.stdin]
    if not texts:
        raise CommandError("no sentences given (arguments or standard input)", EXIT_USAGE)
    encoder = SentenceEncoder(args.file)
    normalized = encoder.settings.normalize if args.normalize is None else args.normalize
    if args.normalize is None:
        embeddings = encoder.encode(texts, batch_size=args.batch_size)
    else:  # --[no-]normalize: with or without the Normalize module (encode's deprecated `normalize`)
        embeddings = encoder._embed(encoder._check_sentences(texts), args.batch_size, normalized)
    if args.output is not None:
        try:
            np.save(args.output, embeddings)
        except OSError as exc:
            raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
        print(f"{len(texts)} embeddings of dimension {encoder.dimension} -> {args.output}", file=sys.stderr)
        return EXIT_OK
    json.dump({"model": str(args.file), "dimension": encoder.dimension, "normalized": bool(normalized),
               "embeddings": embeddings.tolist()}, sys.stdout)
    sys.stdout.write("\n")
    return EXIT_OK


run = command(embed, extras=("tokenizers",))
