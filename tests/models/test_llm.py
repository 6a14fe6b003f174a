"""pyrt.LanguageModel on SmolLM2-135M-Instruct (GGUF): the C++ decoder against an independent float64
numpy forward (tests/llm_reference.py), KV-cache decoding against full recompute, the tokenizer
against llama.cpp's algorithm, perplexity per storage format, greedy chat, sampling and errors.
Skips when the model is not in <models_dir()>/smollm2 (tools/fetch_models.py puts it there)."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt.llm import sample_token


gguf = pytest.importorskip("gguf", reason="reading the GGUF model needs the 'gguf' package")
pytest.importorskip("tokenizers", reason="the LLM tokenizer needs the 'tokenizers' package")

from llm_reference import llama_cpp_bpe_tokenize, llama_logits  # noqa: E402
from llm_fixtures import smollm2_gguf  # noqa: E402

# A fixed English paragraph (written for these tests) for perplexity.
PARAGRAPH = (
    "The Moon is the only natural satellite of the Earth. It orbits our planet at an average distance "
    "of about 384,000 kilometres and takes roughly 27 days to complete one orbit. Because the Moon is "
    "tidally locked, the same side always faces the Earth. Its surface is covered with craters, "
    "mountains and wide dark plains that early astronomers mistook for seas. The gravity of the Moon "
    "raises the ocean tides, and its light has guided travellers and farmers for thousands of years."
)
# Tokens of the paragraph scored in the test (the full paragraph is scored by bench/bench_models_llm.py).
PERPLEXITY_TOKENS = 48

# f32, q8, q4 and q4a at block 32 run by default; the rest of the sweep is marked slow.
PERPLEXITY_FORMATS = [("f32", 32), ("q8", 32), ("q4", 32), ("q4a", 32)] + [
    pytest.param(f, b, marks=pytest.mark.slow) for f, b in (("f16", 32), ("q8", 64), ("q4", 64), ("q4a", 64))]
# Largest accepted perplexity change against f32 weights (either way: requantization noise can
# also lower the perplexity of a short text), the loss of requantizing the GGUF's Q4_1 weights.
PERPLEXITY_MAX_RATIO = {"f32": 1.0, "f16": 1.01, "q8": 1.05, "q4": 1.6, "q4a": 1.3}


_gguf_path = smollm2_gguf


@pytest.fixture(scope="module")
def gguf_parts():
    from pyrt.convert.readers.gguf_file import read_gguf

    return read_gguf(_gguf_path())


@pytest.fixture(scope="module")
def f32_model(gguf_parts):
    """f32 weights and an f32 KV cache: the decoder's arithmetic with nothing rounded on the way."""
    from pyrt.convert.readers.gguf_file import quantize_weights

    arrays, md = gguf_parts
    return pyrt.LanguageModel.from_parts(quantize_weights(arrays, "f32"), md, md, context_length=256, kv_cache="f32")


def _model(gguf_parts, fmt, block, context_length=256, embedding_dtype=None):
    from pyrt.convert.readers.gguf_file import quantize_weights

    arrays, md = gguf_parts
    return pyrt.LanguageModel.from_parts(quantize_weights(arrays, fmt, block, embedding_dtype), md, md,
                                         context_length=context_length)


REFERENCE_PROMPT = "The quick brown fox jumps over the lazy dog near 42 rivers."


def test_logits_match_float64_reference(gguf_parts, f32_model):
    arrays, md = gguf_parts
    ids = f32_model.tokenizer.encode(REFERENCE_PROMPT)
    assert len(ids) >= 12
    f32_model.reset()
    got = f32_model.forward(ids, all_logits=True)
    assert got.shape == (len(ids), len(md["tokenizer.ggml.tokens"])) and got.dtype == np.float32
    want = llama_logits(arrays, md, ids)
    err = np.abs(got - want).max()
    print(f"f32 weights, f32 KV: max |logit - float64 reference| = {err:.2e} (logit std {want.std():.2f})")
    assert err < 1e-3
    # The test can tell GGUF's interleaved rotary layout from a wrong one.
    wrong = llama_logits(arrays, md, ids, rope_style="interleaved")
    assert np.abs(wrong - want).max() > 1000 * 1e-3


