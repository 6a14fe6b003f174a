"""`pyrt info FILE [--verify] [--json]`: what a .pyrt file holds: metadata, tensors, formats, sizes,
bits per weight, the conversion report summary (with the end-to-end accuracy measured at conversion,
when the file has it); --verify checks every CRC-32."""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

from ..errors import ChecksumError
from ..convert.report import calibration_line
from ..quality import accuracy_lines
from .exits import EXIT_OK, command
from .options import at_least, subcommand_parser

EXIT_CHECKSUM = 3
EXIT_CODES = "0 ok, 1 unreadable file (not pyrt, truncated, newer version, OS error), 2 usage, 3 checksum mismatch"
CONFIG_KEYS_SHOWN = 12


def register(subparsers: Any) -> None:
    p = subcommand_parser(subparsers, "info", __doc__, "describe a .pyrt model file", EXIT_CODES)
    p.add_argument("file", help="a .pyrt file")
    p.add_argument("--verify", action="store_true", help="check every tensor's and file's CRC-32")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    p.add_argument("--max-tensors", type=at_least(0), default=50, metavar="N", help="tensors listed in text output (default 50)")
    p.set_defaults(func=run)


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def summarize(model: Any) -> dict[str, Any]:
    by_format: dict[str, dict[str, float]] = defaultdict(lambda: {"tensors": 0, "elements": 0, "bytes": 0})
    tensors = []
    for name, t in model.tensors.items():
        n = 1
        for d in t.shape:
            n *= d
        key = t.dtype + (f"/{t.block}" if t.block > 1 else "")
        by_format[key]["tensors"] += 1
        by_format[key]["elements"] += n
        by_format[key]["bytes"] += t.nbytes
        tensors.append({"name": name, "shape": list(t.shape), "format": t.dtype, "block": t.block,
                        "bytes": t.nbytes, "bits_per_weight": t.bits_per_weight})
    row_of = {r.get("name"): r for r in model.report if isinstance(r, dict)}
    for row in tensors:  # what the conversion measured per tensor (files from older converters: absent)
        measured = row_of.get(row["name"], {})
        row["rel_error"], row["sensitivity"] = measured.get("rel_error"), measured.get("sensitivity")
    elements = sum(f["elements"] for f in by_format.values())
    nbytes = sum(f["bytes"] for f in by_format.values())
    report = model.metadata.get("report", {})
    worst = max((r for r in model.report if isinstance(r.get("rel_error"), (int, float))),
                key=lambda r: r["rel_error"], default=None)
    return {
        "path": str(model.path), "format_version": ".".join(map(str, model.format_version)),
        "file_bytes": model.path.stat().st_size, "architecture": model.metadata.get("architecture"),
        "config": model.config, "provenance": model.metadata.get("provenance", {}),
        "conversion": model.metadata.get("conversion", {}),
        "formats": dict(by_format), "elements": elements, "tensor_bytes": nbytes,
        "bits_per_weight": 8.0 * nbytes / elements if elements else 0.0,
        "report_totals": report.get("totals", {}),
        "accuracy": report.get("accuracy") if isinstance(report.get("accuracy"), dict) else None,
        "worst_tensor": None if worst is None else {"name": worst["name"], "rel_error": worst["rel_error"],
                                                    "max_abs_error": worst.get("max_abs_error")},
        "tensors": tensors, "files": {name: len(data) for name, data in model.files.items()},
    }


def print_text(s: dict[str, Any], max_tensors: int) -> None:
    print(f"{s['path']}: pyrt model file v{s['format_version']}, {_mb(s['file_bytes'])}, "
          f"{len(s['tensors'])} tensors, {len(s['files'])} carried files")
    cfg = s["config"]
    print(f"architecture: {s['architecture']} (model_type {cfg.get('model_type', '?')})")
    scalars = [f"{k}={v}" for k, v in cfg.items() if isinstance(v, (int, float, str, bool))][:CONFIG_KEYS_SHOWN]
    if scalars:
        print("config: " + ", ".join(scalars))
    prov, conv = s["provenance"], s["conversion"]
    if prov:
        print(f"source: {prov.get('source')} ({prov.get('source_kind')}), converted by {prov.get('converter')}")
        for f in prov.get("source_files", []):
            print(f"  {f['name']}: {f['bytes']:,} bytes, sha256 {f['sha256'][:16]}...")
    if conv:
        rules = ", ".join(conv.get("rules", [])) or "none"
        target = "".join(f" --{key.replace('_', '-')} {conv[key]}" for key in ("target_bpw", "target_quality")
                         if conv.get(key) is not None)
        print(f"conversion: --dtype {conv.get('dtype')} --block {conv.get('block')}{target}, rules: {rules}")
        if isinstance(conv.get("calibration"), dict):
            print(calibration_line(conv["calibration"]))
    print("formats:")
    for fmt, f in sorted(s["formats"].items(), key=lambda kv: -kv[1]["bytes"]):
        bpw = 8.0 * f["bytes"] / f["elements"] if f["elements"] else 0.0
        print(f"  {fmt:<8} {f['tensors']:>5} tensors {f['elements']:>14,} weights {_mb(f['bytes']):>12} "
              f"{bpw:7.3f} bits/weight")
    t = s["report_totals"]
    before = f", {_mb(t['bytes_before'])} in the source" if t.get("bytes_before") else ""
    print(f"total: {s['elements']:,} weights, {_mb(s['tensor_bytes'])}{before}, {s['bits_per_weight']:.3f} bits/weight")
    if s["worst_tensor"]:
        w = s["worst_tensor"]
        print(f"report: largest relative error {w['rel_error']:.2e} in {w['name']} (max abs {w['max_abs_error']:.2e})")
    for skipped in t.get("skipped", []):
        print(f"report: skipped {skipped['name']} ({skipped['reason']})")
    for line in accuracy_lines(s["accuracy"]):
        print(line)
    print("tensors:")
    for row in s["tensors"][:max_tensors]:
        fmt = row["format"] + (f"/{row['block']}" if row["block"] > 1 else "")
        measured = "".join(f"  {label} {row[key]:.2e}" for key, label in (("rel_error", "rel err"),
                                                                            ("sensitivity", "sensitivity"))
                           if isinstance(row.get(key), (int, float)))
        print(f"  {row['name']:<50} {'x'.join(map(str, row['shape'])):<14} {fmt:<8} {row['bytes']:>12,} "
              f"{row['bits_per_weight']:6.2f} bpw{measured}")
    if len(s["tensors"]) > max_tensors:
        print(f"  ... {len(s['tensors']) - max_tensors} more (--max-tensors N)")
    if s["files"]:
        print("files:")
        for name, size in s["files"].items():
            print(f"  {name:<50} {size:>12,} bytes")


def info(args: argparse.Namespace) -> int:
    from .. import load

    with load(args.file) as model:
        summary = summarize(model)
        if args.verify:
            model.verify()
            summary["verified"] = True
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_text(summary, args.max_tensors)
        if args.verify:
            print(f"verify: OK, {len(summary['tensors']) + len(summary['files'])} checksums match")
    return EXIT_OK


run = command(info, failures=((ChecksumError, EXIT_CHECKSUM),))
