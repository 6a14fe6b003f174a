"""GGUF tokenizers (pyrt/gguf_tokenizer.py) on the real vocabularies of SmolLM2 (byte-level BPE,
"smollm"), Qwen2.5-Coder (byte-level BPE, "qwen2") and Gemma 3 (SentencePiece, 262,144 tokens):

- ids equal to llama.cpp's own tokenizer (llama-cpp-python, vocabulary only; skipped without it)
  on tricky texts, with and without control tokens parsed, and the same for the pre-tokenizers and
  flags these files lack (llama-bpe, gpt-2, default, starcoder; add_space_prefix, add_eos) on
  their vocabularies rewritten into vocabulary-only GGUF files; every token's bytes and the
  end-of-generation set equal llama.cpp's too;
- ids equal to transformers' own GGUF tokenizer loader where transformers and llama.cpp agree;
- round trips, typed one-line errors for unknown tokenizers, thread safety.
"""
from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import pytest

from pyrt.errors import ConfigError, FileFormatError, UnsupportedError
from pyrt.gguf_tokenizer import TOKEN_CONTROL, GGUFTokenizer
from pyrt.model_config import check_tokenizer_metadata

from helpers import LlamaCppVocabularies, model_gguf, model_gguf_keys

pytest.importorskip("tokenizers", reason="the LLM tokenizer needs the 'tokenizers' package")
gguf = pytest.importorskip("gguf", reason="reading GGUF headers needs the 'gguf' package")

MODELS = {"smollm2": "smollm2", "qwen2": "qwen2.5-coder-0.5b", "gemma3": "gemma3-270m"}

TRICKY = [
    "Hello world", " leading space", "   three leading", "", " ", "\n", "trailing   ", "\t\t", "a \t b",
    "  two  spaces   three\n\n\nnewlines\r\n\r\n", " \n \n", "x" + " " * 40 + "y", "line\n\n\n\n\n\n\n\n\n\nend",
    "日本語のテキスト、中文文本。한국어 텍스트", "مرحبا بالعالم، كيف حالك؟", "नमस्ते दुनिया", "สวัสดีชาวโลก",
    "emoji 😀👍🏽👨‍👩‍👧 🇫🇷 done", "combining e\u0301 a\u0300 n\u0303 \u0338 z\u0335\u0336", "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich",
    "digits 1234567890 3.14159 1,000,000 007", "numbers ٣٤٥ x ½ ² Ⅻ", "v1.2.3-rc4 0x1F 1e-9 -42",
    "def f(x):\n\tif x:\n\t\treturn x  \n    pass   \n\n\nclass A:\n        y = [1,2,3]  # trailing  \n",
    "I'm they're we've He'LL 'S it's", "rare \U0001F9FF \u2603 \U00010348 \ue000 \u0fff x", "\x00\x01\x7f\x1b[0m",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<|im_start|>system\nYou are<|im_end|>\n<|im_start|>user",
    "<|im_end|><|im_start|><|endoftext|>", "<unused5> <bos> </s> <eos> <pad>", "[multimodal] <mask>",
    "\u2581 literal \u2581\u2581", "<0x41> byte text <0xZZ>", "a" * 300,
    "The quick brown fox jumps over the lazy dog. " * 60 + "Fin.\n" + "Σὲ γνωρίζω ἀπὸ τὴν κόψη " * 20,
]
# Where transformers' GGUF loader and llama.cpp disagree, pyrt follows llama.cpp (tested above):
# "</s>" is a control token in Qwen's vocabulary (one of llama.cpp's end-of-generation texts);
# SmolLM2's "smollm" pre-tokenizer splits every \p{N} character (transformers keeps " ½" whole); a
# run of spaces longer than Gemma's longest space token splits longest-first; a literal U+2581 is
# text to llama.cpp.
NOT_AS_TRANSFORMERS = {"qwen2": {"<unused5> <bos> </s> <eos> <pad>"}, "smollm2": {"numbers ٣٤٥ x ½ ² Ⅻ"},
                       "gemma3": {"x" + " " * 40 + "y", "\u2581 literal \u2581\u2581"}}


