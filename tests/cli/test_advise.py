"""`pyrt advise` (docs/cli.md): the table, the recommendation, the PNG plot and the JSON on the real
all-MiniLM-L6-v2, and its documented exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import models_dir, run_python
from pyrt.cli import main as pyrt_main
from pyrt.convert import plan as plan_module
from pyrt.quality import evaluation_sentences, parse_quality_target

MINILM = models_dir() / "all-MiniLM-L6-v2"
needs_minilm = pytest.mark.skipif(not (MINILM / "model.safetensors").is_file(),
                                  reason=f"{MINILM} absent: run python tools/fetch_models.py")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _one_line_error(proc, code: int, needle: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1 and lines[0].startswith("pyrt: error: "), proc.stderr
    assert needle in lines[0], lines[0]


@needs_minilm
def test_advise_measures_every_candidate_and_recommends_the_smallest_good_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plan_module, "CALIBRATION_SENTENCES", 8)   # a short sensitivity pass for the test
    monkeypatch.setattr(plan_module, "DEFAULT_BLOCKS", (32, 128))
    plot, out, text = tmp_path / "q.png", tmp_path / "advice.json", tmp_path / "mine.txt"
    mine = evaluation_sentences()[::5]  # --text: the user's own sentences
    text.write_text("\n".join(mine) + "\n")
    code = pyrt_main(["advise", str(MINILM), "--formats", "q8,q4", "--budgets", "6", "--plot", str(plot),
                      "--json", str(out), "--text", str(text), "-q"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    data = json.loads(out.read_text())
    trials = {t["label"]: t for t in data["trials"]}
    assert list(trials) == ["q8/32", "q4/32", "mixed <= 6 bpw"]
    for label in trials:
        assert label in printed
    q8, q4, mixed = trials["q8/32"], trials["q4/32"], trials["mixed <= 6 bpw"]
    assert q8["metrics"]["cos_mean"] > 0.999 > q4["metrics"]["cos_mean"]
    assert mixed["bits_per_weight"] <= 6.0 + 1e-9 < q4["bits_per_weight"]  # q4/32 keeps embeddings q8: ~6.6 bpw
    assert mixed["metrics"]["cos_mean"] > q4["metrics"]["cos_mean"]          # smaller and better than uniform q4
    assert q8["file_bytes"] > q4["file_bytes"] > mixed["file_bytes"]
    for t in trials.values():
        assert t["metrics"]["sentences"] == len(mine)
        assert t["load_seconds"] > 0 and t["speed"]["sentences_per_s"] > 0
        assert 0 < t["metrics"]["cos_min"] <= t["metrics"]["cos_mean"] <= 1 + 1e-9
    bar = parse_quality_target("cos=0.99")
    good = [t for t in trials.values() if bar.met(t["metrics"])]
    expected = min(good, key=lambda t: t["file_bytes"])["label"]
    assert data["recommendation"] == expected and f"recommendation: {expected} " in printed
    raw = plot.read_bytes()
    assert raw.startswith(PNG_MAGIC)
    import matplotlib.image

    image = matplotlib.image.imread(plot)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert float(np.std(image)) > 0.01  # something is drawn


@needs_minilm
def test_advise_usage_errors_are_2(tmp_path):
    _one_line_error(run_python("-m", "pyrt", "advise", str(MINILM), "--bar", "ppl=2%"), 2, "decoder")
    _one_line_error(run_python("-m", "pyrt", "advise", str(MINILM), "--formats", "q9"), 2, "q9")
    _one_line_error(run_python("-m", "pyrt", "advise", str(MINILM), "--budgets", "five"), 2, "--budgets")


def test_advise_on_an_architecture_pyrt_cannot_run_is_3(tmp_path):
    src = tmp_path / "w.npz"
    np.savez(src, **{"layer.weight": np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)})
    _one_line_error(run_python("-m", "pyrt", "advise", str(src)), 3, "BERT")


@needs_minilm
def test_advise_plot_without_matplotlib_names_the_extra(tmp_path):
    script = ("import runpy, sys\nsys.modules['matplotlib'] = None\n"
              "runpy.run_module('pyrt', run_name='__main__', alter_sys=True)\n")
    proc = run_python("-c", script, "advise", str(MINILM), "--plot", str(tmp_path / "p.png"))
    _one_line_error(proc, 1, "pyrt-infer[plot]")
    assert not Path(tmp_path / "p.png").exists()


@needs_minilm
def test_advise_quantizes_as_the_converter_does(tmp_path):
    # The candidates `pyrt advise` measures are the bytes `pyrt convert` writes: GPTQ on searched
    # scales, weighted by the same calibration (a difference here made advise under-report q4a/32).
    import pyrt
    from pyrt.advisor import _uniform_tensors
    from pyrt.calibration import default_calibration_texts
    from pyrt.convert import convert_checkpoint
    from pyrt.convert.calibrate import model_second_moments, model_statistics
    from pyrt.convert.source_model import SourceModel

    model = SourceModel.load(MINILM)
    built = model.build(model.reference_tensors())
    texts = default_calibration_texts()
    importance, _, _ = model_statistics(built, texts)
    names = ["encoder.layer.2.attention.self.value.weight", "encoder.layer.5.output.dense.weight"]
    moments = model_second_moments(built, texts, names)
    advised = _uniform_tensors(model, "q4a", importance=importance, moments=moments)
    convert_checkpoint(MINILM, tmp_path / "m.pyrt", dtype="q4a", block=32, accuracy=False)
    converted = pyrt.load(tmp_path / "m.pyrt")
    for name in names:
        np.testing.assert_array_equal(advised[name].numpy(), converted.tensors[name].numpy())
    searched = _uniform_tensors(model, "q4a", importance=importance)["encoder.layer.5.output.dense.weight"]
    uncalibrated = _uniform_tensors(model, "q4a")["encoder.layer.5.output.dense.weight"]
    for other in (searched, uncalibrated):
        assert not np.array_equal(other.numpy(), advised["encoder.layer.5.output.dense.weight"].numpy())
