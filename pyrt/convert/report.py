"""The conversion report: per tensor, the format chosen, its size and the round-trip error against
the source values; totals before/after. Printed as a table, stored in the file's metadata, and
optionally written as markdown or JSON."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DtypeError, FileIOError
from ..tensor import Tensor
from ..quality import accuracy_lines

CHUNK_ELEMENTS = 1 << 16  # float64 work in cache-sized slices: bounded memory for large tables


def calibration_line(record: dict[str, Any]) -> str:
    """One line on the calibration a conversion used (its ``conversion.calibration`` record)."""
    if record.get("used"):
        gptq = f"; GPTQ: {record['gptq']}" if "gptq" in record else ""
        source = f"sha256 {record['sha256'][:12]}..., " if "sha256" in record else f"seed {record.get('seed')}, "
        return (f"calibration: {record['name']} ({source}{record['passages_run']} passages, "
                f"{record['seconds']:.1f} s){gptq}")
    return f"calibration: none ({record.get('reason', 'not recorded')})"


def roundtrip_error(source: np.ndarray, stored: Tensor) -> tuple[float | None, float | None]:
    """(relative Frobenius error, max abs error) of the stored values against ``source`` (finite),
    in float64. The relative error is None for an all-zero source with a nonzero error."""
    src = np.ascontiguousarray(source, dtype=np.float32).reshape(-1)
    got = stored.dequantize().reshape(-1)
    sq_err = sq_ref = 0.0
    max_abs = 0.0
    # float64 differences of float32 values are exact; einsum avoids BLAS thread start-up per chunk.
    for begin in range(0, src.size, CHUNK_ELEMENTS):
        a = src[begin:begin + CHUNK_ELEMENTS].astype(np.float64)
        diff = got[begin:begin + CHUNK_ELEMENTS] - a
        sq_err += float(np.einsum("i,i->", diff, diff))
        sq_ref += float(np.einsum("i,i->", a, a))
        if diff.size:
            max_abs = max(max_abs, float(diff.max()), -float(diff.min()))
    if not (math.isfinite(sq_err) and math.isfinite(sq_ref)):
        return None, None
    rel = math.sqrt(sq_err / sq_ref) if sq_ref > 0 else (0.0 if sq_err == 0 else None)
    return rel, max_abs


def totals(rows: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> dict[str, Any]:
    weights = sum(r["elements"] for r in rows)
    after = sum(r["bytes"] for r in rows)
    by_format: dict[str, dict[str, int]] = {}
    for r in rows:
        f = by_format.setdefault(r["format"], {"tensors": 0, "elements": 0, "bytes": 0})
        f["tensors"] += 1
        f["elements"] += r["elements"]
        f["bytes"] += r["bytes"]
    return {
        "tensors": len(rows),
        "elements": weights,
        "bytes_before": sum(r["source_bytes"] for r in rows),
        "bytes_after": after,
        "bits_per_weight": 8.0 * after / weights if weights else 0.0,
        "by_format": by_format,
        "skipped": skipped,
    }


def _fmt_err(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2e}"


def _bits(row: dict[str, Any]) -> str:
    """Bits per weight of a row (computed for reports written before rows carried it)."""
    bits = row.get("bits_per_weight")
    if bits is None and row.get("elements"):
        bits = 8.0 * row["bytes"] / row["elements"]
    return "n/a" if bits is None else f"{bits:.2f}"


def _fmt_sens(row: dict[str, Any]) -> str:
    """The planner's measured sensitivity of the tensor's group ("-" outside mixed-precision plans)."""
    value = row.get("sensitivity")
    return "-" if value is None else f"{value:.2e}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def format_table(report: dict[str, Any]) -> str:
    rows = report["tensors"]
    width = max([len(r["name"]) for r in rows] + [6])
    lines = [f"{'tensor':<{width}}  {'shape':<14} {'src':<6} {'format':<8} {'bytes':>11} {'bpw':>6} {'rel err':>9} "
             f"{'max abs':>9} {'sensitiv.':>9}  note"]
    for r in rows:
        fmt = r["format"] + (f"/{r['block']}" if r["block"] > 1 else "")
        shape = "x".join(str(s) for s in r["shape"])
        lines.append(f"{r['name']:<{width}}  {shape:<14} {r['source_dtype']:<6} {fmt:<8} {r['bytes']:>11,} "
                     f"{_bits(r):>6} {_fmt_err(r['rel_error']):>9} {_fmt_err(r['max_abs_error']):>9} "
                     f"{_fmt_sens(r):>9}  {r['note']}")
    t = report["totals"]
    lines.append(f"total: {t['tensors']} tensors, {t['elements']:,} weights, {_mb(t['bytes_before'])} -> "
                 f"{_mb(t['bytes_after'])}, {t['bits_per_weight']:.3f} bits/weight")
    for s in t["skipped"]:
        lines.append(f"skipped: {s['name']} ({s['reason']})")
    return "\n".join(lines)


def to_markdown(report: dict[str, Any]) -> str:
    out = ["| tensor | shape | source | format | block | bytes | bits/weight | rel. Frobenius error | max abs error "
           "| sensitivity | note |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["tensors"]:
        out.append(f"| `{r['name']}` | {'x'.join(map(str, r['shape']))} | {r['source_dtype']} | {r['format']} | "
                   f"{r['block']} | {r['bytes']} | {_bits(r)} | {_fmt_err(r['rel_error'])} | "
                   f"{_fmt_err(r['max_abs_error'])} | {_fmt_sens(r)} | {r['note']} |")
    t = report["totals"]
    out += ["", f"**Totals:** {t['tensors']} tensors, {t['elements']} weights, {t['bytes_before']} bytes before, "
            f"{t['bytes_after']} bytes after, {t['bits_per_weight']:.3f} bits per weight."]
    out += [f"- skipped `{s['name']}`: {s['reason']}" for s in t["skipped"]]
    lines = accuracy_lines(report.get("accuracy"))
    if lines:
        out += [""] + [f"- {line}" for line in lines]
    return "\n".join(out) + "\n"


def write_report(report: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    elif path.suffix.lower() in (".md", ".markdown"):
        text = to_markdown(report)
    else:
        raise DtypeError(f"report file {path} must end in .md or .json")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise FileIOError(f"cannot write report {path}: {exc.strerror or exc}") from exc
