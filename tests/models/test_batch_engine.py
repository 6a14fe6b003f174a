"""pyrt.batch_engine on SmolLM2-135M: batched decoding (one forward over several sequences, each with
its own KV cache) against each sequence decoded alone and against the float64 reference forward;
continuous batching (joining mid-batch), cancellation, full context and typed errors."""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import pyrt
from pyrt.batch_engine import BatchEngine, StepResult

from llm_fixtures import smollm2_f32, smollm2_parts, smollm2_q4a  # noqa: F401 - fixtures
from llm_reference import llama_logits

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Water boils at a temperature of",
    "Once upon a time, in a small village,",
    "The three primary colors are",
    "To make a cup of tea, first",
    "import numpy as np\nx =",
    "The largest planet in the solar system",
]


def greedy(logits, generated):
    assert not logits.flags.writeable and logits.dtype == np.float32
    return int(np.argmax(logits)), len(generated)


def decode_alone(model, ids, n):
    """Greedy ids from the model's own single-sequence forward (M = 1), outside the engine."""
    out = []
    logits = model.prefill(ids)
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = model.forward([out[-1]])
    return out


def ids_of(request):
    return [step.token_id for step in request]


def test_batched_greedy_equals_each_prompt_alone(smollm2_q4a):
    model = smollm2_q4a
    n = 12
    prompts = [model.tokenizer.encode(p) for p in PROMPTS]
    alone = [decode_alone(model, ids, n) for ids in prompts]
    engine = BatchEngine(model, max_batch=8)
    try:
        requests = [engine.submit(ids, greedy, n) for ids in prompts]
        got = [ids_of(r) for r in requests]
        sizes = engine.batch_sizes()
    finally:
        engine.close()
    assert got == alone
    assert all(r.finish_reason == "length" and r.completion_tokens == n for r in requests)
    assert [r.prompt_tokens for r in requests] == [len(p) for p in prompts]
    # The prompts really decoded together: most steps ran all eight sequences.
    assert sizes.get(8, 0) >= n - 2, sizes


def test_batched_logits_match_float64_reference(smollm2_parts, smollm2_f32):
    """The batched forward (M rows per weight product) against the float64 numpy forward, with the
    bound test_llm.py holds the single-sequence forward to (f32 weights, f32 KV cache). The
    products may sum in another order for M > 1 than for M = 1, so batched and single logits agree
    to float32 rounding, not bit for bit; the greedy ids agree on these prompts."""
    arrays, md = smollm2_parts
    model = smollm2_f32
    dec = model._decoder
    prompts = [model.tokenizer.encode(p) for p in PROMPTS[:4]]
    caches = [dec.new_cache(64) for _ in prompts]
    # One prefill call with all four prompts (different lengths), then decode steps with M = 4.
    tokens = np.concatenate([np.array(p, np.int32) for p in prompts])
    steps = [dec.forward_batch(tokens, np.array([len(p) for p in prompts], np.int64), caches)]
    seqs = [list(p) for p in prompts]
    for _ in range(3):
        nxt = [int(np.argmax(row)) for row in steps[-1]]
        for s, t in zip(seqs, nxt):
            s.append(t)
        steps.append(dec.forward_batch(np.array(nxt, np.int32), np.ones(len(nxt), np.int64), caches))
    assert [c.position for c in caches] == [len(s) for s in seqs]
    worst_ref = worst_single = 0.0
    for i, (prompt, seq) in enumerate(zip(prompts, seqs)):
        want = llama_logits(arrays, md, seq)  # [len, vocab], float64
        got = np.stack([step[i] for step in steps])  # rows at positions len(prompt)-1 ..
        positions = range(len(prompt) - 1, len(seq))
        worst_ref = max(worst_ref, float(np.abs(got - want[list(positions)]).max()))
        assert [int(np.argmax(r)) for r in got[:-1]] == seq[len(prompt):]
        model.reset()
        single = np.stack([model.forward(prompt)] + [model.forward([t]) for t in seq[len(prompt):]])
        worst_single = max(worst_single, float(np.abs(got - single).max()))
        assert (single.argmax(axis=1) == got.argmax(axis=1)).all()
    print(f"batched: max |logit - float64| = {worst_ref:.2e}; max |batched - single| = {worst_single:.2e}")
    assert worst_ref < 1e-3
    assert worst_single < 1e-3


def test_request_joins_a_running_batch(smollm2_q4a):
    model = smollm2_q4a
    a_ids, b_ids = (model.tokenizer.encode(p) for p in PROMPTS[:2])
    a_alone, b_alone = decode_alone(model, a_ids, 24), decode_alone(model, b_ids, 8)
    engine = BatchEngine(model)
    try:
        a = engine.submit(a_ids, greedy, 24)
        a_iter = iter(a)
        got_a = [next(a_iter).token_id for _ in range(6)]  # A is decoding ...
        b = engine.submit(b_ids, greedy, 8)  # ... when B arrives and joins it
        got_b = ids_of(b)
        got_a += [s.token_id for s in a_iter]
        sizes = engine.batch_sizes()
    finally:
        engine.close()
    assert got_a == a_alone and got_b == b_alone
    assert sizes.get(1, 0) >= 6 and sizes.get(2, 0) >= 6, sizes


