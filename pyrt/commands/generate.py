"""`pyrt generate FILE "prompt"`: stream a language model's answer to stdout."""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("generate", help="generate text with a language model (.pyrt or .gguf)",
                              description="Streams the model's continuation of PROMPT. With --chat (the "
                              "default when the model has a chat template) the prompt is sent as a user "
                              "message through the model's own chat template.")
    p.add_argument("file", help="model file: .pyrt (pyrt-convert) or llama.cpp .gguf")
    p.add_argument("prompt", help="prompt text")
    p.add_argument("-n", "--max-new-tokens", type=int, default=256)
    p.add_argument("-t", "--temperature", type=float, default=0.0, help="0 (default): greedy")
    p.add_argument("--top-k", type=int, default=0, help="0: no top-k filter")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--system", default=None, help="system message (chat mode)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--chat", dest="chat", action="store_true", default=None, help="use the chat template")
    mode.add_argument("--raw", dest="chat", action="store_false", help="plain text completion")
    p.add_argument("--context", type=int, default=2048, help="KV cache size in tokens (default 2048)")
    p.add_argument("--dtype", default="q4a", help="weight format when reading a .gguf (default q4a)")
    p.add_argument("--block", type=int, default=32, help="block size when reading a .gguf (default 32)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: PYRT_NUM_THREADS or all cores)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import pyrt  # noqa: PLC0415 - keeps `pyrt --help` fast

    if args.threads:
        pyrt.set_num_threads(args.threads)
    lm = pyrt.LanguageModel(args.file, context_length=args.context, dtype=args.dtype, block=args.block)
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
    return 0


def main(argv=None) -> int:
    """Standalone entry (until pyrt/cli.py wires the subcommand): python -m pyrt.commands.generate."""
    parser = argparse.ArgumentParser(prog="pyrt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["generate", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
