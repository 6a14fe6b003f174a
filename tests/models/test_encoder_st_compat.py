"""SentenceEncoder.encode's sentence-transformers keywords, similarity and create_embedding on the
real all-MiniLM-L6-v2: against sentence-transformers on PyTorch when it is installed (CI installs
it), and always against float64 numpy references written here."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import pyrt
from pyrt.embeddings import quantize_embeddings

from helpers import models_dir

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="tests need the safetensors package")
pytest.importorskip("tokenizers", reason="SentenceEncoder needs the tokenizers package")

MODEL_FOLDER = "all-MiniLM-L6-v2"
CARRIED_FILES = ("tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
                 "tokenizer_config.json", "config_sentence_transformers.json")
SENTENCES = [
    "The cat sits on the mat.", "A man is playing a guitar on the street.", "Hi", "",
    "Quantized weights keep the model small and fast.", "Der schnelle braune Fuchs springt.",
    "東京は日本の首都です。", "  Leading and trailing spaces  ", "What is the capital of France?",
    "Paris is the capital of France.", "¿Dónde está la biblioteca? 🙂", "Embeddings map text to vectors.",
]
PEER_ATOL = 2e-5  # pyrt f32 against PyTorch f32 on unit-length vectors (both ~1e-6 from float64)


@pytest.fixture(scope="module")
def parts():
    """(f32 tensors, HF config, carried files) of the real checkpoint, read without pyrt's converter."""
    folder = models_dir() / MODEL_FOLDER
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{folder} is absent: run python tools/fetch_models.py --only minilm (or set PYRT_MODELS)")
    weights = safetensors_numpy.load_file(str(folder / "model.safetensors"))
    tensors = {k: pyrt.quantize(v, "f32") for k, v in weights.items() if v.dtype == np.float32}
    config = json.loads((folder / "config.json").read_text())
    files = {name: (folder / name).read_bytes() for name in CARRIED_FILES if (folder / name).is_file()}
    return tensors, config, files


@pytest.fixture(scope="module")
def encoder(parts):
    return pyrt.SentenceEncoder.from_parts(*parts)


@pytest.fixture(scope="module")
def full(encoder):
    return encoder.encode(SENTENCES)


@pytest.fixture(scope="module")
def peer(parts):
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers (PyTorch) is not installed")
    return st.SentenceTransformer(str(models_dir() / MODEL_FOLDER), device="cpu")


def st_quantize(*args, **kwargs):
    try:
        from sentence_transformers.util.quantization import quantize_embeddings as quantize
    except ImportError:
        from sentence_transformers.quantization import quantize_embeddings as quantize
    return quantize(*args, **kwargs)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- float64 references