def _gguf_path(model: str) -> Path:
    return model_gguf(MODELS[model])


def _metadata(model: str) -> dict:
    return model_gguf_keys(MODELS[model])


def _tokenizer(model: str) -> GGUFTokenizer:
    return GGUFTokenizer.from_metadata(_metadata(model))


# ---- llama.cpp (llama-cpp-python) ------------------------------------------------------------------
def _llama_cpp():
    return pytest.importorskip("llama_cpp", reason="comparing with llama.cpp needs llama-cpp-python")


@pytest.fixture(scope="module")
def llamas():
    vocabularies = LlamaCppVocabularies()
    yield vocabularies
    vocabularies.close()


def _llama_ids(llama, text: str, special: bool) -> list[int]:
    return llama.tokenize(text.encode("utf-8"), add_bos=True, special=special)


def _llama_vocab(llama):
    lc = _llama_cpp()
    return lc, lc.llama_model_get_vocab(llama.model)


def _write_vocab_gguf(path: Path, md: dict) -> Path:
    """A vocabulary-only GGUF (a one-block llama header, no tensors) with the tokenizer keys of ``md``."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model(md["tokenizer.ggml.model"])
    if "tokenizer.ggml.pre" in md:
        w.add_tokenizer_pre(md["tokenizer.ggml.pre"])
    w.add_token_list(md["tokenizer.ggml.tokens"])
    w.add_token_types(md["tokenizer.ggml.token_type"])
    if "tokenizer.ggml.merges" in md:
        w.add_token_merges(md["tokenizer.ggml.merges"])
    if "tokenizer.ggml.scores" in md:
        w.add_token_scores(md["tokenizer.ggml.scores"])
    for key, add in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                     ("unknown_token_id", w.add_unk_token_id), ("add_bos_token", w.add_add_bos_token),
                     ("add_eos_token", w.add_add_eos_token), ("add_space_prefix", w.add_add_space_prefix)):
        if f"tokenizer.ggml.{key}" in md:
            add(md[f"tokenizer.ggml.{key}"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _variant(model: str, drop=(), **keys) -> dict:
    """The model's tokenizer keys with some replaced (``keys`` without the tokenizer.ggml. prefix)."""
    md = {k: v for k, v in _metadata(model).items() if k.startswith("tokenizer.ggml.") and k[15:] not in drop}
    md.update({f"tokenizer.ggml.{k}": v for k, v in keys.items()})
    return md


# Vocabularies rewritten with a pre-tokenizer or flag their file lacks: (model, dropped keys, new keys).
VARIANTS = {
    "llama-bpe": ("smollm2", ("add_bos_token",), {"pre": "llama-bpe"}),  # Llama 3: ignore_merges, BOS by default
    "gpt-2": ("smollm2", (), {"pre": "gpt-2"}),
    "default": ("smollm2", (), {"pre": "default"}),
    "starcoder": ("smollm2", (), {"pre": "starcoder"}),
    "qwen2-on-smollm": ("smollm2", (), {"pre": "qwen2"}),
    "spm-space-prefix": ("gemma3", (), {"add_space_prefix": True, "add_eos_token": True}),
    "spm-defaults": ("gemma3", ("add_space_prefix", "add_bos_token", "add_eos_token"), {}),
}


@pytest.fixture(scope="module")
def variants(llamas, tmp_path_factory):
    """name -> (pyrt tokenizer, llama.cpp vocabulary) of a VARIANTS entry, built on first use."""
    built: dict = {}

    def get(name: str):
        _llama_cpp()
        if name not in built:
            model, drop, keys = VARIANTS[name]
            md = _variant(model, drop, **keys)
            path = _write_vocab_gguf(tmp_path_factory.mktemp("vocab") / f"{name}.gguf", md)
            built[name] = (GGUFTokenizer.from_metadata(md), llamas.get(path))
        return built[name]
    return get


