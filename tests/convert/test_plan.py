"""The mixed-precision planner (pyrt/convert/plan.py): its allocation against brute force, its
grouping, and on the real all-MiniLM-L6-v2 that a plan beats the uniform formats at the same bits
on the evaluation sentences (never the calibration ones)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import pyrt
from pyrt.calibration import default_calibration_texts
from pyrt.convert import convert_checkpoint
from pyrt.convert import plan as plan_module
from pyrt.convert.plan import Candidate, Group, GroupCost, Option, Planner, _lower_hull, candidates, make_groups
from pyrt.convert.rules import choose
from pyrt.convert.source_model import SourceModel
from pyrt.errors import DtypeError, RangeError
from pyrt.quality import evaluation_sentences, make_probe, parse_quality_target

from helpers import models_dir

MINILM = models_dir() / "all-MiniLM-L6-v2"
needs_minilm = pytest.mark.skipif(not (MINILM / "model.safetensors").is_file(),
                                  reason="all-MiniLM-L6-v2 not fetched (tools/fetch_models.py)")
# Few candidates and a small calibration probe keep the real-model tests to tens of seconds.
TEST_CANDIDATES = [Candidate("q4", 128), Candidate("q4", 32), Candidate("q4a", 32), Candidate("q8", 32), Candidate("f16")]
TEST_PROBE = 12


def _synthetic_planner(rng, groups=5, fixed_bits=1000.0) -> Planner:
    """A Planner whose measured costs are random convex-ish curves (no model)."""
    p = Planner.__new__(Planner)
    p.costs = []
    for g in range(groups):
        n = int(rng.integers(100, 1000))
        opts = [Option(c, c.bits * n, float(rng.uniform(0.5, 2.0)) * 2.0 ** (-c.bits) * n) for c in TEST_CANDIDATES]
        p.costs.append(GroupCost(Group(f"g{g}", [f"t{g}"]), n, 0.0, TEST_CANDIDATES[0], _lower_hull(opts), {}))
    p.fixed_bits = fixed_bits
    p.elements = sum(c.elements for c in p.costs) + 10
    return p


def test_lower_hull_is_convex_and_drops_dominated_points(rng):
    for _ in range(50):
        opts = [Option(Candidate("q8", 32), float(b), float(l))
                for b, l in zip(rng.uniform(1, 10, 8), rng.uniform(0, 1, 8))]
        hull = _lower_hull(opts)
        bits = [o.bits for o in hull]
        losses = [o.loss for o in hull]
        assert bits == sorted(bits) and all(a > b for a, b in zip(losses, losses[1:]))
        slopes = [(losses[i] - losses[i + 1]) / (bits[i + 1] - bits[i]) for i in range(len(hull) - 1)]
        assert all(a >= b - 1e-12 for a, b in zip(slopes, slopes[1:]))  # drops per bit shrink: convex
        for o in opts:  # nothing off the hull is better for its bits than the hull's interpolation
            if o.bits >= bits[0]:
                assert o.loss >= np.interp(o.bits, bits, losses) - 1e-12


def test_greedy_path_states_are_optimal_for_their_bits(rng):
    p = _synthetic_planner(rng)
    sizes = [len(c.options) for c in p.costs]
    every = [(p._bits(ix), sum(c.options[i].loss for c, i in zip(p.costs, ix)))
             for ix in itertools.product(*(range(s) for s in sizes))]
    for state in p.path():
        bits, loss = p._bits(state), sum(c.options[i].loss for c, i in zip(p.costs, state))
        best = min(l for b, l in every if b <= bits + 1e-9)
        assert loss <= best + 1e-9
        got = p.allocate(bits / p.elements)  # allocate at that budget: at least as good
        assert p._bits(got) <= bits + 1e-6
        assert sum(c.options[i].loss for c, i in zip(p.costs, got)) <= loss + 1e-9


def test_allocate_respects_the_budget_and_refuses_an_impossible_one(rng):
    p = _synthetic_planner(rng)
    for bpw in np.linspace(p.min_bpw(), 17, 12):
        assert p._bits(p.allocate(bpw)) <= bpw * p.elements + 1e-6
    with pytest.raises(RangeError):
        p.allocate(p.min_bpw() - 0.01)


def test_groups_cover_every_tensor_once():
    names = ["token_embd.weight"] + [f"blk.{i}.{k}.weight" for i in range(30)
                                     for k in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
    groups = make_groups(names)
    assert len(groups) <= plan_module.MAX_GROUPS
    flat = [n for g in groups for n in g.tensors]
    assert sorted(flat) == sorted(names)
    # one kind per group, layers contiguous
    for g in groups:
        assert len({n.split(".")[-2] for n in g.tensors}) == 1
    assert [g.tensors for g in make_groups(names[:10])] == [[n] for n in names[:10]]  # small models: per tensor


def test_candidates_follow_the_format_table():
    got = candidates()
    labels = {c.label for c in got}
    assert "f16" in labels and "q8/32" in labels and "q4/128" in labels and "q4a/64" in labels
    assert not any(c.dtype in ("f32", "bf16") for c in got)
    assert {c.dtype for c in got} == {f for f in pyrt.formats.FORMATS if f not in ("f32", "bf16")}
    assert Candidate("q4", 64).rule("a.b[0]") == r"^a\.b\[0\]$=q4:64"
    assert Candidate("f16").rule("x") == "^x$=f16"


@pytest.mark.parametrize("text,metric,value,higher", [("cos=0.99", "cos_mean", 0.99, True),
                                                      ("cosmin=0.97", "cos_min", 0.97, True),
                                                      ("ppl=2%", "ppl_increase_pct", 2.0, False),
                                                      ("kl=0.05", "kl", 0.05, False), ("top1=0.9", "top1", 0.9, True)])
def test_quality_target_syntax(text, metric, value, higher):
    t = parse_quality_target(text)
    assert (t.metric, t.value, t.higher_is_better) == (metric, value, higher)
    assert t.met({metric: value})


@pytest.mark.parametrize("text", ["cos", "cos=1.5", "bleu=3", "ppl=abc", "kl=-1", ""])
def test_bad_quality_targets_are_refused(text):
    with pytest.raises(DtypeError):
        parse_quality_target(text)


# ---- the real model --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_planner():
    model = SourceModel.load(MINILM)
    return Planner(model, default_calibration_texts(), candidate_list=TEST_CANDIDATES, probe_size=TEST_PROBE)


def _uniform_default_rules(model: SourceModel, dtype: str) -> dict[str, Candidate]:
    """What `pyrt convert --dtype DTYPE` stores (embeddings q8 for q-formats)."""
    out = {}
    for name in model.plannable():
        c = choose(name, model.arrays[name].shape, dtype, 32)
        out[name] = Candidate(c.dtype, c.block)
    return out


@needs_minilm
def test_plan_beats_uniform_formats_at_the_same_bits_on_evaluation_text(minilm_planner):
    p = minilm_planner
    evaluation = make_probe("encoder", p.model.build(p.reference), evaluation_sentences())
    assert not set(evaluation.sentences) & set(default_calibration_texts())
    n = p.elements
    for dtype in ("q4", "q4a"):
        for uniform in ({name: Candidate(dtype, 32) for name in p.model.plannable()},
                        _uniform_default_rules(p.model, dtype)):
            bits = (p.fixed_bits + sum(c.bits * p.model.arrays[name].size for name, c in uniform.items())) / n
            plan = p.for_bpw(bits)
            assert plan.bits_per_weight <= bits + 1e-9
            got, base = p.measure(plan.choice, evaluation), p.measure(uniform, evaluation)
            assert got["cos_mean"] > base["cos_mean"], (dtype, bits, got, base)
            assert got["cos_min"] > base["cos_min"], (dtype, bits, got, base)


@needs_minilm
def test_quality_target_gives_the_smallest_plan_that_meets_it(minilm_planner):
    p = minilm_planner
    target = parse_quality_target("cos=0.995")
    plan = p.for_quality(target)
    assert target.met(plan.calibration) and plan.calibration == p.measure(plan.choice)
    looser = p.for_quality(parse_quality_target("cos=0.98"))
    assert looser.bits_per_weight <= plan.bits_per_weight
    with pytest.raises(DtypeError):
        p.for_quality(parse_quality_target("ppl=2%"))  # a decoder target for an encoder


@needs_minilm
def test_convert_with_target_bpw_stores_the_plan_and_the_accuracy(tmp_path, monkeypatch):
    """Also: the user's --rule wins over the plan."""
    monkeypatch.setattr(plan_module, "CALIBRATION_SENTENCES", TEST_PROBE)
    monkeypatch.setattr(plan_module, "DEFAULT_BLOCKS", (32, 128))
    out = tmp_path / "mixed.pyrt"
    report = convert_checkpoint(MINILM, out, target_bpw=6.0, report=tmp_path / "r.json",
                                rules=["position_embeddings=q8:64"])
    with pyrt.load(out) as m:
        stored = m.metadata["report"]
        sizes = {n: t.nbytes for n, t in m.tensors.items()}
        elements = {n: int(np.prod(t.shape)) for n, t in m.tensors.items()}
    assert 8 * sum(sizes.values()) / sum(elements.values()) <= 6.0 + 1e-9
    assert stored["totals"]["bits_per_weight"] <= 6.0 + 1e-9
    acc = stored["accuracy"]
    assert acc["measured"] and acc["plan"]["bits_per_weight"] <= 6.0 + 1e-9
    assert acc["calibration"]["items"] == len(default_calibration_texts())
    assert acc["metrics"]["cos_mean"] > 0.98
    rows = {r["name"]: r for r in stored["tensors"]}
    planned = [r for r in rows.values() if r["sensitivity"] is not None]
    assert planned and all(r["bits_per_weight"] == pytest.approx(8 * r["bytes"] / r["elements"]) for r in rows.values())
    assert len({r["format"] + str(r["block"]) for r in planned}) > 1  # mixed, not uniform
    assert (rows["embeddings.position_embeddings.weight"]["format"], rows["embeddings.position_embeddings.weight"]["block"]) \
        == ("q8", 64)
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"]["metrics"] == report["accuracy"]["metrics"]
    # the plan is chosen with searched scales; its matmul weights in q-formats are written by GPTQ
    gptq = [r["name"] for r in rows.values() if r["note"].endswith("GPTQ")]
    assert gptq and all(rows[n]["format"] in ("q8", "q4", "q4a", "q4n", "q5") for n in gptq)
    assert stored["totals"] and report["calibration"]["gptq"].startswith(f"{len(gptq)} tensors (the plan")


def test_target_on_a_model_pyrt_cannot_run_is_refused(tmp_path, rng):
    src = tmp_path / "w.npz"
    np.savez(src, **{"layer.weight": rng.standard_normal((8, 32)).astype(np.float32)})
    with pytest.raises(pyrt.UnsupportedError):
        convert_checkpoint(src, tmp_path / "o.pyrt", target_bpw=6.0)
    report = convert_checkpoint(src, tmp_path / "o.pyrt", accuracy=True)  # the report says why it is absent
    assert report["accuracy"]["measured"] is False and "architecture" in report["accuracy"]["reason"]
