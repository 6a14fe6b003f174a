"""LanguageModel.create_completion / create_chat_completion: OpenAI dict and chunk shapes, usage,
finish reasons, stop strings, logprobs against a float64 log-softmax of the model's own logits,
streaming equal to the non-streamed result, cancellation on close, typed errors, and 4 threads
against the serial results. Runs a 2-layer SmolLM2 (real vocabulary and template)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import pyrt

from helpers import smollm2_first_layers

pytest.importorskip("gguf", reason="reading the GGUF model needs the 'gguf' package")
pytest.importorskip("tokenizers", reason="the LLM tokenizer needs the 'tokenizers' package")
pytest.importorskip("jinja2", reason="chat templates need jinja2")

MESSAGES = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def model():
    return smollm2_first_layers(2, context_length=128)


def test_completion_shape_matches_generate(model):
    out = model.create_completion("The cat sat on the", max_tokens=10, temperature=0, model="smol")
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-") and out["model"] == "smol"
    assert isinstance(out["created"], int)
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["text"] == model.generate("The cat sat on the", max_new_tokens=10)
    usage = out["usage"]
    assert usage["prompt_tokens"] == len(model.tokenizer.encode("The cat sat on the"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert choice["finish_reason"] == ("length" if usage["completion_tokens"] == 10 else "stop")


def test_stop_strings_are_cut_and_reported(model):
    full = model.create_completion("The cat sat on the", max_tokens=12, temperature=0)["choices"][0]["text"]
    stop = full[3:6]
    out = model.create_completion("The cat sat on the", max_tokens=12, temperature=0, stop=[stop, "zzzz"])
    assert out["choices"][0]["text"] == full[:full.index(stop)]
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] < 12
    chunks = model.create_completion("The cat sat on the", max_tokens=12, temperature=0, stop=stop, stream=True)
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    assert streamed == full[:full.index(stop)]


def test_chat_completion_and_stream_agree(model):
    out = model.create_chat_completion(MESSAGES, max_tokens=16, temperature=0)
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    message = out["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] == model.generate(MESSAGES, max_new_tokens=16)
    chunks = list(model.create_chat_completion(MESSAGES, max_tokens=16, temperature=0, stream=True,
                                               stream_options={"include_usage": True}))
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == message["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == out["choices"][0]["finish_reason"]
    assert chunks[-2]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == out["usage"]
    assert all(c["usage"] is None for c in chunks[:-1])


def test_closing_a_stream_cancels_the_request(model):
    stream = model.create_chat_completion(MESSAGES, max_tokens=40, temperature=0, stream=True)
    next(stream), next(stream)
    generation = stream._generation
    stream.close()
    produced = generation.completion_tokens
    with pytest.raises(StopIteration):
        next(stream)
    assert produced < 40 and generation.completion_tokens == produced
    # the model serves the next request normally
    assert model.create_chat_completion(MESSAGES, max_tokens=16, temperature=0)["choices"][0]["message"]["content"] \
        == model.generate(MESSAGES, max_new_tokens=16)


def test_logprobs_match_float64_log_softmax(model):
    out = model.create_chat_completion(MESSAGES, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    entries = out["choices"][0]["logprobs"]["content"]
    assert len(entries) == out["usage"]["completion_tokens"]
    logits = model.prefill(model.encode_prompt(MESSAGES)).astype(np.float64)
    log_p = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
    first = entries[0]
    assert first["logprob"] == pytest.approx(log_p.max(), abs=1e-4)  # greedy: the most likely token
    assert [a["logprob"] for a in first["top_logprobs"]] == pytest.approx(np.sort(log_p)[::-1][:3], abs=1e-4)
    assert first["token"] == first["top_logprobs"][0]["token"] and bytes(first["bytes"]).decode() == first["token"]
    assert "".join(e["token"] for e in entries) == out["choices"][0]["message"]["content"]
    comp = model.create_completion("The cat sat on the", max_tokens=5, temperature=0, logprobs=2)
    lp = comp["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) \
        == comp["usage"]["completion_tokens"]
    assert "".join(lp["tokens"]) == comp["choices"][0]["text"]
    assert all(len(alts) == 2 and max(alts.values()) == pytest.approx(v, abs=1e-6)
               for alts, v in zip(lp["top_logprobs"], lp["token_logprobs"]))


def test_sampled_requests_are_seeded(model):
    kw = dict(max_tokens=12, temperature=1.0, top_p=0.9, min_p=0.02, presence_penalty=0.5, seed=5)
    a = model.create_chat_completion(MESSAGES, **kw)["choices"][0]["message"]["content"]
    assert a == model.create_chat_completion(MESSAGES, **kw)["choices"][0]["message"]["content"]
    others = {model.create_chat_completion(MESSAGES, **{**kw, "seed": s})["choices"][0]["message"]["content"]
              for s in range(3)}
    assert len(others | {a}) > 1


def test_text_content_parts_are_joined(model):
    text_parts = [{"type": "text", "text": "Name three "}, {"type": "text", "text": "colours."}]
    parts = [{"role": "user", "content": text_parts}]
    a = model.create_chat_completion(parts, max_tokens=6, temperature=0)
    b = model.create_chat_completion(MESSAGES, max_tokens=6, temperature=0)
    assert a["choices"] == b["choices"] and a["usage"] == b["usage"]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    with pytest.raises(pyrt.UnsupportedError):
        model.create_chat_completion(image)


def test_token_prompt_and_echo(model):
    ids = model.tokenizer.encode("The cat sat on the")
    a = model.create_completion(ids, max_tokens=5, temperature=0)
    b = model.create_completion("The cat sat on the", max_tokens=5, temperature=0, echo=True)
    assert b["choices"][0]["text"] == "The cat sat on the" + a["choices"][0]["text"]
    assert model.create_completion("x", max_tokens=0)["choices"][0] == {
        "text": "", "index": 0, "logprobs": None, "finish_reason": "length"}


def test_threads_match_serial_results(model):
    prompts = [[{"role": "user", "content": f"Count to {n}."}] for n in range(2, 6)]
    serial = [model.create_chat_completion(p, max_tokens=10, temperature=0)["choices"][0]["message"]["content"]
              for p in prompts]
    results, errors = [None] * len(prompts), []

    def work(i):
        try:
            for _ in range(2):
                out = model.create_chat_completion(prompts[i], max_tokens=10, temperature=0)
                results[i] = out["choices"][0]["message"]["content"]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == serial


@pytest.mark.parametrize("call, error", [
    (lambda m: m.create_chat_completion(MESSAGES, n=2), pyrt.ArgumentError),
    (lambda m: m.create_chat_completion(MESSAGES, frobnicate=True), pyrt.ArgumentTypeError),
    (lambda m: m.create_chat_completion([{"content": "x"}]), pyrt.ArgumentError),
    (lambda m: m.create_chat_completion(None), pyrt.ArgumentTypeError),
    (lambda m: m.create_chat_completion(MESSAGES, max_tokens=1.5), pyrt.ArgumentTypeError),
    (lambda m: m.create_chat_completion(MESSAGES, temperature=3e3), pyrt.RangeError),
    (lambda m: m.create_chat_completion(MESSAGES, stream="yes"), pyrt.ArgumentTypeError),
    (lambda m: m.create_chat_completion(MESSAGES, top_logprobs=2), pyrt.ArgumentError),
    (lambda m: m.create_chat_completion(MESSAGES, tools="f"), pyrt.ArgumentTypeError),
    (lambda m: m.create_completion(None), pyrt.ArgumentTypeError),
    (lambda m: m.create_completion("x", logprobs=9), pyrt.RangeError),
    (lambda m: m.create_completion([10**7]), pyrt.RangeError),
    (lambda m: m.create_completion("x " * 200), pyrt.RangeError),  # longer than the context
    (lambda m: m.create_completion("x", best_of=3), pyrt.ArgumentError),
])
def test_errors_are_typed(model, call, error):
    with pytest.raises(error) as info:
        call(model)
    assert isinstance(info.value, pyrt.PyrtError)
