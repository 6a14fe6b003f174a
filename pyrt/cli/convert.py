"""`pyrt convert SRC -o OUT.pyrt --dtype {f32,f16,bf16,q8,q4,q4a,q4n,q5}` (also installed as `pyrt-convert`):
convert a checkpoint (Hugging Face folder, .safetensors, .npz, .bin/.pt with torch, .gguf) into a
.pyrt model file, written atomically; prints what each tensor's format costs in accuracy and size."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import DtypeError, FileIOError, PyrtError, RangeError
from ..formats import BLOCK_SIZES, FORMATS
from ..quality import TARGET_SYNTAX
from .exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CommandError, Terminated, command, parse_and_run
from .options import Parser, at_least, subcommand_parser

EXIT_SOURCE, EXIT_VALUES, EXIT_OUTPUT = 3, 4, 5
EXIT_CODES = ("0 ok, 1 internal error, 2 usage, 3 unreadable source (or missing package), 4 values refused "
              "(NaN/Inf, FP16 overflow) or --target-bpw/--target-quality out of reach, 5 output not writable, "
              "129/143 terminated by SIGHUP/SIGTERM, 130 interrupted")
HELP = "convert a checkpoint into a .pyrt file (alias: pyrt-convert)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="checkpoint file or Hugging Face model folder")
    p.add_argument("-o", "--output", required=True, help="the .pyrt file to write (atomically)")
    p.add_argument("--dtype", default=None, choices=list(FORMATS),
                   help="format of the matmul weights (default q8; a GGUF keeps its types: docs/format.md)")
    p.add_argument("--block", type=int, default=32, choices=BLOCK_SIZES, help="q-format block size along K (default 32)")
    p.add_argument("--rule", action="append", default=[], metavar="REGEX=DTYPE[:BLOCK]",
                   help="format for tensors whose name matches REGEX (first matching rule wins; repeatable)")
    p.add_argument("--report", metavar="FILE", help="also write the report as markdown (.md) or JSON (.json)")
    p.add_argument("--allow-nonfinite", action="store_true", help="keep tensors with NaN/Inf (as f32) instead of refusing")
    p.add_argument("--fp16-overflow", choices=("bf16", "stop"), default="bf16",
                   help="tensors beyond the FP16 range: fall back to bf16 (default) or stop")
    calibration = p.add_mutually_exclusive_group()
    calibration.add_argument("--calibration", metavar="FILE", default="default",
                             help="UTF-8 text whose activations weight the q-format scale search and GPTQ (passages "
                                  "separated by blank lines; default: the text shipped with pyrt; used when pyrt runs "
                                  "the model). 'synthetic': no text, inputs the model makes (a decoder's own sampled "
                                  "text, an encoder's random token sequences; a file of that name: ./synthetic)")
    calibration.add_argument("--no-calibration", dest="calibration", action="store_const", const=None,
                             help="search the q-format scales without activation statistics")
    p.add_argument("--quant-method", choices=("gptq", "search", "rtn"), default="gptq",
                   help="q-formats: GPTQ error compensation on searched scales where calibration runs (default), "
                        "searched scales only, or round to nearest")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-bpw", type=at_least(1.0, float), metavar="B",
                        help="mixed precision: the best measured quality within B bits/weight (whole file)")
    target.add_argument("--target-quality", metavar="Q",
                        help="mixed precision: the smallest file meeting Q on the calibration text: "
                        + TARGET_SYNTAX.replace("%", "%%"))
    p.add_argument("--no-accuracy", action="store_true",
                   help="skip the end-to-end accuracy report (quality against the source weights on evaluation text)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no report table")
    p.set_defaults(func=run)


def register(subparsers: Any) -> None:
    add_arguments(subcommand_parser(subparsers, "convert", __doc__, HELP, EXIT_CODES))


def convert(args: argparse.Namespace) -> int:
    from ..convert.pipeline import convert_checkpoint  # after parsing: --help stays fast

    try:
        convert_checkpoint(args.src, args.output, dtype=args.dtype, block=args.block, rules=args.rule,
                           report=args.report, quiet=args.quiet, allow_nonfinite=args.allow_nonfinite,
                           fp16_overflow=args.fp16_overflow, calibration=args.calibration,
                           quant_method=args.quant_method, target_bpw=args.target_bpw,
                           target_quality=args.target_quality, accuracy=not args.no_accuracy)
    except KeyboardInterrupt:
        raise CommandError("interrupted; nothing was written", EXIT_INTERRUPTED) from None
    except Terminated as exc:  # SIGTERM/SIGHUP: the writer removed its temporary file while unwinding
        raise CommandError(f"terminated by {exc}; nothing was written", exc.code) from None
    except FileIOError as exc:  # the writer marks its own failures; any other is the source's
        raise CommandError(str(exc), EXIT_OUTPUT if getattr(exc, "stage", None) == "output" else EXIT_SOURCE) from exc
    return EXIT_OK


# DtypeError: a bad --rule/--report/dtype/--target-quality; RangeError: NaN/Inf or FP16 overflow refused, or a
# --target-* the candidate formats cannot reach;
# any other pyrt error (or a missing reader package): the source cannot be read.
run = command(convert, failures=((DtypeError, EXIT_USAGE), (RangeError, EXIT_VALUES), (PyrtError, EXIT_SOURCE),
                                 (ImportError, EXIT_SOURCE)), extras=("convert",))


def main(argv: list[str] | None = None) -> int:
    """The `pyrt-convert` entry point: the same parser and exit codes as `pyrt convert`."""
    parser = Parser(prog="pyrt-convert", description=__doc__.split("\n\n")[0],
                    epilog=f"exit codes: {EXIT_CODES} (all codes: docs/cli.md)")
    add_arguments(parser)
    parser.set_defaults(prog="pyrt-convert")
    return parse_and_run(parser, argv, "pyrt-convert")


if __name__ == "__main__":
    sys.exit(main())
