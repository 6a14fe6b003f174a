"""pyrt-convert SRC -o OUT.pyrt --dtype {f32,f16,bf16,q8,q4,q4a} [--block N] [--rule 'REGEX=DTYPE' ...]
[--report FILE.md|FILE.json] [--quiet] [--allow-nonfinite] [--fp16-overflow {bf16,stop}]

Exit codes (docs/format.md):
  0  converted
  1  internal error (a bug: please report it with the traceback)
  2  bad command line (unknown option, bad --dtype/--block/--rule/--report)
  3  the source cannot be read or is not supported (missing, corrupt, needs torch/gguf)
  4  the source's values were refused (NaN/Inf without --allow-nonfinite; FP16 overflow with
     --fp16-overflow stop)
  5  the output cannot be written
  130 interrupted (Ctrl-C); nothing was written
"""
from __future__ import annotations

import argparse
import sys
import traceback

from ..errors import DtypeError, FileIOError, PyrtError, RangeError
from ..formats import BLOCK_SIZES, FORMATS

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_SOURCE, EXIT_VALUES, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyrt-convert", description="Convert a checkpoint (Hugging Face folder, .safetensors, .npz, "
        ".bin/.pt with torch, .gguf) into a .pyrt model file.",
        epilog="exit codes: 0 ok, 1 internal error, 2 usage, 3 unreadable source, 4 values refused "
        "(NaN/Inf, FP16 overflow), 5 output not writable, 130 interrupted")
    p.add_argument("src", help="checkpoint file or Hugging Face model folder")
    p.add_argument("-o", "--output", required=True, help="the .pyrt file to write (atomically)")
    p.add_argument("--dtype", default="q8", choices=list(FORMATS), help="format of the matmul weights (default q8)")
    p.add_argument("--block", type=int, default=32, choices=BLOCK_SIZES, help="q-format block size along K (default 32)")
    p.add_argument("--rule", action="append", default=[], metavar="REGEX=DTYPE[:BLOCK]",
                   help="format for tensors whose name matches REGEX (first matching rule wins; repeatable)")
    p.add_argument("--report", metavar="FILE", help="also write the report as markdown (.md) or JSON (.json)")
    p.add_argument("--allow-nonfinite", action="store_true", help="keep tensors with NaN/Inf (as f32) instead of refusing")
    p.add_argument("--fp16-overflow", choices=("bf16", "stop"), default="bf16",
                   help="tensors beyond the FP16 range: fall back to bf16 (default) or stop")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no report table")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .pipeline import convert_checkpoint  # after parsing: --help stays fast

    try:
        convert_checkpoint(args.src, args.output, dtype=args.dtype, block=args.block, rules=args.rule,
                           report=args.report, quiet=args.quiet, allow_nonfinite=args.allow_nonfinite,
                           fp16_overflow=args.fp16_overflow)
    except KeyboardInterrupt:
        print("pyrt-convert: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DtypeError as exc:  # bad --rule / --report / dtype combination
        print(f"pyrt-convert: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RangeError as exc:
        print(f"pyrt-convert: refused: {exc}", file=sys.stderr)
        return EXIT_VALUES
    except FileIOError as exc:
        print(f"pyrt-convert: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT if getattr(exc, "stage", None) == "output" else EXIT_SOURCE
    except PyrtError as exc:
        print(f"pyrt-convert: cannot convert: {exc}", file=sys.stderr)
        return EXIT_SOURCE
    except Exception:  # noqa: BLE001 - report a bug instead of a bare traceback exit
        traceback.print_exc()
        print("pyrt-convert: internal error (please report it)", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
