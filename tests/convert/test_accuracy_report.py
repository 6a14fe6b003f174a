"""The end-to-end accuracy report: stored in the .pyrt metadata by the converter, equal to an
independent float64 recomputation, shown by `pyrt info`; older files without it still show fine.
Also the decoder metrics against a direct float64 implementation, and on SmolLM2."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

import pyrt
from helpers import models_dir, run_python
from pyrt.convert import convert_checkpoint
from pyrt.convert.source_model import SourceModel
from pyrt.encoder import SentenceEncoder
from pyrt.quality import DecoderProbe, decoder_stats, evaluation_sentences, evaluation_text
from pyrt.tensor import quantize

MINILM = models_dir() / "all-MiniLM-L6-v2"
SMOLLM2_GGUF = models_dir() / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = Path(__file__).resolve().parents[1] / "formats" / "data" / "v1_tiny.pyrt"  # written before the report existed
needs_minilm = pytest.mark.skipif(not (MINILM / "model.safetensors").is_file(), reason=f"{MINILM} absent")
needs_smollm2 = pytest.mark.skipif(not SMOLLM2_GGUF.is_file(), reason=f"{SMOLLM2_GGUF} absent")


def test_decoder_stats_match_a_direct_float64_computation(rng):
    t, v = 9, 50
    logits = rng.standard_normal((t, v)) * 3
    ref_logits = logits[:-1] + rng.standard_normal((t - 1, v)) * 0.3
    ids = rng.integers(0, v, t)
    ref_logp = ref_logits - np.log(np.exp(ref_logits).sum(axis=1, keepdims=True))
    got = decoder_stats(ref_logp, logits.astype(np.float32), ids)
    nll = ref_nll = kl = agree = 0.0
    for i in range(t - 1):
        p = np.exp(logits[i].astype(np.float32).astype(np.float64))
        p /= p.sum()
        q = np.exp(ref_logp[i])
        nll -= math.log(p[ids[i + 1]])
        ref_nll -= ref_logp[i, ids[i + 1]]
        kl += sum(q[j] * (math.log(q[j]) - math.log(p[j])) for j in range(v))
        agree += float(np.argmax(p) == np.argmax(q))
    n = t - 1
    assert got["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-9)
    assert got["source_perplexity"] == pytest.approx(math.exp(ref_nll / n), rel=1e-9)
    assert got["ppl_increase_pct"] == pytest.approx(100 * (math.exp((nll - ref_nll) / n) - 1), rel=1e-6, abs=1e-9)
    assert got["kl"] == pytest.approx(kl / n, rel=1e-9) and got["top1"] == agree / n


def test_evaluation_texts_are_varied_and_not_the_calibration_ones():
    from pyrt.calibration import default_calibration_texts

    sentences = evaluation_sentences()
    assert 60 <= len(sentences) <= 80
    assert not set(sentences) & set(default_calibration_texts())
    assert sum(len(s.split()) <= 3 for s in sentences) >= 8          # very short
    assert sum(len(s) > 500 for s in sentences) >= 5                 # well over 128 tokens
    assert sum(not s.isascii() for s in sentences) >= 15             # other languages and scripts
    assert len(evaluation_text().split()) > 300


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("acc") / "q4.pyrt"
    report = convert_checkpoint(MINILM, out, dtype="q4", accuracy=True)
    return out, report


@needs_minilm
def test_stored_accuracy_equals_an_independent_recomputation(converted):
    out, report = converted
    with pyrt.load(out) as model:
        acc = model.metadata["report"]["accuracy"]
    assert acc == json.loads(json.dumps(report["accuracy"]))
    sentences = evaluation_sentences()
    assert acc["evaluation"]["sha256"] == hashlib.sha256("\n".join(sentences).encode()).hexdigest()
    assert acc["evaluation"]["items"] == len(sentences) and acc["metrics"]["sentences"] == len(sentences)
    source = SourceModel.load(MINILM)
    f32 = SentenceEncoder.from_parts({n: quantize(a, "f32", 1) for n, a in source.arrays.items()},
                                     source.config, source.files)
    a = f32.encode(sentences).astype(np.float64)
    b = SentenceEncoder(out).encode(sentences).astype(np.float64)
    cos = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert acc["metrics"]["cos_mean"] == pytest.approx(cos.mean(), abs=1e-9)
    assert acc["metrics"]["cos_min"] == pytest.approx(cos.min(), abs=1e-9)
    assert 0.8 < cos.min() < cos.mean() < 0.999  # q4 loses something; the report must see it
    rows = {r["name"]: r for r in report["tensors"]}
    assert rows["encoder.layer.0.attention.self.query.weight"]["bits_per_weight"] == pytest.approx(4.5)
    assert rows["encoder.layer.0.attention.self.query.weight"]["sensitivity"] is None  # not a planned conversion


@needs_minilm
def test_pyrt_info_shows_the_accuracy(converted):
    out, report = converted
    proc = run_python("-m", "pyrt", "info", str(out))
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("accuracy ("))
    assert f"mean {report['accuracy']['metrics']['cos_mean']:.5f}" in line
    assert report["accuracy"]["evaluation"]["sha256"][:12] in line
    assert "rel err" in proc.stdout
    data = json.loads(run_python("-m", "pyrt", "info", str(out), "--json").stdout)
    assert data["accuracy"]["metrics"]["cos_min"] == report["accuracy"]["metrics"]["cos_min"]


def test_pyrt_info_of_a_file_without_the_report_still_works():
    proc = run_python("-m", "pyrt", "info", str(TINY))
    assert proc.returncode == 0 and "accuracy" not in proc.stdout and "total:" in proc.stdout
    assert json.loads(run_python("-m", "pyrt", "info", str(TINY), "--json").stdout)["accuracy"] is None


@needs_smollm2
def test_decoder_metrics_on_smollm2():
    source = SourceModel.load(SMOLLM2_GGUF)
    reference = source.build(source.reference_tensors())
    probe = DecoderProbe(reference, evaluation_text(), max_tokens=96)

    def stored(dtype: str) -> dict:
        return {n: quantize(a, "f32" if a.ndim == 1 else ("q8" if n == "token_embd.weight" else dtype), 32 if a.ndim > 1 else 1)
                for n, a in source.arrays.items()}

    same = probe.measure(source.build(stored("q4a")))  # q8/32 and q4a/32 hold the Q8_0/Q4_1 source exactly
    assert same["kl"] < 2e-3 and same["top1"] > 0.97 and abs(same["ppl_increase_pct"]) < 1.0
    short = evaluation_text()[:300]  # the probe's perplexity against LanguageModel.perplexity's own
    whole = DecoderProbe(reference, short, max_tokens=10 ** 6).measure(reference)
    assert whole["perplexity"] == pytest.approx(reference.perplexity(short), rel=1e-6)
    assert whole["kl"] == pytest.approx(0, abs=1e-9) and whole["top1"] == 1.0
    coarse = probe.measure(source.build(stored("q4")))
    assert coarse["kl"] > 10 * same["kl"] and coarse["perplexity"] > same["perplexity"]
