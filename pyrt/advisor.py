"""`pyrt advise`: which precision to use for one model, measured on this machine.

The source checkpoint is converted to each candidate (uniform formats with the converter's
default rules, and mixed-precision plans at a few budgets) into a temporary folder; each file is
loaded and run like a user would: its size, load time, throughput, and quality against the
source weights on the evaluation texts. The answer is the smallest file that meets a quality bar.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .convert.plan import Planner
from .convert.rules import choose
from .convert.source_model import SourceModel
from .convert.writer import ModelWriter
from .errors import DtypeError, UnsupportedError
from .formats import FORMATS
from .quality import QualityTarget, make_probe, parse_quality_target
from .quantize_gptq import GPTQ_FORMATS, GptqFactor, gptq_factor, quantize_gptq
from .tensor import Tensor, quantize

DEFAULT_BARS = {"encoder": "cos=0.99", "decoder": "ppl=2%"}
DEFAULT_BUDGETS = (5.0, 6.0)
DECODE_TOKENS = 16


def default_formats() -> list[str]:
    """f16, q8, q4a, q4 and any other 4-bit format pyrt.formats lists (q4n when present)."""
    rest = [f for f in FORMATS if f not in ("f32", "f16", "bf16", "q8", "q4a", "q4") and FORMATS[f].bits_per_element == 4]
    return ["f16", "q8", "q4a", "q4"] + rest


def check_formats(formats: Sequence[str] | None) -> list[str]:
    """``formats`` (default: :func:`default_formats`), each checked against pyrt.formats."""
    formats = list(formats) if formats else default_formats()
    for f in formats:
        if f not in FORMATS:
            raise DtypeError(f"unknown format {f!r} (expected one of {', '.join(FORMATS)})")
    return formats


@dataclass
class Trial:
    label: str
    bits_per_weight: float
    file_bytes: int
    load_seconds: float
    metrics: dict[str, Any]
    speed: dict[str, float]
    mixed: bool = False
    notes: list[str] = field(default_factory=list)


def _write(path: Path, model: SourceModel, tensors: dict[str, Tensor]) -> None:
    with ModelWriter(path) as writer:
        for name, t in tensors.items():
            writer.add_tensor(name, t)
        for name, data in model.files.items():
            writer.add_file(name, data)
        arch = (model.config.get("architectures") or [model.config.get("model_type", model.kind)])[0]
        writer.commit({"architecture": str(arch), "config": model.config, **model.metadata})


def _load(path: Path, kind: str) -> Any:
    if kind == "encoder":
        from .encoder import SentenceEncoder

        return SentenceEncoder(path)
    from .llm import LanguageModel

    return LanguageModel(path, context_length=1024)


def _quantizer(importance: dict[str, np.ndarray]) -> Callable[[str, np.ndarray, str, int], Tensor]:
    """Quantizes as `pyrt convert --target-*` does: q-formats searched and weighted by the
    calibration importance."""
    def run(name: str, x: np.ndarray, dtype: str, block: int) -> Tensor:
        blocked = FORMATS[dtype].blocked and x.ndim == 2
        return quantize(x, dtype, block, importance=importance.get(name) if blocked else None)
    return run


def _gptq_tensor(name: str, x: np.ndarray, dtype: str, block: int, importance: dict[str, np.ndarray],
                 moments: dict[str, np.ndarray], factors: dict[int, GptqFactor]) -> Tensor | None:
    """``x`` quantized by GPTQ as the converter does, or None where the converter would not (no
    second moment, not a GPTQ format). ``factors`` caches the GPTQ factors by id of their moment
    (the caller keeps ``moments`` alive)."""
    h = moments.get(name)
    if h is None or dtype not in GPTQ_FORMATS or x.ndim != 2:
        return None
    factor = factors.get(id(h)) or factors.setdefault(id(h), gptq_factor(h))
    return quantize_gptq(x, dtype, block, factor, importance=importance.get(name))


def _uniform_tensors(model: SourceModel, dtype: str, block: int = 32,
                     importance: dict[str, np.ndarray] | None = None,
                     moments: dict[str, np.ndarray] | None = None,
                     factors: dict[int, GptqFactor] | None = None) -> dict[str, Tensor]:
    """The tensors `pyrt convert --dtype DTYPE` would store (same default rules, same calibration):
    with ``moments`` (the inputs' second moments), the matmul weights by GPTQ."""
    importance, moments = importance or {}, moments or {}
    factors = {} if factors is None else factors
    quantizer = _quantizer(importance)
    out = {}
    for name, x in model.arrays.items():
        c = choose(name, x.shape, dtype, block)
        t = _gptq_tensor(name, x, c.dtype, c.block, importance, moments, factors)
        out[name] = t if t is not None else quantizer(name, x, c.dtype, c.block)
    return out


class Advisor:
    def __init__(self, source: str | os.PathLike, texts: Sequence[str] | None = None,
                 calibration_texts: Sequence[str] | None = None, progress: Callable[[str], None] | None = None):
        self.model = SourceModel.load(source)
        self.progress = progress or (lambda message: None)
        if texts is None:
            from .convert.accuracy_report import default_texts

            texts = default_texts(self.model.kind)
        self.texts = list(texts)
        self.calibration_texts = calibration_texts
        self.probe = make_probe(self.model.kind, self.model.build(self.model.reference_tensors()), self.texts)

    def _speed(self, runner: Any) -> tuple[dict[str, Any], dict[str, float]]:
        start = time.perf_counter()
        metrics = self.probe.measure(runner)
        seconds = time.perf_counter() - start
        if self.model.kind == "encoder":
            return metrics, {"sentences_per_s": len(self.texts) / seconds}
        speed = {"prefill_tokens_per_s": metrics["tokens"] / seconds}
        runner.reset()
        logits = runner.forward(self.probe.ids[:8])
        start = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            logits = runner.forward([int(logits.argmax())])
        speed["decode_tokens_per_s"] = DECODE_TOKENS / (time.perf_counter() - start)
        runner.reset()
        return metrics, speed

    def _trial(self, label: str, tensors: dict[str, Tensor], folder: Path, mixed: bool = False) -> Trial:
        path = folder / f"{label.replace('/', '_').replace(' ', '_')}.pyrt"
        _write(path, self.model, tensors)
        start = time.perf_counter()
        runner = _load(path, self.model.kind)
        load_seconds = time.perf_counter() - start
        metrics, speed = self._speed(runner)
        elements = sum(self.model.arrays[n].size for n in tensors)
        bits = 8.0 * sum(t.nbytes for t in tensors.values()) / elements
        self.progress(f"{label}: {bits:.3f} bits/weight")
        return Trial(label, bits, path.stat().st_size, load_seconds, metrics, speed, mixed)

    def run(self, formats: Sequence[str] | None = None, budgets: Sequence[float] = DEFAULT_BUDGETS) -> list[Trial]:
        from .convert.accuracy_report import calibration_or_default
        from .convert.calibrate import gptq_candidates, model_second_moments, model_statistics

        formats = check_formats(formats)
        trials = []
        texts, _ = calibration_or_default(self.calibration_texts)
        # the converter's default: q-formats weighted by the model's activation statistics, the
        # matmul weights of a uniform format by GPTQ
        built = self.model.build(self.model.reference_tensors())
        importance, rows, _ = model_statistics(built, texts)
        moments = model_second_moments(built, texts, [n for n in gptq_candidates(importance, rows)
                                                      if self.model.arrays[n].ndim == 2])
        factors: dict[int, GptqFactor] = {}
        with tempfile.TemporaryDirectory(prefix="pyrt-advise-") as tmp:
            folder = Path(tmp)
            for f in formats:
                trials.append(self._trial(f + ("/32" if FORMATS[f].blocked else ""),
                                          _uniform_tensors(self.model, f, importance=importance, moments=moments,
                                                           factors=factors), folder))
            if budgets:
                planner = Planner(self.model, texts, progress=self.progress, quantizer=_quantizer(importance))
                for b in budgets:
                    if b < planner.min_bpw():
                        continue
                    plan = planner.for_bpw(b)
                    tensors = dict(self.model.reference_tensors())
                    # as the converter writes a plan: chosen with searched scales, GPTQ where it applies
                    for n, c in plan.choice.items():
                        t = _gptq_tensor(n, self.model.arrays[n], c.dtype, c.block, importance, moments, factors)
                        tensors[n] = t if t is not None else planner.stored(n, c)
                    trials.append(self._trial(f"mixed <= {b:g} bpw", tensors, folder, mixed=True))
        return trials


def recommend(trials: Sequence[Trial], bar: QualityTarget) -> Trial | None:
    """The smallest file that meets ``bar`` (None when none does)."""
    meeting = [t for t in trials if bar.met(t.metrics)]
    return min(meeting, key=lambda t: t.file_bytes) if meeting else None


def quality_columns(kind: str) -> list[tuple[str, str, str]]:
    """(header, metric key, format) of the quality columns of a model kind."""
    if kind == "encoder":
        return [("cos mean", "cos_mean", "{:.5f}"), ("cos min", "cos_min", "{:.5f}")]
    return [("ppl", "perplexity", "{:.3f}"), ("ppl +%", "ppl_increase_pct", "{:+.2f}"), ("KL", "kl", "{:.4f}"),
            ("top-1", "top1", "{:.3f}")]


def speed_columns(kind: str) -> list[tuple[str, str]]:
    if kind == "encoder":
        return [("sent/s", "sentences_per_s")]
    return [("prefill tok/s", "prefill_tokens_per_s"), ("decode tok/s", "decode_tokens_per_s")]


def format_table(trials: Sequence[Trial], kind: str) -> str:
    header = ["candidate", "bits/w", "size MB", *(h for h, _, _ in quality_columns(kind)), "load ms",
              *(h for h, _ in speed_columns(kind))]
    rows = [header]
    for t in trials:
        rows.append([t.label, f"{t.bits_per_weight:.3f}", f"{t.file_bytes / 1e6:.2f}",
                     *(fmt.format(t.metrics[key]) for _, key, fmt in quality_columns(kind)),
                     f"{1e3 * t.load_seconds:.0f}", *(f"{t.speed[key]:.1f}" for _, key in speed_columns(kind))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def plot(trials: Sequence[Trial], kind: str, path: str | os.PathLike, title: str = "") -> None:
    """Quality against bits per weight, one point per candidate, as a PNG (needs matplotlib)."""
    try:
        import matplotlib  # noqa: PLC0415 - optional dependency

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise UnsupportedError("the plot needs matplotlib: pip install 'pyrt-infer[plot]'") from exc
    series = ([("cos_mean", "mean cosine to the source"), ("cos_min", "min cosine to the source")]
              if kind == "encoder" else [("ppl_increase_pct", "perplexity increase over the source (%)")])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for key, label in series:
            xs = [t.bits_per_weight for t in trials]
            ys = [t.metrics[key] for t in trials]
            ax.scatter(xs, ys, label=label)
            for t, x, y in zip(trials, xs, ys) if key == series[0][0] else ():
                ax.annotate(t.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("bits per weight (whole file)")
        ax.set_ylabel("quality" if kind == "encoder" else "perplexity increase (%)")
        ax.set_title(title or "pyrt advise: quality against size")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png", dpi=100)
    finally:
        plt.close(fig)


def parse_bar(text: str | None, kind: str) -> QualityTarget:
    bar = parse_quality_target(text or DEFAULT_BARS[kind])
    if bar.kind != kind:
        raise DtypeError(f"quality bar {bar.text!r} is for {bar.kind}s; this model is a {kind}")
    return bar

