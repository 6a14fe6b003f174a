"""convert_checkpoint: source checkpoint -> .pyrt file, one tensor at a time (bounded memory).

Values are checked before anything is written: NaN/Inf are refused (unless allowed) with every
offending tensor named, and values beyond FP16 never become inf. Quantization runs in the C++ core
through pyrt.quantize; pyrt/formats.py keeps the numpy reference it is tested against."""
from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import __version__
from ..errors import DtypeError, FileFormatError, FileIOError, PyrtError, RangeError
from ..formats import FP16_MAX, effective_block
from ..quantize_gptq import DEFAULT_DAMP, GPTQ_FORMATS, GptqFactor, quantize_gptq
from ..tensor import Tensor, quantize
from ..calibration import read_calibration_text, split_calibration_text
from .calibrate import (DEFAULT as DEFAULT_CALIBRATION, SYNTHETIC as SYNTHETIC_CALIBRATION, CalibrationChoice,
                        GptqFactors, calibration_importance)
from ..quality import accuracy_lines
from .accuracy_report import QualityPass
from .readers import Source, SourceTensor, open_source
from .report import calibration_line, format_table, roundtrip_error, totals, write_report
from .rules import Q_FORMATS, Choice, Rule, choose, parse_rule
from .writer import VERSION, ModelWriter

CONVERTER = f"pyrt-convert {__version__}"
OVERFLOW_POLICIES = ("bf16", "stop")
# q-format quantization: GPTQ on searched scales where calibration gives the inputs' second moments
# (the rest searched), searched scales only, or round to nearest (docs/quantization.md).
QUANT_METHODS = ("gptq", "search", "rtn")
DEFAULT_QUANT_METHOD = "gptq"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _provenance(source: Source) -> dict[str, Any]:
    files = []
    for path in source.source_files:
        rel = path.relative_to(source.path).as_posix() if source.path.is_dir() else path.name
        files.append({"name": rel, "bytes": path.stat().st_size, "sha256": _sha256(path)})
    return {"source": source.path.name, "source_kind": source.kind, "source_files": files,
            "converter": CONVERTER, "format_version": f"{VERSION[0]}.{VERSION[1]}"}


def _progress(items: list[SourceTensor], quiet: bool) -> Iterable[SourceTensor]:
    if quiet:
        return items
    try:
        from tqdm import tqdm  # type: ignore[import-not-found]
    except ImportError:
        return items
    return tqdm(items, desc="converting", unit="tensor", file=sys.stderr, leave=False)


def _overflow(name: str, what: str, policy: str, fallback: str) -> str:
    if policy == "stop":
        raise RangeError(f"tensor {name!r}: {what}; rerun with --fp16-overflow bf16, or give it bf16/f32 "
                         f"with --rule '{re.escape(name)}=bf16'")
    return f"{what}: {fallback}"


def store_tensor(name: str, x: np.ndarray, choice: Choice, fp16_overflow: str, importance: np.ndarray | None = None,
                 method: str = "search", second_moment: np.ndarray | GptqFactor | None = None,
                 ) -> tuple[Tensor, str, str]:
    """(stored tensor, format actually used, note). Falls back instead of ever writing inf.
    ``importance``/``method``: the q-formats' scale search (pyrt.quantize); with ``second_moment``
    (its input's from calibration, or that moment's GptqFactor) a 2-D weight in a GPTQ format is
    quantized by GPTQ."""
    dtype, block, notes = choice.dtype, choice.block, [choice.reason]
    if dtype == "f16" and x.size:
        amax = float(np.abs(x).max())
        if amax > FP16_MAX:
            notes.append(_overflow(name, f"max |x| = {amax:g} exceeds FP16 (65504)", fp16_overflow, "bf16"))
            dtype, block = "bf16", 1
    while True:
        try:
            if second_moment is not None and dtype in GPTQ_FORMATS and x.ndim == 2:
                try:
                    return (quantize_gptq(x, dtype, block, second_moment, importance=importance), dtype,
                            "; ".join(notes + ["GPTQ"]))
                except RangeError as exc:  # then as without GPTQ: searched, or the FP16 fallbacks below
                    notes.append(f"GPTQ failed ({exc}): searched scales")
                    second_moment = None
            searched = quantize(x, dtype, block, importance, "rtn" if method == "rtn" else "search")
            return searched, dtype, "; ".join(notes)
        except RangeError as exc:
            if dtype in Q_FORMATS:  # a block's FP16 scale or minimum overflows
                notes.append(_overflow(name, f"{dtype} block scale exceeds FP16 ({exc})", fp16_overflow, "bf16"))
                dtype, block = "bf16", 1
            elif dtype == "bf16":  # only values next to the float32 maximum round to inf
                notes.append("overflows bf16: f32")
                dtype, block = "f32", 1
            else:
                raise RangeError(f"tensor {name!r}: {exc}") from exc