@pytest.mark.parametrize("model", list(MODELS))
def test_ids_equal_llama_cpp(model, llamas):
    tok, llama = _tokenizer(model), llamas.get(_gguf_path(model))
    for text in TRICKY:
        assert tok.encode(text) == _llama_ids(llama, text, special=True), text
        assert tok.encode(text, parse_special=False) == _llama_ids(llama, text, special=False), text


@pytest.mark.parametrize("name", list(VARIANTS))
def test_other_pre_tokenizers_and_flags_equal_llama_cpp(name, variants):
    tok, llama = variants(name)
    for text in TRICKY:
        assert tok.encode(text) == _llama_ids(llama, text, special=True), text
        assert tok.encode(text, parse_special=False) == _llama_ids(llama, text, special=False), text


@pytest.mark.parametrize("name", ["spm-space-prefix", "qwen2-on-smollm"])
def test_decode_equals_llama_cpp_detokenize(name, variants):
    """Without llama.cpp's clean-up pass (off for these), decode is its detokenize: control tokens
    dropped and, with add_space_prefix, the first token's leading space removed."""
    tok, llama = variants(name)
    lc, vocab = _llama_vocab(llama)
    buf = ctypes.create_string_buffer(1 << 16)
    for text in TRICKY:
        for ids in (tok.encode(text), tok.encode(text, add_bos=False), tok.encode(text, parse_special=False)):
            arr = (lc.llama_token * max(len(ids), 1))(*ids)
            n = lc.llama_detokenize(vocab, arr, len(ids), buf, len(buf), False, False)
            assert tok.decode(ids) == buf.raw[:n].decode("utf-8", errors="replace"), text


@pytest.mark.parametrize("model", list(MODELS))
def test_token_bytes_and_end_of_generation_equal_llama_cpp(model, llamas):
    tok, llama = _tokenizer(model), llamas.get(_gguf_path(model))
    lc, vocab = _llama_vocab(llama)
    buf = ctypes.create_string_buffer(4096)
    for i in range(tok.vocab_size):
        n = lc.llama_token_to_piece(vocab, i, buf, len(buf), 0, False)
        assert tok.token_bytes(i) == buf.raw[:n], (i, tok.tokens[i])
    assert tok.end_of_generation == {i for i in range(tok.vocab_size) if lc.llama_vocab_is_eog(vocab, i)}


# ---- no llama.cpp needed ---------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_round_trip(model):
    """Byte-level BPE and SentencePiece with byte fallback (no space prefix) lose nothing: decoding
    the plain-text ids gives the text back, every character outside the vocabulary included (but
    SentencePiece's own space mark, U+2581, which it reads as a space, as llama.cpp does)."""
    tok = _tokenizer(model)
    for text in TRICKY:
        if tok.model == "llama" and "\u2581" in text:
            assert tok.decode(tok.encode(text, parse_special=False)) == text.replace("\u2581", " ")
        else:
            assert tok.decode(tok.encode(text, parse_special=False)) == text


@pytest.mark.parametrize("model, text, control", [
    ("gemma3", "<start_of_turn>user\nHi<end_of_turn>", ["<start_of_turn>", "<end_of_turn>"]),
    ("qwen2", "<|im_start|>user\nHi<|im_end|>", ["<|im_start|>", "<|im_end|>"]),
    ("smollm2", "<|im_start|>user\nHi<|im_end|>", ["<|im_start|>", "<|im_end|>"])])
def test_control_tokens_in_text(model, text, control):
    tok = _tokenizer(model)
    ids = tok.encode(text, add_bos=False)
    assert [tok.tokens[i] for i in ids if tok.token_types[i] == TOKEN_CONTROL] == control
    plain = tok.encode(text, add_bos=False, parse_special=False)
    assert not any(tok.token_types[i] == TOKEN_CONTROL for i in plain)
    assert tok.decode(plain) == text and tok.decode(ids) == text.replace(control[0], "").replace(control[1], "")


