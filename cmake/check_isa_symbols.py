"""Fails the build when an object compiled with ISA flags (AVX2, AVX-512) defines a weak symbol
outside its own pyrt::cpu::<isa> namespace.

Why: inline functions and template instances (std::vector<float>::resize, a shared inline helper)
are emitted as weak symbols in every object that uses them, and the linker keeps one copy for the
whole library. If it keeps the copy compiled with -mavx512f, scalar code on an AVX2-only CPU calls it
and dies with SIGILL. Run by CMake after linking; needs `nm` (skipped with a note when absent).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys


def weak_symbols(nm: str, obj: str) -> list[tuple[str, str]]:
    out = subprocess.run([nm, "-C", "--defined-only", obj], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in ("W", "V", "u"):
            rows.append((parts[1], parts[2]))
    return rows


def main(argv: list[str]) -> int:
    nm = argv[0] if argv and argv[0] else shutil.which("nm")
    objects = [a for a in argv[1:] if re.search(r"_(avx2|avx512)\.cc\.o(bj)?$", a)]
    if not nm or not shutil.which(nm):
        print("check_isa_symbols: nm not found, skipped")
        return 0
    bad = []
    for obj in objects:
        isa = re.search(r"_(avx2|avx512)\.cc\.o", obj).group(1)
        for kind, name in weak_symbols(nm, obj):
            # Own namespace, and compiler-generated guards of those, are private to this ISA.
            if f"pyrt::cpu::{isa}::" in name or name.startswith("DW.ref."):  # DW.ref: EH data, not code
                continue
            bad.append(f"{obj.rsplit('/', 1)[-1]}: {kind} {name}")
    if bad:
        print("error: ISA-specific objects define shared weak symbols that the linker may pick for "
              "code running on CPUs without that ISA:\n  " + "\n  ".join(bad[:40]), file=sys.stderr)
        return 1
    print(f"check_isa_symbols: {len(objects)} ISA objects clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
