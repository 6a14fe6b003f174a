"""`pyrt generate FILE "prompt"`: stream a language model's answer to stdout. With --chat (the default
when the model has a chat template) the prompt is sent as a user message through the model's own
chat template."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import FileFormatError, RangeError, UnsupportedError
from ..formats import BLOCK_SIZES, FORMATS
from .exits import EXIT_OK, EXIT_USAGE, CommandError, command, missing_module
from .options import at_least, fraction, subcommand_parser

EXIT_CODES = ("0 ok, 1 unreadable model, not a language model, missing package or failure, "
              "2 usage (also a prompt longer than --context, or --context beyond the model's)")


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subcommand_parser(subparsers, "generate", __doc__, "generate text with a language model (.pyrt or .gguf)",
                          EXIT_CODES)
    p.add_argument("file", help="model file: .pyrt (pyrt convert) or llama.cpp .gguf")
    p.add_argument("prompt", help="prompt text")
    p.add_argument("-n", "--max-new-tokens", type=at_least(0), default=256)
    p.add_argument("-t", "--temperature", type=at_least(0.0, float), default=0.0, help="0 (default): greedy")
    p.add_argument("--top-k", type=at_least(0), default=0, help="0: no top-k filter")
    p.add_argument("--top-p", type=fraction, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--system", default=None, help="system message (chat mode)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--chat", dest="chat", action="store_true", default=None, help="use the chat template")
    mode.add_argument("--raw", dest="chat", action="store_false", help="plain text completion")
    p.add_argument("--context", type=at_least(1), default=2048, help="KV cache size in tokens (default 2048)")
    p.add_argument("--dtype", default=None, choices=FORMATS,
                   help="requantize a .gguf's matrices to this format (default: keep the GGUF's types, in place)")
    p.add_argument("--block", type=int, default=32, choices=BLOCK_SIZES, help="block size when reading a .gguf (default 32)")
    p.add_argument("--threads", type=at_least(1), default=None, help="threads (default: PYRT_NUM_THREADS or all cores)")
    p.set_defaults(func=run)
    return p


def load_language_model(args: argparse.Namespace) -> Any:
    """The model, or a one-line error that tells a file of the wrong kind from an unreadable one."""
    import pyrt  # noqa: PLC0415

    architecture = "GGUF"
    if Path(args.file).suffix != ".gguf":
        with pyrt.load(args.file) as model:  # missing, truncated, corrupt: its own error first
            architecture = model.metadata.get("architecture") or "unknown"
    try:
        return pyrt.LanguageModel(args.file, context_length=args.context, dtype=args.dtype, block=args.block)
    except (FileFormatError, UnsupportedError) as exc:
        if missing_module(exc):
            raise
        raise CommandError(f"{args.file} is not a language model pyrt can run (architecture {architecture}): "
                           f"{exc}") from exc


def generate(args: argparse.Namespace) -> int:
    import pyrt  # noqa: PLC0415 - keeps `pyrt --help` fast

    if args.threads:
        pyrt.set_num_threads(args.threads)
    lm = load_language_model(args)
    chat = bool(lm.chat_template) if args.chat is None else args.chat
    prompt = args.prompt
    if chat:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        prompt = messages + [{"role": "user", "content": args.prompt}]
    for piece in lm.stream(prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=args.stop):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return EXIT_OK


# RangeError here is the command line asking for the impossible: a prompt longer than --context, or a
# --context beyond what the model was trained for (the other values are checked while parsing).
run = command(generate, failures=((RangeError, EXIT_USAGE),), extras=("llm",))