def test_gemma_vocabulary_facts():
    """Gemma 3: BOS added, no space prefix, byte fallback for characters outside the vocabulary,
    runs of newlines as their own tokens, end of turn ends a generation."""
    tok = _tokenizer("gemma3")
    assert tok.model == "llama" and tok.vocab_size == 262144 and tok.add_bos and not tok.add_space_prefix
    assert tok.encode("")[0] == tok.bos_id and tok.encode("") == [tok.bos_id]
    ids = tok.encode("\U00010348", add_bos=False)  # Gothic letter hwair: four <0xNN> tokens
    assert [tok.tokens[i] for i in ids] == ["<0xF0>", "<0x90>", "<0x8D>", "<0x88>"]
    assert tok.encode("\n\n\n", add_bos=False) == [tok.tokens.index("\n\n\n")]
    assert {tok.tokens.index("<end_of_turn>"), tok.eos_id} <= tok.end_of_generation


def test_built_tokenizer_is_cached_per_vocabulary():
    a, b = _tokenizer("qwen2"), _tokenizer("qwen2")
    assert a._tok._inner is b._tok._inner  # the second build reused the first
    other = GGUFTokenizer.from_metadata(_variant("qwen2", pre="llama-bpe"))
    assert other._tok._inner is not a._tok._inner


def test_concurrent_encodes_equal_serial():
    tok = _tokenizer("gemma3")
    expected = [tok.encode(t) for t in TRICKY]
    failures = []

    def work(k):
        for _ in range(5):
            for i in [*range(k, len(TRICKY)), *range(k)]:
                if tok.encode(TRICKY[i]) != expected[i]:
                    failures.append(i)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("model", list(MODELS))
def test_ids_equal_transformers_gguf_loader(model):
    """transformers reads the same GGUF with its own converter (about 10-50 s for these
    vocabularies: it rebuilds Gemma's merges in Python)."""
    transformers = pytest.importorskip("transformers")
    path = _gguf_path(model)
    hf = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok = _tokenizer(model)
    for text in TRICKY:
        if text not in NOT_AS_TRANSFORMERS[model]:
            assert tok.encode(text) == hf(text, add_special_tokens=True)["input_ids"], text


# ---- bad input ------------------------------------------------------------------------------------
def _tiny(**keys) -> dict:
    md = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"], "tokenizer.ggml.merges": ["a b"]}
    md.update({f"tokenizer.ggml.{k}": v for k, v in keys.items()})
    return {k: v for k, v in md.items() if v is not None}


@pytest.mark.parametrize("keys, match", [
    ({"model": "t5"}, r"tokenizer model 't5' \(tokenizer\.ggml\.model\)"),
    ({"model": "bert", "tokens": None}, r"tokenizer\.ggml\.model"),  # said before the vocabulary is read
    ({"model": None}, r"tokenizer\.ggml\.model"),
    ({"pre": "deepseek-llm"}, r"pre-tokenizer 'deepseek-llm' \(tokenizer\.ggml\.pre\)"),
    ({"pre": "chatglm-bpe", "merges": None}, r"tokenizer\.ggml\.pre")])
def test_unknown_tokenizer_is_one_line_unsupported_error(keys, match):
    for check in (check_tokenizer_metadata, GGUFTokenizer.from_metadata):
        with pytest.raises(UnsupportedError, match=match) as err:
            check(_tiny(**keys))
        assert "\n" not in str(err.value) and "supported:" in str(err.value)


@pytest.mark.parametrize("keys, error, match", [
    ({"model": "llama", "merges": None}, FileFormatError, "tokenizer.ggml.scores"),
    ({"model": "llama", "scores": [0.0, float("nan"), 1.0]}, ConfigError, "finite"),
    ({"model": "llama", "scores": [0.0, 1.0]}, ConfigError, "2 entries for 3 tokens"),
    ({"model": "llama", "scores": ["x", 1.0, 2.0]}, ConfigError, "tokenizer.ggml.scores"),
    ({"token_type": [1, 1]}, ConfigError, "tokenizer.ggml.token_type"),
    ({"merges": None}, FileFormatError, "tokenizer.ggml.merges"),
    ({"add_space_prefix": "yes"}, ConfigError, "add_space_prefix"),
    ({"unknown_token_id": 3}, ConfigError, "unknown_token_id")])
