"""One LanguageModel shared by several threads (issue 16: four threads used to get garbled text):
every thread gets exactly the answer it gets alone, whether it generates, streams, generates a batch
or scores perplexity, while the others run."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from llm_fixtures import smollm2_q4a  # noqa: F401 - fixture

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Name a fruit that is yellow."}],
    "The quick brown fox",
    "def add(a, b):",
    [{"role": "user", "content": "How many legs does a spider have?"}],
    "Water is made of hydrogen and",
    "My favourite season is",
    [{"role": "user", "content": "Say hello in Spanish."}],
]
# (prompt index, keyword arguments): greedy, sampled with a seed, and a stop string.
CALLS = [(i, {"max_new_tokens": 10}) for i in range(len(PROMPTS))] + [
    (2, {"max_new_tokens": 10, "temperature": 0.8, "top_p": 0.95, "seed": 3}),
    (6, {"max_new_tokens": 10, "temperature": 1.0, "top_k": 20, "seed": 11}),
    (0, {"max_new_tokens": 10, "stop": "."}),
]


def _run(model, how, index, kwargs):
    prompt = PROMPTS[index]
    if how == "stream":
        return "".join(model.stream(prompt, **kwargs))
    if how == "batch":
        return model.generate_batch([prompt, PROMPTS[(index + 1) % len(PROMPTS)]], **kwargs)[0]
    return model.generate(prompt, **kwargs)


@pytest.mark.parametrize("threads", [4, 8])
def test_threads_get_the_serial_answers(smollm2_q4a, threads):
    model = smollm2_q4a
    serial = [model.generate(PROMPTS[i], **kw) for i, kw in CALLS]
    assert all(isinstance(s, str) and s for s in serial)
    assert len(set(serial)) > len(PROMPTS) // 2  # different prompts, different answers
    jobs = [(how, i, kw) for how in ("generate", "stream", "batch") for i, kw in CALLS]
    with ThreadPoolExecutor(threads) as pool:
        got = list(pool.map(lambda job: _run(model, *job), jobs))
    for (how, i, kw), text in zip(jobs, got):
        assert text == serial[CALLS.index((i, kw))], (how, i, kw)


def test_generate_batch_equals_generate(smollm2_q4a):
    model = smollm2_q4a
    serial = [model.generate(p, max_new_tokens=8, temperature=0.7, seed=5) for p in PROMPTS]
    assert model.generate_batch(PROMPTS, max_new_tokens=8, temperature=0.7, seed=5) == serial
    assert model.generate_batch([]) == []
    with pytest.raises(TypeError):
        model.generate_batch("one prompt")


def test_default_sequence_calls_are_atomic_under_threads(smollm2_q4a):
    """perplexity, prefill and forward share the model's default sequence under a lock: each call
    gives its serial result while generations run on the engine."""
    model = smollm2_q4a
    texts = ["The Moon orbits the Earth once a month.", "Paris is the capital of France, on the Seine."]
    want = [model.perplexity(t) for t in texts]
    ids = model.tokenizer.encode(texts[0])
    model.reset()
    want_logits = [model.prefill(ids), model.prefill(ids)]  # a whole prefill, then one reusing the cache
    assert np.abs(want_logits[0] - want_logits[1]).max() < 1e-2  # (different summation orders)

    def score(k):
        if k % 3 == 2:
            return model.generate(PROMPTS[k % len(PROMPTS)], max_new_tokens=6)
        if k % 3 == 1:
            return model.prefill(ids)
        return model.perplexity(texts[k % 2])

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(score, range(12)))
    for k, value in enumerate(got):
        if k % 3 == 0:
            assert value == want[k % 2]
        elif k % 3 == 1:
            assert any((value == w).all() for w in want_logits)