def _load_values(st: SourceTensor, loaded: dict[str, np.ndarray]) -> np.ndarray:
    """The tensor's values as float32 (taken from ``loaded`` when calibration read them already); a
    reader library's own exception becomes a pyrt error."""
    try:
        values = loaded.pop(st.name) if st.name in loaded else st.load()
    except PyrtError:
        raise
    except (ValueError, TypeError, OSError, KeyError, IndexError, EOFError) as exc:
        raise FileFormatError(f"cannot read tensor {st.name!r} ({st.source_dtype}): {exc}") from exc
    if tuple(values.shape) != tuple(st.shape):
        raise FileFormatError(f"tensor {st.name!r}: the source says shape {st.shape}, its data has {values.shape}")
    return np.ascontiguousarray(values, dtype=np.float32)


def _as_output_error(exc: FileIOError) -> FileIOError:
    exc.stage = "output"  # type: ignore[attr-defined]  # read by the CLI to pick the exit code
    return exc


def _refuse_overwriting_source(source: Source, out: Path) -> None:
    if out.exists() and any(os.path.samefile(out, f) for f in source.source_files if f.exists()):
        raise _as_output_error(FileIOError(f"refusing to write {out}: it is one of the source files"))


def _keeps_gguf_type(st: SourceTensor, keep_gguf: bool, rules: tuple[Rule, ...]) -> bool:
    return keep_gguf and st.native is not None and not any(r.pattern.search(st.name) for r in rules)


def _convert_tensor(st: SourceTensor, x: np.ndarray, finite: bool, dtype: str, block: int, rules: tuple[Rule, ...],
                    fp16_overflow: str, importance: np.ndarray | None = None,
                    method: str = "search", keep_gguf: bool = False,
                    second_moment: np.ndarray | GptqFactor | None = None) -> tuple[Tensor, dict[str, Any]]:
    """One tensor: its stored form and its report row. ``keep_gguf``: a GGUF tensor no rule names
    takes pyrt.gguf_weights' mapping (its own bytes where pyrt has them)."""
    if finite and _keeps_gguf_type(st, keep_gguf, rules):
        stored, how = st.native(x, "rtn" if method == "rtn" else "search")
        used, note = stored.dtype, f"GGUF {st.source_dtype}: {how}"
        rel, max_abs = roundtrip_error(x, stored)
    elif finite:
        stored, used, note = store_tensor(st.name, x, choose(st.name, st.shape, dtype, block, rules), fp16_overflow,
                                          importance if x.ndim == 2 else None, method, second_moment)
        rel, max_abs = roundtrip_error(x, stored)
    else:  # allowed non-finite values: kept bit for bit, as f32 can hold NaN/Inf
        stored = Tensor(x.reshape(-1).view(np.uint8), "f32", x.shape, 1)
        used, note, rel, max_abs = "f32", "non-finite values kept as f32 (--allow-nonfinite)", None, None
    row = {"name": st.name, "shape": list(st.shape), "source_dtype": st.source_dtype, "source_bytes": st.source_bytes,
           "format": used, "block": stored.block, "bytes": stored.nbytes,
           "elements": int(np.prod(st.shape)) if st.shape else 1, "rel_error": rel, "max_abs_error": max_abs,
           "note": note}
    row["bits_per_weight"] = 8.0 * stored.nbytes / row["elements"] if row["elements"] else 0.0
    return stored, row