def reference_int(x: np.ndarray, ranges: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(bucket ints, distance of the float64 position to its nearest integer) per element."""
    lo, hi = ranges.astype(np.float64)
    step = (hi - lo) / 255.0
    step[step == 0] = 1.0
    pos = (x.astype(np.float64) - lo) / step
    q = np.clip(np.floor(pos), 0, 255) - (128 if signed else 0)
    return q.astype(np.int64), np.abs(pos - np.round(pos))


def reference_bits(x: np.ndarray, signed: bool) -> np.ndarray:
    n, d = x.shape
    out = np.zeros((n, (d + 7) // 8), np.int64)
    for i in range(n):
        for j in range(d):
            if x[i, j] > 0:
                out[i, j // 8] |= 1 << (7 - j % 8)  # first dimension in the byte's high bit
    return out - 128 if signed else out


def test_precision_int8_uint8_against_float64(rng):
    x = rng.standard_normal((40, 50)).astype(np.float32)
    ranges = np.vstack((x.min(0), x.max(0)))
    for precision, signed, dtype in (("int8", True, np.int8), ("uint8", False, np.uint8)):
        got = quantize_embeddings(x, precision)
        assert got.dtype == dtype and got.shape == x.shape
        want, near_edge = reference_int(x, ranges, signed)
        exact = near_edge > 1e-4  # elsewhere float32 may round to the neighbouring bucket
        assert exact.mean() > 0.9  # each column's min and max sit exactly on an edge
        np.testing.assert_array_equal(got.astype(np.int64)[exact], want[exact])
        assert np.abs(got.astype(np.int64) - want).max() <= 1
    # calibration data and explicit ranges: values beyond them are clipped, not wrapped
    calib = rng.standard_normal((30, 50)).astype(np.float32) * 0.5
    got = quantize_embeddings(x, "uint8", calibration_embeddings=calib)
    want, _ = reference_int(x, np.vstack((calib.min(0), calib.max(0))), False)
    assert np.abs(got.astype(np.int64) - want).max() <= 1 and got.min() == 0 and got.max() == 255
    same = quantize_embeddings(x, "int8", ranges=np.vstack((calib.min(0), calib.max(0))))
    np.testing.assert_array_equal(same.astype(np.int64) + 128, got.astype(np.int64))


@pytest.mark.parametrize("dim", [48, 50])
def test_precision_binary_against_bit_loop(rng, dim):
    x = rng.standard_normal((7, dim)).astype(np.float32)
    got_u, got_s = quantize_embeddings(x, "ubinary"), quantize_embeddings(x, "binary")
    assert got_u.dtype == np.uint8 and got_s.dtype == np.int8 and got_u.shape == (7, (dim + 7) // 8)
    np.testing.assert_array_equal(got_u.astype(np.int64), reference_bits(x, False))
    np.testing.assert_array_equal(got_s.astype(np.int64), reference_bits(x, True))


def test_quantizer_matches_sentence_transformers_bit_for_bit(peer, rng):
    x = rng.standard_normal((64, 384)).astype(np.float32)
    for precision in ("int8", "uint8", "binary", "ubinary", "float32"):
        want = st_quantize(x, precision=precision)
        got = quantize_embeddings(x, precision)
        assert got.dtype == want.dtype, precision
        np.testing.assert_array_equal(got, want, err_msg=precision)


# ----------------------------------------------------------------------------- encode keywords

def test_default_encode_keeps_the_normalize_module(encoder, full):
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    # normalize_embeddings normalises again: on unit vectors a no-op up to rounding
    np.testing.assert_allclose(encoder.encode(SENTENCES, normalize_embeddings=True), full, rtol=0, atol=1e-6)


def test_truncate_dim_then_normalize_embeddings(encoder, full):
    cut = encoder.encode(SENTENCES, truncate_dim=64)
    assert cut.shape == (len(SENTENCES), 64)
    np.testing.assert_allclose(cut, full[:, :64], rtol=0, atol=1e-6)
    norms = np.linalg.norm(cut, axis=1)
    assert np.all(norms < 0.999)  # the Normalize module ran before the cut
    again = encoder.encode(SENTENCES, truncate_dim=64, normalize_embeddings=True)
    np.testing.assert_allclose(again, _unit(full[:, :64]), rtol=0, atol=1e-6)


def test_prompts_from_argument_and_from_the_model_config(encoder, parts, full):
    tensors, config, files = parts
    with_prompt = encoder.encode(SENTENCES[:4], prompt="query: ")
    np.testing.assert_allclose(with_prompt, encoder.encode(["query: " + s for s in SENTENCES[:4]]), rtol=0, atol=1e-6)
    assert np.abs(with_prompt - full[:4]).max() > 1e-2
    st_config = {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "passage",
                 "similarity_fn_name": "dot"}
    prompted = pyrt.SentenceEncoder.from_parts(tensors, config, {**files, "config_sentence_transformers.json":
                                                                 json.dumps(st_config)})
    assert prompted.similarity_fn_name == "dot"
    np.testing.assert_allclose(prompted.encode(SENTENCES[:4], prompt_name="query"), with_prompt, rtol=0, atol=1e-6)
    np.testing.assert_allclose(prompted.encode(SENTENCES[:4]),  # default_prompt_name applies
                               encoder.encode(["passage: " + s for s in SENTENCES[:4]]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(prompted.encode(SENTENCES[:4], prompt=""), full[:4], rtol=0, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(SENTENCES[:4], prompt_name="query"), full[:4], rtol=0, atol=1e-6)
    np.testing.assert_allclose(prompted.encode_query(SENTENCES[:4]), with_prompt, rtol=0, atol=1e-6)
    np.testing.assert_allclose(prompted.encode_document(SENTENCES[:4]), full[:4], rtol=0, atol=1e-6)  # "" prompt
    np.testing.assert_allclose(prompted.encode_query(SENTENCES[:4], prompt_name="passage"),
                               encoder.encode(["passage: " + s for s in SENTENCES[:4]]), rtol=0, atol=1e-6)
    with pytest.raises(pyrt.RangeError, match="nope"):
        encoder.encode(SENTENCES[:2], prompt_name="nope")
    bad = {**files, "config_sentence_transformers.json": json.dumps({"prompts": {"a": 3}})}
    with pytest.raises(pyrt.FileFormatError, match="prompts"):
        pyrt.SentenceEncoder.from_parts(tensors, config, bad)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_encode_precision_quantizes_the_float_embeddings(encoder, full, precision):
    got = encoder.encode(SENTENCES, precision=precision)
    np.testing.assert_array_equal(got, quantize_embeddings(full, precision))


def test_output_containers_and_single_strings(encoder, full):
    one = encoder.encode(SENTENCES[1])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, full[1], rtol=0, atol=1e-6)
    rows = encoder.encode(SENTENCES[:3], convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == 3 and rows[2].shape == (384,)
    np.testing.assert_allclose(np.stack(rows), full[:3], rtol=0, atol=1e-6)
    assert encoder.encode(SENTENCES[:2], show_progress_bar=False, device="cpu").shape == (2, 384)
    np.testing.assert_allclose(encoder.encode(SENTENCES[:3], show_progress_bar=True), full[:3], rtol=0, atol=1e-6)


def test_deprecated_normalize_keyword_keeps_its_meaning(encoder, full):
    with pytest.warns(DeprecationWarning, match="normalize_embeddings"):
        raw = encoder.encode(SENTENCES[:5], normalize=False)
    assert np.all(np.abs(np.linalg.norm(raw, axis=1) - 1.0) > 1e-2)
    np.testing.assert_allclose(_unit(raw), full[:5], rtol=0, atol=1e-6)


def test_similarity_against_float64(encoder, parts, full, rng):
    a, b = full[:5], full[5:9]
    want = _unit(a) @ _unit(b).T
    got = encoder.similarity(a, b)
    assert got.shape == (5, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(encoder.similarity(a[0], b), want[:1], rtol=0, atol=1e-6)
    x, y = rng.standard_normal((3, 8)), rng.standard_normal((2, 8))
    tensors, config, files = parts
    expected = {"dot": x @ y.T, "euclidean": -np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1)),
                "manhattan": -np.abs(x[:, None] - y[None]).sum(-1), "cosine": _unit(x) @ _unit(y).T}
    for name, want in expected.items():
        enc = pyrt.SentenceEncoder.from_parts(tensors, config, {**files, "config_sentence_transformers.json":
                                                                json.dumps({"similarity_fn_name": name})})
        np.testing.assert_allclose(enc.similarity(x, y), want, rtol=1e-5, atol=1e-5, err_msg=name)
    with pytest.raises(pyrt.ShapeError):
        encoder.similarity(a, b[:, :10])


def test_typed_errors_for_bad_arguments(encoder):
    for bad in (None, 3, ["ok", None], b"bytes", ["\ud800"], ["fine", "x\udfffy"]):
        with pytest.raises(pyrt.PyrtError):
            encoder.encode(bad)
    with pytest.raises(pyrt.DtypeError, match="precision"):
        encoder.encode(["x", "y"], precision="float16")
    with pytest.raises(pyrt.ShapeError, match="truncate_dim"):
        encoder.encode(["x"], truncate_dim=0)
    with pytest.raises(pyrt.ShapeError, match="truncate_dim"):
        encoder.encode(["x"], truncate_dim=385)
    with pytest.raises(pyrt.RangeError, match="single embedding"):
        encoder.encode("x", precision="int8")
    with pytest.raises(pyrt.UnsupportedError):
        encoder.encode(["x"], output_value="token_embeddings")
    with pytest.raises(pyrt.DeviceError):
        encoder.encode(["x"], device="cuda")
    with pytest.raises(pyrt.DtypeError):
        encoder.encode(["x"], prompt=5)


# ----------------------------------------------------------------------------- create_embedding

def test_create_embedding_shape_usage_and_base64(encoder, full):
    out = encoder.create_embedding(SENTENCES[:3], model="mini")
    assert out["object"] == "list" and out["model"] == "mini"
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in out["data"])
    np.testing.assert_allclose(np.array([d["embedding"] for d in out["data"]]), full[:3], rtol=0, atol=1e-6)
    tokens = sum(len(ids) for ids in encoder.tokenize(SENTENCES[:3]))
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    packed = encoder.create_embedding(SENTENCES[0], encoding_format="base64")
    assert len(packed["data"]) == 1 and packed["model"] == encoder.name
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    as_floats = encoder.create_embedding(SENTENCES[0])["data"][0]["embedding"]  # same batch, same bits
    np.testing.assert_array_equal(vector, np.array(as_floats, np.float32))
    short = encoder.create_embedding(SENTENCES[:2], dimensions=32)
    got = np.array([d["embedding"] for d in short["data"]])
    np.testing.assert_allclose(got, _unit(full[:2, :32]), rtol=0, atol=1e-6)
    for bad, kind in (([], pyrt.ShapeError), (None, pyrt.DtypeError), ([1, 2], pyrt.UnsupportedError),
                      (["\ud800"], pyrt.DtypeError)):
        with pytest.raises(kind):
            encoder.create_embedding(bad)
    with pytest.raises(pyrt.DtypeError, match="encoding_format"):
        encoder.create_embedding("x", encoding_format="int8")


# ----------------------------------------------------------------------------- against sentence-transformers

def test_keywords_match_sentence_transformers(encoder, peer):
    cases = [{}, {"normalize_embeddings": True}, {"truncate_dim": 96}, {"truncate_dim": 96, "normalize_embeddings": True},
             {"prompt": "query: "}, {"prompt_name": "query"}, {"batch_size": 3}]
    for kwargs in cases:
        want = peer.encode(SENTENCES, **kwargs)
        got = encoder.encode(SENTENCES, **kwargs)
        assert got.shape == want.shape and got.dtype == want.dtype, kwargs
        np.testing.assert_allclose(got, want, rtol=0, atol=PEER_ATOL, err_msg=str(kwargs))
    for method in ("encode_query", "encode_document"):
        np.testing.assert_allclose(getattr(encoder, method)(SENTENCES[:4], prompt="search: "),
                                   getattr(peer, method)(SENTENCES[:4], prompt="search: "),
                                   rtol=0, atol=PEER_ATOL, err_msg=method)
    one = peer.encode(SENTENCES[0])
    np.testing.assert_allclose(encoder.encode(SENTENCES[0]), one, rtol=0, atol=PEER_ATOL)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_precision_matches_sentence_transformers(encoder, peer, precision):
    want = peer.encode(SENTENCES, precision=precision).astype(np.int64)
    got = encoder.encode(SENTENCES, precision=precision).astype(np.int64)
    assert got.shape == want.shape
    if precision.endswith("int8"):  # the float inputs differ by ~1e-6: a bucket edge may fall between them
        assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.99
    else:
        differing_bits = np.unpackbits((got ^ want).astype(np.uint8)).sum()
        assert differing_bits <= 2, f"{differing_bits} sign bits differ"


def test_similarity_and_tensors_match_sentence_transformers(encoder, peer, full):
    import torch

    want = peer.similarity(torch.from_numpy(full[:4]), torch.from_numpy(full[4:])).numpy()
    np.testing.assert_allclose(encoder.similarity(full[:4], full[4:]), want, rtol=0, atol=1e-6)
    tensor = encoder.encode(SENTENCES[:3], convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tuple(tensor.shape) == (3, 384)
    np.testing.assert_allclose(tensor.numpy(), peer.encode(SENTENCES[:3]), rtol=0, atol=PEER_ATOL)
    assert peer.similarity_fn_name == encoder.similarity_fn_name == "cosine"
