"""The long fuzz campaign (issue 21): seeded mutants of .pyrt, safetensors and GGUF files, each
loaded, converted-read, built and run in worker subprocesses; counts per outcome, crashes/hangs/
non-PyrtError results saved to tests/data/fuzz_regressions/ (replayed by tests/fuzz/test_fuzz.py).

  nice -n 19 python bench/fuzz_campaign.py --cases 1000000 --workers 2 --minutes 60 --json out.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the checkout's pyrt (dev build) and the fuzz helpers

from fuzz.campaign import run_campaign  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--cases", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=5000, help="cases per worker process")
    p.add_argument("--minutes", type=float, default=None, help="start no new chunk after this long")
    p.add_argument("--nice", type=int, default=19)
    p.add_argument("--json", help="write the summary here")
    args = p.parse_args()
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else None
    result = run_campaign(args.seed, args.cases, workers=args.workers, chunk=args.chunk, nice=args.nice,
                          deadline=deadline)
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    result["date"] = time.strftime("%Y-%m-%d")
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    bad = [k for k in result["counts"] if k not in ("ok", "typed")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