def _calibration(source: Source, dtype: str, block: int, rules: tuple[Rule, ...], calibration: CalibrationChoice,
                 method: str, loaded: dict[str, np.ndarray], keep_gguf: bool, planned: bool,
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """Importance for the q-format tensors from a calibration run, its record (or why none), and
    the inputs' second moments of the 2-D weights GPTQ may quantize (method "gptq")."""
    if method == "rtn":
        return {}, {"used": False, "reason": "round to nearest (--quant-method rtn) takes no calibration"}, {}
    if not any(choose(st.name, st.shape, dtype, block, rules).dtype in Q_FORMATS for st in source.tensors if st.is_float):
        return {}, {"used": False, "reason": "no q-format tensors"}, {}
    # A plan may give any 2-D tensor a GPTQ format: collect them all (the plan is not known yet).
    gptq = {st.name for st in source.tensors
            if method == "gptq" and st.is_float and len(st.shape) == 2
            and (planned or choose(st.name, st.shape, dtype, block, rules).dtype in GPTQ_FORMATS)
            and not _keeps_gguf_type(st, keep_gguf, rules)}
    importance, record, moments = calibration_importance(source, calibration, loaded, gptq.__contains__)
    if method == "gptq" and not moments:
        record["gptq"] = "not used: no weight had its input's second moment measured"
    return importance, record, moments


def _metadata(source: Source, provenance: dict[str, Any], conversion: dict[str, Any],
              report: dict[str, Any]) -> dict[str, Any]:
    config = source.config
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        architectures = [config.get("model_type", source.kind)]
    return {"architecture": str(architectures[0]), "config": config, "provenance": provenance,
            "conversion": conversion, "report": report, **source.metadata}



def _planner_texts(calibration: CalibrationChoice, texts: Sequence[str] | None) -> Sequence[str] | None:
    """The mixed-precision planner's texts: given ones, else the user's --calibration file's passages,
    else None (the planner's default, the calibration text shipped with pyrt: also with no or
    synthetic calibration, since a plan is measured on text)."""
    if texts is not None or calibration in (None, DEFAULT_CALIBRATION, SYNTHETIC_CALIBRATION):
        return texts
    return split_calibration_text(read_calibration_text(calibration))

def convert_checkpoint(src: str | os.PathLike, out: str | os.PathLike, dtype: str | None = None, block: int = 32,
                       rules: Iterable[str | Rule] = (), report: str | os.PathLike | None = None,
                       quiet: bool = True, allow_nonfinite: bool = False,
                       fp16_overflow: str = "bf16", calibration: CalibrationChoice = DEFAULT_CALIBRATION,
                       quant_method: str = DEFAULT_QUANT_METHOD, target_bpw: float | None = None,
                       target_quality: str | None = None, accuracy: bool = False,
                       calibration_texts: Sequence[str] | None = None,
                       evaluation_texts: Sequence[str] | None = None) -> dict[str, Any]:
    """Converts ``src`` (HF folder, .safetensors, .npz, .bin/.pt with torch, .gguf) into ``out``.

    ``dtype``/``block``: format of the matmul weights (see pyrt.convert.rules for the defaults of
    the other tensors); None: q8, except that a GGUF source keeps its tensors' types where pyrt has
    the same bytes and converts the others with the least loss (pyrt.gguf_weights, docs/format.md); ``rules``: 'REGEX=DTYPE[:BLOCK]' overrides, first match wins; ``report``:
    also write the report to this .md or .json file; ``fp16_overflow``: 'bf16' (fall back) or
    'stop' (raise RangeError); ``quant_method``: "gptq" (the default: GPTQ error compensation on
    searched scales for the matmul weights that calibration measured, searched scales for the other
    q-format tensors; a mixed-precision plan is chosen with searched scales and written with GPTQ),
    "search" (searched scales only) or "rtn" (round to nearest); ``calibration``: "default" (the
    text shipped with pyrt), a text file, "synthetic" (no text: inputs the model makes) or None:
    when the model is one pyrt runs, the search is weighted by its activations on that text
    (pyrt.convert.calibrate). Returns the report dict (also stored in the file). Raises pyrt
    errors; on any failure ``out`` is left as it was and no temporary file remains.

    ``target_bpw`` (bits per weight of the whole file) or ``target_quality`` ('cos=0.99',
    'ppl=2%', ...: pyrt.quality.parse_quality_target): choose each tensor's format by the mixed-
    precision planner (pyrt.convert.plan; ``rules`` still win). ``accuracy``: measure the converted
    model against the source weights on ``evaluation_texts`` (default: pyrt's own) and store it as
    report["accuracy"]; always done with a target. ``calibration_texts``: the planner's (default:
    pyrt.calibration.default_calibration_texts()).
    """
    start = time.perf_counter()
    requested, dtype = dtype, dtype or "q8"
    effective_block(dtype, block)
    rules = tuple(parse_rule(r) if isinstance(r, str) else r for r in rules)
    if fp16_overflow not in OVERFLOW_POLICIES:
        raise DtypeError(f"fp16_overflow must be one of {OVERFLOW_POLICIES}, got {fp16_overflow!r}")
    if report is not None and Path(report).suffix.lower() not in (".md", ".markdown", ".json"):
        raise DtypeError(f"report file {report} must end in .md or .json")
    if quant_method not in QUANT_METHODS:
        raise DtypeError(f"quant_method must be one of {QUANT_METHODS}, got {quant_method!r}")
    conversion = {"dtype": dtype, "block": block, "rules": [r.text for r in rules],
                  "allow_nonfinite": allow_nonfinite, "fp16_overflow": fp16_overflow, "quant_method": quant_method,
                  "target_bpw": target_bpw, "target_quality": target_quality}
    out = Path(out)
    with open_source(src) as source:
        _refuse_overwriting_source(source, out)
        provenance = _provenance(source)
        keep_gguf = requested is None and source.kind == "gguf" and target_bpw is None and target_quality is None
        if keep_gguf:
            conversion["dtype"] = "gguf"  # each tensor's own type (pyrt.gguf_weights)
        loaded: dict[str, np.ndarray] = {}  # values calibration read, reused once below
        if keep_gguf and not rules:
            importance, conversion["calibration"] = {}, {"used": False, "reason": "GGUF types kept (no --dtype)"}
            moments: dict[str, np.ndarray] = {}
        else:
            importance, conversion["calibration"], moments = _calibration(
                source, dtype, block, rules, calibration, quant_method, loaded, keep_gguf,
                planned=target_bpw is not None or target_quality is not None)
        factors = GptqFactors(moments, conversion["calibration"].get("gptq_damp", DEFAULT_DAMP))
        del moments
        # The planner measures each candidate quantized as the file will hold it: same importance, same
        # method (GPTQ is for uniform formats: a plan's tensors are searched).
        plan_method = "rtn" if quant_method == "rtn" else "search"
        quality = QualityPass(source, target_bpw=target_bpw, target_quality=target_quality, accuracy=accuracy,
                              calibration_texts=_planner_texts(calibration, calibration_texts),
                              evaluation_texts=evaluation_texts,
                              quantizer=lambda name, x, d, b: store_tensor(name, x, Choice(d, b, "plan"), fp16_overflow,
                                                                           importance.get(name), plan_method)[0],
                              loader=lambda st: _load_values(st, loaded), user_rules=rules)
        rules = rules + tuple(parse_rule(r) for r in quality.rules())  # the user's rules come first
        try:
            writer = ModelWriter(out)
        except FileIOError as exc:
            raise _as_output_error(exc) from exc
        with writer:
            rows, skipped, nonfinite = [], [], []
            for st in _progress(source.tensors, quiet):
                if not st.is_float:
                    skipped.append({"name": st.name, "reason": f"{st.source_dtype} buffer, not a weight"})
                    continue
                x = quality.values(st.name)
                x = _load_values(st, loaded) if x is None else x
                finite = bool(np.isfinite(x).all())
                if not finite:
                    nonfinite.append(f"{st.name} ({int((~np.isfinite(x)).sum())} values)")
                if nonfinite and not allow_nonfinite:
                    continue  # keep scanning so that the error names every bad tensor
                stored, row = _convert_tensor(st, x, finite, dtype, block, rules, fp16_overflow,
                                              importance.get(st.name), quant_method, keep_gguf,
                                              factors.take(st.name))
                quality.annotate(row, stored)
                try:
                    writer.add_tensor(st.name, stored)
                except FileIOError as exc:
                    raise _as_output_error(exc) from exc
                rows.append(row)
            gptq_rows = sum(row["note"].endswith("GPTQ") for row in rows)
            if gptq_rows:
                conversion["calibration"]["gptq"] = f"{gptq_rows} tensors" + (
                    " (the plan was chosen with searched scales)" if target_bpw or target_quality else "")
            if nonfinite and not allow_nonfinite:
                raise RangeError("NaN/Inf in the source, conversion refused (use --allow-nonfinite to keep "
                                 "such tensors as f32): " + ", ".join(nonfinite))
            result = {"tensors": rows, "totals": totals(rows, skipped), "calibration": conversion["calibration"],
                      "accuracy": quality.finish()}
            try:
                for name, data in source.files.items():
                    writer.add_file(name, data)
                writer.commit(_metadata(source, provenance, conversion, result))
            except FileIOError as exc:
                raise _as_output_error(exc) from exc
    result = dict(result, seconds=time.perf_counter() - start)
    if report is not None:
        write_report(result, report)
    if not quiet:
        print(format_table(result))
        print(calibration_line(result["calibration"]))
        for line in accuracy_lines(result["accuracy"]):
            print(line)
        print(f"wrote {out} in {result['seconds']:.2f} s")
    return result
