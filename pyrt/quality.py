"""End-to-end quality of a quantized model against its source weights.

Encoders: cosine similarity of each sentence's embedding to the source (FP32) model's, mean and
minimum over the sentences. Decoders, on one text: perplexity, its increase over the source
weights' perplexity, mean KL divergence KL(source || quantized) of the next-token distributions,
and top-1 agreement (how often both pick the same next token).

A :class:`Probe` holds the reference outputs for fixed texts, so that many variants of a model
(the mixed-precision planner's trials, `pyrt advise`'s formats) are measured against one
reference run. The default evaluation texts (pyrt/data/evaluation/) are written for pyrt and are
never the calibration texts.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DtypeError, ShapeError

EVALUATION_DIR = Path(__file__).parent / "data" / "evaluation"
EVALUATION_SENTENCES = "sentences.txt"
EVALUATION_TEXT = "decoder.txt"
DECODER_TOKENS = 256   # evaluation tokens per decoder measurement: bounds its time


def evaluation_sentences() -> list[str]:
    """The default encoder evaluation sentences (pyrt/data/evaluation/sentences.txt)."""
    lines = (EVALUATION_DIR / EVALUATION_SENTENCES).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def evaluation_text() -> str:
    """The default decoder evaluation text (pyrt/data/evaluation/decoder.txt)."""
    return (EVALUATION_DIR / EVALUATION_TEXT).read_text(encoding="utf-8")


def describe_texts(name: str, texts: Sequence[str]) -> dict[str, Any]:
    """What the report records about a set of texts: a name, how many, and a sha256 of them
    (joined by newlines) that identifies them exactly."""
    joined = "\n".join(texts).encode("utf-8")
    return {"name": name, "items": len(texts), "sha256": hashlib.sha256(joined).hexdigest()}


def cosine_stats(reference: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Mean and minimum row-wise cosine similarity, in float64."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(got, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or not len(a):
        raise ShapeError(f"embeddings must be two equal non-empty [n, d] arrays, got {a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.einsum("ij,ij->i", a, b) / np.maximum(norms, 1e-300)
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min())}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def decoder_stats(reference_logp: np.ndarray, logits: np.ndarray, ids: Sequence[int]) -> dict[str, float]:
    """Perplexity, perplexity of the reference, its increase in %, mean KL(reference || model)
    and top-1 agreement. ``reference_logp``: the reference's log-probabilities [T-1, V] for the
    tokens after the first; ``logits``: the model's logits for all T tokens."""
    logp = log_softmax(np.asarray(logits)[:-1])
    if logp.shape != reference_logp.shape:
        raise ShapeError(f"logits {logp.shape} do not match the reference {reference_logp.shape}")
    target = np.asarray(ids[1:], dtype=np.int64)
    rows = np.arange(len(target))
    ppl = math.exp(-float(logp[rows, target].mean()))
    ref_ppl = math.exp(-float(reference_logp[rows, target].mean()))
    kl = float((np.exp(reference_logp) * (reference_logp - logp)).sum(axis=1).mean())
    top1 = float((logp.argmax(axis=1) == reference_logp.argmax(axis=1)).mean())
    return {"perplexity": ppl, "source_perplexity": ref_ppl, "ppl_increase_pct": 100.0 * (ppl / ref_ppl - 1.0),
            "kl": max(kl, 0.0), "top1": top1}


class Probe:
    """Reference outputs of a model on fixed texts; :meth:`measure` compares another model's.
    :meth:`loss` is the one number the planner minimises (0 = identical to the reference)."""

    kind = ""

    def measure(self, model: Any) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def loss(metrics: dict[str, Any]) -> float:
        raise NotImplementedError


class EncoderProbe(Probe):
    """Embeddings of ``sentences``; loss = 1 - mean cosine."""

    kind = "encoder"

    def __init__(self, reference: Any, sentences: Sequence[str]):
        self.sentences = list(sentences)
        if not self.sentences:
            raise ShapeError("an encoder probe needs at least one sentence")
        self.reference = reference.encode(self.sentences)

    def measure(self, model: Any) -> dict[str, Any]:
        stats = cosine_stats(self.reference, model.encode(self.sentences))
        return {"kind": self.kind, **stats, "sentences": len(self.sentences)}

    @staticmethod
    def loss(metrics: dict[str, Any]) -> float:
        return 1.0 - metrics["cos_mean"]


