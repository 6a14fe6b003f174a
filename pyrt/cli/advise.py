"""`pyrt advise MODEL [--text FILE] [--plot out.png] [--formats f16,q8,...]`: which precision to use
for this model: converts the source checkpoint to each candidate format and to mixed-precision plans,
measures quality against the source weights, file size, load time and speed on this machine, and
prints one table and a recommendation (the smallest file meeting the quality bar)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import DtypeError, FileIOError, UnsupportedError
from ..quality import TARGET_SYNTAX
from .exits import EXIT_OK, EXIT_USAGE, CommandError, command
from .options import subcommand_parser

EXIT_UNSUPPORTED, EXIT_OUTPUT = 3, 5
EXIT_CODES = ("0 ok, 1 unreadable source or missing package (matplotlib for --plot), 2 usage (bad --formats, "
              "--bar or --budgets), 3 architecture pyrt cannot run, 5 plot or JSON not writable, 130 interrupted")


def register(subparsers: Any) -> None:
    p = subcommand_parser(subparsers, "advise", __doc__, "which precision should I use? measure the candidates",
                          EXIT_CODES)
    p.add_argument("model", help="source checkpoint: Hugging Face folder (sentence-transformers BERT) or Llama .gguf")
    p.add_argument("--text", metavar="FILE", help="evaluation text: one sentence per line for encoders, running "
                   "text for decoders (default: pyrt's own evaluation texts)")
    p.add_argument("--formats", metavar="F,F,...", help="uniform formats to try (default: f16,q8,q4a,q4 and the "
                   "other 4-bit formats pyrt has)")
    p.add_argument("--budgets", metavar="B,B,...", default="5,6",
                   help="bits/weight budgets of the mixed-precision plans (default 5,6; 'none': no plan)")
    syntax = TARGET_SYNTAX.replace("%", "%%")  # argparse %-formats help texts
    p.add_argument("--bar", metavar="Q", help=f"quality bar of the recommendation ({syntax}); "
                   "default cos=0.99 for encoders, ppl=2%% for decoders")
    p.add_argument("--plot", metavar="PNG", help="write quality against bits/weight as a PNG (needs matplotlib)")
    p.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def _list(text: str | None, convert: Any, what: str) -> list[Any] | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    try:
        return [convert(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DtypeError(f"{what}: cannot parse {text!r}") from None


def _texts(path: str | None, kind: str) -> list[str] | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileIOError(f"cannot read --text {path}: {exc}") from exc
    texts = [line.strip() for line in text.splitlines() if line.strip()] if kind == "encoder" else [text]
    if not texts or not texts[0].strip():
        raise DtypeError(f"--text {path} is empty")
    return texts


def _write_output(path: str, write: Any) -> None:
    try:
        write(path)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}", EXIT_OUTPUT) from exc


def advise(args: argparse.Namespace) -> int:
    from .. import advisor
    from ..convert.readers import open_source
    from ..convert.source_model import model_kind

    formats = advisor.check_formats(_list(args.formats, str, "--formats"))
    budgets = _list(args.budgets, float, "--budgets")
    if budgets and any(b <= 0 for b in budgets):
        raise DtypeError(f"--budgets must be positive bits/weight, got {args.budgets}")
    with open_source(args.model) as source:
        kind = model_kind(source)
    if kind is None:
        raise UnsupportedError(f"{args.model}: pyrt advises on BERT sentence encoders (Hugging Face folders) and "
                               "Llama GGUF decoders")
    bar = advisor.parse_bar(args.bar, kind)
    if args.plot:
        import matplotlib  # noqa: F401,PLC0415 - before minutes of measuring: missing -> exit 1 with the pip hint
    progress = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    adv = advisor.Advisor(args.model, texts=_texts(args.text, kind), progress=progress)
    trials = adv.run(formats, budgets if budgets is not None else advisor.DEFAULT_BUDGETS)
    print(advisor.format_table(trials, kind))
    best = advisor.recommend(trials, bar)
    if best is None:
        print(f"recommendation: no candidate meets {bar.text}; use the one with the best quality above (or f16)")
    else:
        print(f"recommendation: {best.label} ({best.bits_per_weight:.2f} bits/weight, {best.file_bytes / 1e6:.2f} MB): "
              f"the smallest file meeting {bar.text} on the evaluation text")
    if args.plot:
        _write_output(args.plot, lambda p: advisor.plot(trials, kind, p, f"pyrt advise: {Path(args.model).name}"))
        print(f"wrote {args.plot}")
    if args.json:
        data = {"model": str(args.model), "kind": kind, "bar": bar.text,
                "recommendation": None if best is None else best.label,
                "trials": [vars(t) for t in trials]}
        _write_output(args.json, lambda p: Path(p).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))
    return EXIT_OK


run = command(advise, failures=((DtypeError, EXIT_USAGE), (UnsupportedError, EXIT_UNSUPPORTED)),
              extras=("convert", "plot"))