def _consume(request, out, done):
    out.extend(ids_of(request))
    done.set()


def test_cancel_frees_the_slot(smollm2_q4a):
    model = smollm2_q4a
    ids = model.tokenizer.encode(PROMPTS[3])
    engine = BatchEngine(model, max_batch=1)  # one slot: B runs only once A's slot is free
    try:
        a = engine.submit(ids, greedy, 200)
        a_iter = iter(a)
        first = [next(a_iter).token_id for _ in range(3)]
        assert a.finish_reason is None and a.completion_tokens == 3
        b_out, b_done = [], threading.Event()
        b = engine.submit(ids, greedy, 5)
        threading.Thread(target=_consume, args=(b, b_out, b_done), daemon=True).start()
        assert not b_done.wait(0.5)  # waiting for the slot
        a.cancel()
        a.cancel()  # idempotent
        assert list(a_iter) == [] and a.finish_reason == "cancelled"
        assert b_done.wait(60) and b.finish_reason == "length"
        assert b_out == first + b_out[3:] and len(b_out) == 5  # the same greedy start
        # A request dropped unfinished cancels itself when garbage-collected, freeing its slot.
        dropped = engine.submit(ids, greedy, 200)
        next(iter(dropped))
        del dropped
        gc.collect()
        with engine.submit(ids, greedy, 3) as c:
            assert len(ids_of(c)) == 3 and c.finish_reason == "length"
    finally:
        engine.close()


def test_full_context_and_stop_tokens(smollm2_q4a):
    model = smollm2_q4a
    ids = model.tokenizer.encode(PROMPTS[0])
    room = model.context_length - len(ids)
    engine = model.engine
    full = engine.submit(ids, greedy, room)
    assert len(ids_of(full)) == room and full.finish_reason == "length"
    assert full.prompt_tokens + full.completion_tokens == model.context_length
    with pytest.raises(pyrt.RangeError, match="exceed the context"):
        engine.submit(ids, greedy, room + 1)
    first = decode_alone(model, ids, 3)
    stopped = engine.submit(ids, greedy, 10, stop_token_ids={first[2]})
    assert ids_of(stopped) == first[:2] and stopped.finish_reason == "stop"  # the stop id is not yielded
    none = engine.submit(ids, greedy, 0)
    assert ids_of(none) == [] and none.finish_reason == "length"


def test_errors_are_typed_and_per_request(smollm2_q4a):
    model = smollm2_q4a
    ids = model.tokenizer.encode(PROMPTS[0])
    vocab = model.config["vocab"]
    engine = BatchEngine(model)
    with pytest.raises(pyrt.ShapeError):
        engine.submit([], greedy, 4)
    with pytest.raises(pyrt.RangeError, match="outside the vocabulary"):
        engine.submit([1, vocab], greedy, 4)
    with pytest.raises(pyrt.RangeError):
        engine.submit(ids, greedy, -1)
    with pytest.raises(TypeError):
        engine.submit(ids, greedy, 2.5)
    with pytest.raises(TypeError):
        engine.submit("text", greedy, 2)
    with pytest.raises(TypeError):
        engine.submit(ids, None, 2)
    with pytest.raises(pyrt.RangeError):
        BatchEngine(model, max_batch=0)

    def fails_at_third(logits, generated):
        if len(generated) == 2:
            raise ValueError("sampler bug")
        return greedy(logits, generated)

    def typed_failure(logits, generated):
        raise pyrt.RangeError("no token allowed")

    good = engine.submit(ids, greedy, 6)
    bad = engine.submit(ids, fails_at_third, 6)
    typed = engine.submit(ids, typed_failure, 6)
    out_of_vocab = engine.submit(ids, lambda logits, generated: (vocab, None), 6)
    partial = []
    with pytest.raises(pyrt.InternalError, match="ValueError: sampler bug"):
        for step in bad:
            partial.append(step)
    assert len(partial) == 2 and all(isinstance(s, StepResult) for s in partial)
    assert [s.info for s in partial] == [0, 1]  # the sampler's info, handed back unchanged
    with pytest.raises(pyrt.RangeError, match="no token allowed"):
        list(typed)
    with pytest.raises(pyrt.RangeError, match="outside the vocabulary"):
        list(out_of_vocab)
    assert len(ids_of(good)) == 6 and good.finish_reason == "length"  # the others' errors end only them
    running = engine.submit(ids, greedy, 200)
    next(iter(running))
    engine.close()
    engine.close()  # idempotent
    assert running.finish_reason == "cancelled" and engine.closed
    with pytest.raises(pyrt.UnsupportedError, match="closed"):
        engine.submit(ids, greedy, 2)