class DecoderProbe(Probe):
    """Next-token distributions over the first ``max_tokens`` tokens of ``text``; loss = mean KL."""

    kind = "decoder"

    def __init__(self, reference: Any, text: str, max_tokens: int = DECODER_TOKENS):
        # Bounded by the model's own context too (a small model's cache holds fewer tokens).
        self.ids = list(reference.tokenizer.encode(text))[:min(max_tokens, reference.context_length)]
        if len(self.ids) < 2:
            raise ShapeError("a decoder probe needs a text of at least two tokens")
        self.reference_logp = log_softmax(self._logits(reference)[:-1])

    def _logits(self, model: Any) -> np.ndarray:
        model.reset()
        try:
            return model.forward(self.ids, all_logits=True)
        finally:
            model.reset()

    def measure(self, model: Any) -> dict[str, Any]:
        stats = decoder_stats(self.reference_logp, self._logits(model), self.ids)
        return {"kind": self.kind, **stats, "tokens": len(self.ids)}

    @staticmethod
    def loss(metrics: dict[str, Any]) -> float:
        return metrics["kl"]


def make_probe(kind: str, reference: Any, texts: Sequence[str], max_tokens: int = DECODER_TOKENS) -> Probe:
    """An encoder probe on the sentences ``texts``, or a decoder probe on them joined as one text."""
    if kind == "encoder":
        return EncoderProbe(reference, texts)
    if kind == "decoder":
        return DecoderProbe(reference, "\n".join(texts), max_tokens)
    raise DtypeError(f"no quality measure for model kind {kind!r}")


# ---- quality targets: `--target-quality cos=0.99`, `ppl=2%`, `kl=0.01`, ... -----------------------

@dataclass(frozen=True)
class QualityTarget:
    """A bar a model's metrics must reach. ``metric`` is a key of :meth:`Probe.measure`'s dict."""
    metric: str
    value: float
    higher_is_better: bool
    kind: str
    text: str

    def met(self, metrics: dict[str, Any]) -> bool:
        got = metrics[self.metric]
        return got >= self.value if self.higher_is_better else got <= self.value


# name in the syntax -> (metric key, higher is better, model kind)
TARGET_METRICS = {
    "cos": ("cos_mean", True, "encoder"),
    "cosmin": ("cos_min", True, "encoder"),
    "ppl": ("ppl_increase_pct", False, "decoder"),
    "kl": ("kl", False, "decoder"),
    "top1": ("top1", True, "decoder"),
}
TARGET_SYNTAX = ("cos=C or cosmin=C (encoders: mean/min cosine to the source, e.g. cos=0.99); "
                 "ppl=P% (decoders: perplexity increase, e.g. ppl=2%), kl=K or top1=A (decoders)")


def parse_quality_target(text: str) -> QualityTarget:
    """'cos=0.99', 'cosmin=0.97', 'ppl=2%', 'kl=0.02', 'top1=0.9' -> a :class:`QualityTarget`."""
    name, sep, value = text.strip().partition("=")
    name = name.strip().lower()
    if not sep or name not in TARGET_METRICS:
        raise DtypeError(f"quality target {text!r}: expected {TARGET_SYNTAX}")
    metric, higher, kind = TARGET_METRICS[name]
    value = value.strip()
    if name == "ppl":
        value = value.removesuffix("%")
    try:
        number = float(value)
    except ValueError:
        raise DtypeError(f"quality target {text!r}: {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0 or (name in ("cos", "cosmin", "top1") and number > 1):
        raise DtypeError(f"quality target {text!r}: value out of range")
    return QualityTarget(metric, number, higher, kind, text.strip())


def summary_line(metrics: dict[str, Any]) -> str:
    """One line of a metrics dict, for printed reports."""
    if metrics.get("kind") == "encoder":
        return (f"cosine to the source: mean {metrics['cos_mean']:.5f}, min {metrics['cos_min']:.5f} "
                f"({metrics['sentences']} sentences)")
    return (f"perplexity {metrics['perplexity']:.3f} (source {metrics['source_perplexity']:.3f}, "
            f"{metrics['ppl_increase_pct']:+.2f} %), KL {metrics['kl']:.4f}, top-1 agreement "
            f"{100 * metrics['top1']:.1f} % ({metrics['tokens']} tokens)")


def accuracy_lines(accuracy: dict[str, Any] | None) -> list[str]:
    """The accuracy section as printed by the converter and `pyrt info`."""
    if not accuracy:
        return []
    if not accuracy.get("measured"):
        return [f"accuracy: {accuracy.get('reason', 'not measured')}"]
    ev = accuracy["evaluation"]
    lines = [f"accuracy ({ev['name']} evaluation texts, {ev['items']} items, sha256 {ev['sha256'][:12]}...): "
             + summary_line(accuracy["metrics"])]
    cal = accuracy.get("calibration")
    if cal:
        lines.append(f"calibration: {cal['name']}, {cal['items']} items, sha256 {cal['sha256'][:12]}...")
    plan = accuracy.get("plan")
    if plan:
        formats = ", ".join(f"{k} x{v}" for k, v in sorted(plan["formats"].items()))
        lines.append(f"mixed-precision plan: {plan['bits_per_weight']:.3f} bits/weight over {plan['groups']} "
                     f"sensitivity groups in {plan['seconds']:.1f} s: {formats}")
    return lines