def test_malformed_tokenizer_keys_are_typed_errors(keys, error, match):
    with pytest.raises(error, match=match):
        GGUFTokenizer.from_metadata(_tiny(**keys))


def test_sentencepiece_from_small_vocabulary():
    """A hand-made SentencePiece vocabulary: the highest-scoring merge wins wherever it sits, and
    characters outside the vocabulary fall back to bytes."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + \
             ["\u2581", "a", "b", "c", "ab", "bc", "abc", "\u2581a", "\u2581ab"]
    types = [2, 3, 3] + [6] * 256 + [1] * 9
    score = {"ab": -5.0, "bc": -1.0, "abc": -2.0, "\u2581a": -3.0, "\u2581ab": -4.0}
    scores = [0.0] * 259 + [score.get(t, -10.0) for t in tokens[259:]]
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
          "tokenizer.ggml.scores": scores, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
          "tokenizer.ggml.unknown_token_id": 0}
    tok = GGUFTokenizer.from_metadata(md)  # llama.cpp's defaults: BOS, space prefix
    ids = tok.encode("abc ab é")
    # "▁abc": bc scores best, then abc beats ▁a; "▁ab": ▁a, then ▁ab; "▁é": ▁ and é's two bytes
    assert [tok.tokens[i] for i in ids] == ["<s>", "\u2581", "abc", "\u2581ab", "\u2581", "<0xC3>", "<0xA9>"]
    # As llama.cpp's detokenize: the prepended space goes when the first token carries it, not
    # after a BOS.
    assert tok.decode(ids[1:]) == "abc ab é" and tok.decode(ids) == " abc ab é"


@pytest.mark.parametrize("override", [{"tokenizer.ggml.model": "t5"}, {"tokenizer.ggml.pre": "chameleon"}])
def test_language_model_with_unknown_tokenizer_says_so(tmp_path, override):
    """A GGUF (a one-layer Llama) whose tokenizer pyrt does not rebuild: one line naming the key."""
    from fuzz import seeds

    path = tmp_path / "m.gguf"
    path.write_bytes(seeds.llama_gguf_bytes(**override))
    with pytest.raises(UnsupportedError, match=r"\(tokenizer\.ggml\.(model|pre)\) is not supported") as err:
        import pyrt  # noqa: PLC0415

        pyrt.LanguageModel(path, context_length=16, dtype="f32", embedding_dtype=None)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, expected", [
    ({"tokenizer.ggml.model": "t5"}, "tokenizer.ggml.model"),
    ({"general.architecture": "mamba"}, "architecture 'mamba'"),
])
def test_unsupported_model_is_reported_before_weights_are_read(tmp_path, monkeypatch, override, expected):
    """LanguageModel(x.gguf) checks the architecture and the tokenizer from the header, before any
    tensor is read or converted."""
    from fuzz import seeds

    import pyrt  # noqa: PLC0415
    from pyrt import gguf_weights
    from pyrt.convert.readers import gguf_file

    path = tmp_path / "m.gguf"
    path.write_bytes(seeds.llama_gguf_bytes(**override))

    def no_weights(*args, **kwargs):
        raise AssertionError("tensor data read before the header was checked")
    monkeypatch.setattr(gguf_file, "_values", no_weights)
    monkeypatch.setattr(gguf_weights, "gguf_tensor", no_weights)
    with pytest.raises(UnsupportedError, match=expected) as err:
        pyrt.LanguageModel(path, context_length=16, dtype="f32")
    assert "\n" not in str(err.value) and "supported" in str(err.value)