def test_fp16_kv_cache_logits_match_reference(gguf_parts, f32_model):
    # The default FP16 cache: compared with a reference that rounds K/V to FP16 too. The bound is
    # looser because K values that sit on an FP16 rounding boundary round differently after f32
    # and float64 arithmetic (a float32 numpy forward shows the same ~5e-3 spread).
    arrays, md = gguf_parts
    model = pyrt.LanguageModel.from_parts(f32_model._tensors, md, md, context_length=64)
    ids = model.tokenizer.encode(REFERENCE_PROMPT)
    got = model.forward(ids, all_logits=True)
    want = llama_logits(arrays, md, ids, fp16_kv=True)
    err = np.abs(got - want).max()
    print(f"f32 weights, f16 KV: max |logit - float64 reference| = {err:.2e}")
    assert err < 5e-2
    assert np.array_equal(np.argmax(got, axis=1), np.argmax(want, axis=1))


def test_kv_cache_decoding_matches_recompute(f32_model):
    ids = f32_model.tokenizer.encode("Water boils at 100 degrees Celsius, and")
    f32_model.reset()
    full = f32_model.forward(ids, all_logits=True)
    f32_model.reset()
    split = 5
    steps = [f32_model.forward(ids[:split])] + [f32_model.forward([t]) for t in ids[split:]]
    err = np.abs(np.stack(steps) - full[split - 1:]).max()
    print(f"KV-cache decoding vs full recompute: max |diff| = {err:.2e}")
    assert err < 1e-4
    # reset + reuse: the same prompt again gives bit-identical logits (same kernels, same order);
    # against the all-positions head (a GEMM instead of a GEMV) only FP32 rounding differs.
    f32_model.reset()
    first = f32_model.forward(ids)
    f32_model.reset()
    np.testing.assert_array_equal(f32_model.forward(ids), first)
    np.testing.assert_allclose(first, full[-1], rtol=0, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 3])
def test_logits_independent_of_thread_count(gguf_parts, threads):
    """The step runs in one parallel region split over the team (rows, heads, weight-row groups);
    every output element is still computed by one thread in one order, so any team size gives
    bit-identical logits, for prefill (GEMM + chunked attention) and single-token decoding."""
    model = _model(gguf_parts, "q4a", 32)
    ids = model.tokenizer.encode("Water boils at 100 degrees Celsius, and " * 18)
    assert 128 < len(ids) < 250  # more than one attention query chunk, within the context
    previous = pyrt.get_num_threads()
    try:
        runs = []
        for t in (2, threads):
            pyrt.set_num_threads(t)
            model.reset()
            prefill = model.forward(ids, all_logits=True)
            decode = [model.forward([i]) for i in ids[:4]]
            runs.append((prefill, np.stack(decode)))
    finally:
        pyrt.set_num_threads(previous)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_prefix_reuse_gives_same_logits(f32_model):
    tok = f32_model.tokenizer
    a = tok.encode("Alice has three apples and Bob has two")
    b = tok.encode("Alice has three apples and Bob has five pears")
    f32_model.reset()
    want = f32_model.forward(b)
    f32_model.reset()
    f32_model.prefill(a)
    got = f32_model.prefill(b)  # truncates the cache to the shared prefix, runs the rest
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


CHECK_TEXTS = [
    "Hello world! It's 2024, isn't it?",
    "  leading spaces,\ttabs\nand\n\nnewlines   ",
    "Prices: $1,234.56 (approx.) -- 3.14159 and 1e-5",
    "Unicode: café, naïve, 東京, Ελληνικά, emoji 🙂!",
    "<|im_start|>user\nWhat's up?<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x**2  # square\n",
]


@pytest.mark.parametrize("text", CHECK_TEXTS)
def test_tokenizer_matches_llama_cpp_algorithm(gguf_parts, f32_model, text):
    _, md = gguf_parts
    pytest.importorskip("regex", reason="the reference tokenizer needs the 'regex' package")
    ids = f32_model.tokenizer.encode(text)
    assert ids == llama_cpp_bpe_tokenize(text, md)
    assert f32_model.tokenizer.decode(ids) == text.replace("<|im_start|>", "").replace("<|im_end|>", "")


