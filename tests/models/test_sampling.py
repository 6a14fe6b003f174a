"""pyrt.sampling.Sampler against a float64 reference of every step (penalties, logit bias,
temperature, top-k, top-p, min-p), seeded reproducibility, draw frequencies, logprobs, and the typed
errors of pyrt.generation_options. No model needed."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.generation_options import check_messages, check_prompt, parse_generation_options
from pyrt.sampling import Sampler


def reference_logits(logits, prompt, generated, o):
    """Bias, then the repetition penalty (prompt and generated ids), then frequency/presence."""
    z = logits.astype(np.float64).copy()
    for t, b in o.logit_bias.items():
        z[t] += b
    if o.repetition_penalty != 1.0:
        for t in set(prompt) | set(generated):
            z[t] = z[t] / o.repetition_penalty if z[t] > 0 else z[t] * o.repetition_penalty
    for t in set(generated):
        z[t] -= generated.count(t) * o.frequency_penalty + o.presence_penalty
    return z


def reference_distribution(z, o):
    """{token: probability}: softmax(z / T), then top_k, then top_p (on the top-k renormalized
    distribution), then min_p (relative to the most likely token); ties by smaller id."""
    z = np.asarray(z, dtype=np.float64)
    order = sorted(range(len(z)), key=lambda i: (-z[i], i))
    p = np.exp((z[order] - z[order[0]]) / o.temperature)
    if o.top_k:
        order, p = order[:o.top_k], p[:o.top_k]
    p = p / p.sum()
    n = len(p)
    if o.top_p < 1.0:
        cum = 0.0
        for i, q in enumerate(p):
            cum += q
            if cum >= o.top_p:
                n = i + 1
                break
    if o.min_p > 0.0:
        n = min(n, sum(1 for q in p if q >= o.min_p * p[0]))
    p = p[:n] / p[:n].sum()
    return dict(zip(order[:n], p))


CASES = [
    dict(temperature=1.0, top_k=40),
    dict(temperature=0.7, top_p=0.9),
    dict(temperature=0.8, top_p=0.95, top_k=100),
    dict(temperature=1.3, min_p=0.05),
    dict(temperature=0.9, top_p=0.8, min_p=0.02),
    dict(temperature=2.0, top_k=7, min_p=0.1),
    dict(temperature=1.0, top_p=0.999),  # a nucleus far down the tail: several threshold passes
    dict(temperature=0.5, top_k=3000),   # more candidates than the first spans hold
]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("vocab", [1000, 49152])
def test_distribution_matches_float64_reference(rng, case, vocab):
    logits = (rng.standard_normal(vocab) * 3.0).astype(np.float32)
    o = parse_generation_options(vocab, **case)
    ids, p = Sampler(o, vocab).distribution(logits)
    want = reference_distribution(logits, o)
    if ids is None:  # no filter removes anything: relative weights of the whole vocabulary
        assert len(want) == vocab
        ids, p = np.arange(vocab), p / p.sum(dtype=np.float64)
    else:
        assert np.all(np.diff(p) <= 0)  # most likely first
    # The same set, except where float32 weights move a top-p cut deep in the tail (top_p=0.999):
    # then only tokens of negligible mass may differ.
    x = logits.astype(np.float64) / o.temperature
    full = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    differ = set(ids.tolist()) ^ set(want)
    assert full[list(differ)].sum() < 2e-6 if differ else True
    common = [i for i in ids.tolist() if i in want]
    got = dict(zip(ids.tolist(), p))
    np.testing.assert_allclose([got[i] for i in common], [want[i] for i in common], rtol=5e-5, atol=1e-9)


def test_penalties_and_bias_match_reference(rng):
    vocab = 3000
    logits = (rng.standard_normal(vocab) * 2.0).astype(np.float32)
    prompt = rng.integers(0, vocab, 40).tolist()
    generated = rng.integers(0, vocab, 25).tolist() + [7, 7, 7]
    o = parse_generation_options(vocab, temperature=1.0, repetition_penalty=1.3, frequency_penalty=0.5,
                                 presence_penalty=0.7, logit_bias={"5": 3.5, 9: -100})
    sampler = Sampler(o, vocab, prompt)
    sampler.processed_logits(logits, generated[:10])  # the counts grow incrementally
    z = sampler.processed_logits(logits, generated)
    np.testing.assert_allclose(z, reference_logits(logits, prompt, generated, o), rtol=1e-6, atol=1e-5)
    assert not np.shares_memory(z, logits)
    plain = Sampler(parse_generation_options(vocab, temperature=1.0), vocab)
    assert plain.processed_logits(logits, generated) is logits  # nothing to apply: no copy


def test_greedy_is_argmax_after_bias(rng):
    logits = rng.standard_normal(5000).astype(np.float32)
    sampler = Sampler(parse_generation_options(5000), 5000)
    assert sampler(logits, [])[0] == int(np.argmax(logits))
    second = int(np.argsort(-logits)[1])
    biased = Sampler(parse_generation_options(5000, logit_bias={second: 100.0}), 5000)
    assert biased(logits, [])[0] == second


@pytest.mark.parametrize("case", [dict(temperature=0.9), dict(temperature=1.0, top_k=4),
                                  dict(temperature=1.0, top_p=0.6)])
def test_draw_frequencies_follow_the_distribution(rng, case):
    # 600 tokens: the whole-vocabulary draw crosses its 256-token blocks.
    logits = (rng.standard_normal(600) * 1.5).astype(np.float32)
    logits[[3, 300, 599]] += 4.0
    o = parse_generation_options(600, seed=11, **case)
    want = reference_distribution(logits.astype(np.float64), o)
    sampler = Sampler(o, 600)
    n = 40000
    counts = np.bincount([sampler(logits, [])[0] for _ in range(n)], minlength=600) / n
    assert set(np.flatnonzero(counts)) <= set(want)
    expected = np.zeros(600)
    expected[list(want)] = list(want.values())
    assert np.abs(counts - expected).max() < 4.5 * np.sqrt(expected.max() / n)


def test_seeded_reproducibility(rng):
    logits = (rng.standard_normal(49152) * 3).astype(np.float32)
    o = parse_generation_options(49152, temperature=0.8, top_p=0.95, seed=1234)
    a = [Sampler(o, 49152)(logits, [])[0] for _ in range(3)]
    s1, s2 = Sampler(o, 49152), Sampler(o, 49152)
    run1 = [s1(logits, [])[0] for _ in range(30)]
    run2 = [s2(logits, [])[0] for _ in range(30)]
    assert run1 == run2 and len(set(run1)) > 1 and len(set(a)) == 1
    other = Sampler(parse_generation_options(49152, temperature=0.8, top_p=0.95, seed=99), 49152)
    assert [other(logits, [])[0] for _ in range(30)] != run1


def test_logprobs_match_float64_log_softmax(rng):
    logits = (rng.standard_normal(4000) * 4).astype(np.float32)
    o = parse_generation_options(4000, temperature=1.0, top_k=20, logprobs=True, top_logprobs=5,
                                 repetition_penalty=1.5)
    token, info = Sampler(o, 4000, prompt_ids=[1, 2, 3])(logits, [])
    x = logits.astype(np.float64)
    log_p = x - (x.max() + np.log(np.exp(x - x.max()).sum()))
    assert info.logprob == pytest.approx(log_p[token], abs=1e-5)
    best = np.argsort(-x)[:5]
    assert [t for t, _ in info.top_logprobs] == best.tolist()
    np.testing.assert_allclose([lp for _, lp in info.top_logprobs], log_p[best], atol=1e-5)
    assert Sampler(parse_generation_options(4000), 4000)(logits, [])[1].logprob is None


def test_masked_tokens_are_never_drawn(rng):
    class EvenOnly:
        def mask(self, z):
            z[1::2] = -np.inf

        def accept(self, token):
            self.last = token

    logits = rng.standard_normal(2000).astype(np.float32)
    for case in (dict(), dict(temperature=1.0), dict(temperature=1.0, top_k=50), dict(temperature=1.0, top_p=0.9)):
        c = EvenOnly()
        sampler = Sampler(parse_generation_options(2000, seed=3, **case), 2000, constraint=c)
        tokens = [sampler(logits, [])[0] for _ in range(200)]
        assert all(t % 2 == 0 for t in tokens) and c.last == tokens[-1]


@pytest.mark.parametrize("bad, error", [
    (dict(max_new_tokens=None), pyrt.ArgumentTypeError), (dict(max_new_tokens=1.5), pyrt.ArgumentTypeError),
    (dict(max_new_tokens=-1), pyrt.RangeError), (dict(temperature=-0.1), pyrt.RangeError),
    (dict(temperature="hot"), pyrt.ArgumentTypeError), (dict(temperature=float("nan")), pyrt.RangeError),
    (dict(top_p=0.0), pyrt.RangeError), (dict(top_k=-2), pyrt.RangeError), (dict(min_p=1.5), pyrt.RangeError),
    (dict(frequency_penalty=3.0), pyrt.RangeError), (dict(repetition_penalty=0.0), pyrt.RangeError),
    (dict(logit_bias={"x": 1.0}), pyrt.ArgumentTypeError), (dict(logit_bias={10**6: 1.0}), pyrt.RangeError),
    (dict(logit_bias={5: 101.0}), pyrt.RangeError), (dict(seed=1.0), pyrt.ArgumentTypeError),
    (dict(stop=[1, 2]), pyrt.ArgumentTypeError), (dict(top_logprobs=21), pyrt.RangeError),
    (dict(response_format={"type": "xml"}), pyrt.ArgumentError), (dict(response_format="json"), pyrt.ArgumentTypeError),
    (dict(grammar=5), pyrt.ArgumentTypeError), (dict(frobnicate=1), pyrt.ArgumentTypeError),
])
def test_option_errors_are_typed(bad, error):
    with pytest.raises(error) as info:
        parse_generation_options(49152, **bad)
    assert isinstance(info.value, pyrt.PyrtError)
    assert isinstance(info.value, TypeError if error is pyrt.ArgumentTypeError else ValueError)


def test_prompt_and_message_errors_are_typed():
    with pytest.raises(pyrt.ArgumentTypeError):
        check_prompt(None)
    with pytest.raises(pyrt.ArgumentError, match="role"):
        check_messages([{"content": "hi"}])
    with pytest.raises(pyrt.ArgumentTypeError):
        check_messages([["user", "hi"]])
    with pytest.raises(pyrt.ArgumentError):
        check_messages([])
    with pytest.raises(pyrt.ArgumentTypeError):
        check_messages([{"role": "user", "content": 5}])
    assert check_prompt("text") == "text"
    assert check_messages([{"role": "assistant", "content": None, "tool_calls": [{}]}])
