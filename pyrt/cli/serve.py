"""`pyrt serve MODEL.pyrt [MODEL2.pyrt ...]`: an OpenAI-compatible HTTP server (docs/serving.md):
/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /health. A request picks its
model by the file stem, or by NAME when given as NAME=PATH. Needs: pip install 'pyrt-infer[server]'."""
from __future__ import annotations

import argparse
from typing import Any

from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, command
from .options import at_least, subcommand_parser

EXIT_CODES = "130 stopped by Ctrl-C (after a clean shutdown), 0 stopped otherwise, 1 unreadable model, missing package or failure, 2 usage (also a port in use)"


def register(subparsers: Any) -> None:
    p = subcommand_parser(subparsers, "serve", __doc__, "serve models over an OpenAI-compatible HTTP API", EXIT_CODES)
    p.add_argument("models", nargs="+", metavar="MODEL", help="a .pyrt (or .gguf) file, or NAME=PATH to serve it as NAME")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=at_least(0), default=8000, help="TCP port (default 8000; 0: any free port)")
    p.add_argument("--threads", type=at_least(1), default=None, help="compute threads (default: PYRT_NUM_THREADS or all cores)")
    p.add_argument("--max-batch", type=at_least(1), default=8, help="sequences a language model decodes together (default 8)")
    p.add_argument("--context", type=at_least(1), default=2048, help="language models' KV cache per sequence, in tokens (default 2048)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def serve(args: argparse.Namespace) -> int:
    import pyrt  # noqa: PLC0415 - keeps `pyrt --help` fast

    try:
        import uvicorn  # noqa: PLC0415
        from ..server import ModelRegistry, create_app  # noqa: PLC0415
        from ..server.batching import set_max_batch  # noqa: PLC0415
    except ImportError as exc:
        raise CommandError(f"pyrt serve needs the server extra ({exc.name} is missing): "
                           "pip install 'pyrt-infer[server]'") from exc
    if args.port > 65535:
        raise CommandError(f"--port must be at most 65535, got {args.port}", EXIT_USAGE)
    if args.threads:
        pyrt.set_num_threads(args.threads)
    try:
        registry = ModelRegistry.from_paths(args.models, context_length=args.context)
    except ValueError as exc:
        if isinstance(exc, pyrt.PyrtError):
            raise
        raise CommandError(str(exc), EXIT_USAGE) from exc
    for served in registry.models.values():
        set_max_batch(served.model, args.max_batch)
    config = uvicorn.Config(create_app(registry, close_models=True), host=args.host, port=args.port,
                            log_level=args.log_level, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        raise CommandError(f"cannot listen on {args.host}:{args.port} (in use, or not an address here)",
                           EXIT_USAGE) from exc
    return EXIT_OK if server.started else EXIT_FAILED


run = command(serve, extras=("llm",))