@pytest.mark.parametrize("text", CHECK_TEXTS + ["What is the capital of France?"])
def test_tokenizer_matches_llama_cpp_itself(f32_model, text):
    """Same ids as llama.cpp's own tokenizer (llama-cpp-python, the optional bench peer; not in CI,
    where the transcription above checks the algorithm). Measured here: 8 of 8 texts identical."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (optional peer)")
    ref = llama_cpp.Llama(model_path=str(_gguf_path()), vocab_only=True, verbose=False)
    assert f32_model.tokenizer.encode(text) == ref.tokenize(text.encode(), add_bos=False, special=True)


def test_tokenizer_special_tokens_and_digits(gguf_parts, f32_model):
    _, md = gguf_parts
    tok = f32_model.tokenizer
    tokens = md["tokenizer.ggml.tokens"]
    assert tok.encode("<|im_start|>") == [tokens.index("<|im_start|>")] == [1]
    assert tok.encode("<|im_end|>") == [md["tokenizer.ggml.eos_token_id"]] == [2]
    assert md["tokenizer.ggml.eos_token_id"] in tok.end_of_generation
    digits = tok.encode("2024")
    assert [tokens[i] for i in digits] == ["2", "0", "2", "4"]  # llama.cpp's smollm "\p{N}" split
    assert [tokens[i] for i in tok.encode(" hello")] == ["Ġhello"]


def test_chat_template_renders_model_template(f32_model):
    text = f32_model.render_chat([{"role": "user", "content": "Hi"}])
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def chat_model(gguf_parts):
    # The public constructor on the .gguf with its defaults: q4a/32 holds the GGUF's Q4_1 layers
    # exactly and the embedding stays 8-bit, i.e. the model as shipped.
    model = pyrt.LanguageModel(_gguf_path(), context_length=256)
    assert model._tensors["blk.0.attn_q.weight"].dtype == "q4a"
    assert model._tensors["token_embd.weight"].dtype == "q8"
    return model


@pytest.fixture(scope="module")
def tiny_model(gguf_parts):
    """The first two layers only: a fast model with the real vocabulary for API behaviour tests."""
    from pyrt.convert.readers.gguf_file import quantize_weights

    arrays, md = gguf_parts
    keep = {k: v for k, v in arrays.items() if not k.startswith("blk.") or int(k.split(".")[1]) < 2}
    return pyrt.LanguageModel.from_parts(quantize_weights(keep, "q4", 32), {**md, "llama.block_count": 2}, md,
                                         context_length=128)


def test_greedy_chat_answers_paris(chat_model):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = chat_model.generate(messages, max_new_tokens=16, temperature=0)
    print("answer:", answer)
    assert "Paris" in answer
    # streaming yields the same text in pieces
    pieces = list(chat_model.stream(messages, max_new_tokens=16, temperature=0))
    assert len(pieces) > 1 and "".join(pieces) == answer


def test_stop_strings_and_limits(tiny_model):
    prompt = "The cat sat on the"
    full = tiny_model.generate(prompt, max_new_tokens=12)
    assert len(full) > 4
    stop = full[2:4]
    cut = tiny_model.generate(prompt, max_new_tokens=12, stop=[stop, "never appears"])
    assert cut == full[: full.index(stop)]
    assert "".join(tiny_model.stream(prompt, max_new_tokens=12, stop=stop)) == cut
    assert tiny_model.generate(prompt, max_new_tokens=0) == ""
    assert len(tiny_model.tokenizer.encode(tiny_model.generate(prompt, max_new_tokens=2))) <= 2
    with pytest.raises(pyrt.RangeError):
        tiny_model.generate(prompt, max_new_tokens=-1)


def test_generation_stops_at_full_context(gguf_parts, tiny_model):
    _, md = gguf_parts
    small = pyrt.LanguageModel.from_parts(tiny_model._tensors, {**md, "llama.block_count": 2}, md, context_length=16)
    prompt = "one two three four five"
    room = small.context_length - len(small.tokenizer.encode(prompt))
    assert room > 4
    small.generate(prompt, max_new_tokens=room + 50, temperature=1.0, top_k=5, seed=1)  # no error
    # generate runs on the model's engine (a KV cache per request): the same request there fills
    # the context, then stops with finish_reason "length" and without an error.
    from pyrt.llm import _TokenSampler

    request = small.engine.submit(small.tokenizer.encode(prompt), _TokenSampler(1.0, 5, seed=1), room,
                                  small.tokenizer.end_of_generation)
    assert len(list(request)) == room and request.finish_reason == "length"
    assert request.prompt_tokens + request.completion_tokens == small.context_length  # filled up


def test_sampling_is_seeded_and_varies(tiny_model):
    prompt = "Once upon a time"
    a = tiny_model.generate(prompt, max_new_tokens=12, temperature=1.0, top_k=50, top_p=0.95, seed=7)
    b = tiny_model.generate(prompt, max_new_tokens=12, temperature=1.0, top_k=50, top_p=0.95, seed=7)
    assert a == b and len(a) > 0
    others = {tiny_model.generate(prompt, max_new_tokens=12, temperature=1.0, seed=s) for s in range(3)}
    assert len(others | {a}) > 1


def test_sample_token_filters(rng):
    logits = rng.standard_normal(1000).astype(np.float32)
    top = set(np.argsort(-logits)[:5].tolist())
    draws = {sample_token(logits, rng, temperature=2.0, top_k=5) for _ in range(200)}
    assert draws <= top and len(draws) > 1
    best = int(np.argmax(logits))
    logits[best] += 20.0  # nearly all the mass on one token: top_p keeps only it
    assert {sample_token(logits, rng, temperature=1.0, top_p=0.5) for _ in range(50)} == {best}
    assert sample_token(logits, rng, temperature=0) == best
    for bad in ({"temperature": -1.0}, {"top_p": 0.0}, {"top_k": -2}):
        with pytest.raises(pyrt.RangeError):
            sample_token(logits, rng, **{"temperature": 1.0, **bad})


def test_errors_are_typed(gguf_parts, f32_model):
    arrays, md = gguf_parts
    with pytest.raises(pyrt.RangeError, match="outside the vocabulary"):
        f32_model.forward([0, 10**6])
    with pytest.raises(pyrt.RangeError, match="outside the vocabulary"):
        f32_model.forward([-1])
    f32_model.reset()
    with pytest.raises(pyrt.RangeError, match="context is full"):
        f32_model.forward([5] * (f32_model.context_length + 1))
    with pytest.raises(pyrt.RangeError):
        f32_model.prefill([5] * (f32_model.context_length + 1))
    with pytest.raises(pyrt.ShapeError):
        f32_model.prefill([])
    from pyrt.convert.readers.gguf_file import quantize_weights

    small = {k: v for k, v in arrays.items() if k.startswith(("token_embd", "output_norm", "blk.0."))}
    tensors = quantize_weights(small, "q4", 32)
    one_layer = {**md, "llama.block_count": 1}
    pyrt.LanguageModel.from_parts(tensors, one_layer, md, context_length=8)  # a valid 1-layer model
    missing = dict(tensors)
    del missing["blk.0.ffn_up.weight"]
    with pytest.raises(pyrt.FileFormatError, match="blk.0.ffn_up.weight"):
        pyrt.LanguageModel.from_parts(missing, one_layer, md, context_length=8)
    bad_norm = {**tensors, "blk.0.ffn_norm.weight": pyrt.quantize(arrays["blk.0.ffn_norm.weight"], "f16")}
    with pytest.raises(pyrt.DtypeError, match="ffn_norm"):
        pyrt.LanguageModel.from_parts(bad_norm, one_layer, md, context_length=8)
    with pytest.raises(pyrt.UnsupportedError):
        pyrt.LanguageModel.from_parts(tensors, {**one_layer, "general.architecture": "gpt2"}, md)
    with pytest.raises(pyrt.RangeError):
        pyrt.LanguageModel.from_parts(tensors, one_layer, md, context_length=10**6)
    with pytest.raises(pyrt.DtypeError, match="activations"):
        pyrt.LanguageModel.from_parts(tensors, one_layer, md, context_length=8, activations="int4")
    mixed = {**tensors, "blk.0.ffn_up.weight": pyrt.quantize(arrays["blk.0.ffn_up.weight"], "q8", block=64)}
    pyrt.LanguageModel.from_parts(mixed, one_layer, md, context_length=8)  # exact mode: any blocks
    with pytest.raises(pyrt.UnsupportedError, match="one block size"):
        pyrt.LanguageModel.from_parts(mixed, one_layer, md, context_length=8, activations="int8")


@pytest.mark.parametrize("n_tokens", [3, 40])  # one thread quantizes a few rows; a prefill splits them
def test_int8_non_finite_activations_raise_and_keep_the_cache(gguf_parts, n_tokens):
    from pyrt.convert.readers.gguf_file import quantize_weights

    arrays, md = gguf_parts
    small = {k: v for k, v in arrays.items() if k.startswith(("token_embd", "output_norm", "blk.0."))}
    tensors = quantize_weights(small, "q4", 32)
    # A finite norm weight that overflows the normalized activations to Inf.
    tensors["blk.0.attn_norm.weight"] = pyrt.quantize(np.full_like(arrays["blk.0.attn_norm.weight"], 3e38), "f32")
    model = pyrt.LanguageModel.from_parts(tensors, {**md, "llama.block_count": 1}, md, context_length=64,
                                          activations="int8")
    previous = pyrt.get_num_threads()
    try:
        pyrt.set_num_threads(2)
        with pytest.raises(pyrt.RangeError, match="NaN or Inf"):
            model.prefill(list(range(1, n_tokens + 1)))
    finally:
        pyrt.set_num_threads(previous)
    assert model._decoder.position == 0 and model._cached == []


def test_int8_activations_cost_little_perplexity(gguf_parts):
    """The opt-in int8-activation mode (docs/int8.md) on the GGUF's own bits: its perplexity stays
    within 3 % of the exact run of the same weights (measured -0.5 %); it is a different
    computation, not a copy of the exact one (the logits move by a few tenths)."""
    from pyrt.convert.readers.gguf_file import quantize_weights

    arrays, md = gguf_parts
    tensors = quantize_weights(arrays, "q4a", 32, "q8")
    exact = pyrt.LanguageModel.from_parts(tensors, md, md, context_length=256)
    int8 = pyrt.LanguageModel.from_parts(tensors, md, md, context_length=256, activations="int8")
    text = _perplexity_text(exact)
    ppl_exact, ppl_int8 = exact.perplexity(text), int8.perplexity(text)
    print(f"q4a/32+q8emb perplexity: exact {ppl_exact:.3f}, int8 activations {ppl_int8:.3f}")
    assert abs(ppl_int8 / ppl_exact - 1) < 0.03
    ids = exact.tokenizer.encode(REFERENCE_PROMPT)
    a, b = exact.forward(ids), int8.forward(ids)
    assert np.isfinite(b).all() and 1e-3 < np.abs(a - b).max() < 3.0
    assert np.argmax(a) == np.argmax(b)
    int8.reset()
    steps = [int8.forward([t]) for t in ids]  # the decode path (M = 1 kernels) runs too
    assert np.abs(steps[-1] - b).max() < 3.0


@pytest.fixture(scope="module")
def f32_perplexity(f32_model):
    return f32_model.perplexity(_perplexity_text(f32_model))


def _perplexity_text(model):
    return model.tokenizer.decode(model.tokenizer.encode(PARAGRAPH)[:PERPLEXITY_TOKENS])


@pytest.mark.parametrize("fmt,block", PERPLEXITY_FORMATS)
def test_perplexity_per_format(gguf_parts, f32_model, f32_perplexity, fmt, block):
    assert 1.0 < f32_perplexity < 30.0  # a 135M instruct model on plain English prose
    if fmt == "f32":
        ppl = f32_perplexity
    else:
        model = _model(gguf_parts, fmt, block)
        ppl = model.perplexity(_perplexity_text(model))
    print(f"perplexity {fmt}/{block}: {ppl:.3f} (f32 {f32_perplexity:.3f})")
    assert np.isfinite(ppl)
    ratio = PERPLEXITY_MAX_RATIO[fmt]
    assert f32_perplexity / ratio <= ppl <= f32_perplexity * ratio


def test_generate_command_arguments():
    import argparse

    from pyrt.cli import generate

    parser = argparse.ArgumentParser(prog="pyrt")
    generate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate", "m.gguf", "Hi there", "-n", "7", "-t", "0.5", "--stop", "X", "--stop", "Y",
                              "--raw"])
    assert (args.file, args.prompt, args.max_new_tokens, args.temperature) == ("m.gguf", "Hi there", 7, 0.5)
    assert args.stop == ["X", "Y"] and args.chat is False and args.func is generate.run


def test_converted_pyrt_file_runs_like_the_gguf(chat_model, tmp_path_factory):
    """pyrt-convert GGUF -> .pyrt (q4a, block 32, q8 embedding by default) -> LanguageModel: the same
    weights as the in-memory model, so the same logits bit for bit, and the same greedy answer."""
    from pyrt.convert import convert_checkpoint

    out = tmp_path_factory.mktemp("llm") / "smollm2-q4a.pyrt"
    convert_checkpoint(str(_gguf_path()), str(out), dtype="q4a", block=32)
    model = pyrt.LanguageModel(out, context_length=256)
    assert model._tensors["blk.0.attn_q.weight"].dtype == "q4a"
    for name, tensor in chat_model._tensors.items():
        np.testing.assert_array_equal(model._tensors[name].numpy(), tensor.numpy(), err_msg=name)
    ids = model.tokenizer.encode("The capital of France is")
    assert ids == chat_model.tokenizer.encode("The capital of France is")
    model.reset()
    chat_model.reset()
    np.testing.assert_array_equal(model.forward(ids), chat_model.forward(ids))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert "Paris" in model.generate(messages, max_new_tokens=16, temperature=0)
