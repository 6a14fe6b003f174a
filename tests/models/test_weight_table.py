"""csrc/models/weights.h: BERT and Llama take their weights in one shape ({name: (bytes, format, block,
shape)}, pyrt/model_weights.py) and report the same fault with the same error, naming the tensor."""
from __future__ import annotations

import numpy as np
import pytest

import pyrt
from pyrt import _core
from pyrt.model_weights import native_weights

H, HEADS, FFN, VOCAB = 32, 2, 64, 10

BERT_CONFIG = {"vocab_size": VOCAB, "hidden_size": H, "num_layers": 1, "num_heads": HEADS, "intermediate_size": FFN,
               "max_positions": 8, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
LLAMA_CONFIG = {"n_layers": 1, "d_model": H, "n_heads": HEADS, "n_kv_heads": 1, "head_dim": H // HEADS, "d_ffn": FFN,
                "vocab": VOCAB, "max_context": 8, "rms_eps": 1e-5, "rope_theta": 10000.0}


def bert_shapes():
    shapes = {"embeddings.word_embeddings.weight": (VOCAB, H), "embeddings.position_embeddings.weight": (8, H),
              "embeddings.token_type_embeddings.weight": (2, H), "embeddings.LayerNorm.weight": (H,),
              "embeddings.LayerNorm.bias": (H,)}
    layer = {"attention.self.query": (H, H), "attention.self.key": (H, H), "attention.self.value": (H, H),
             "attention.output.dense": (H, H), "intermediate.dense": (FFN, H), "output.dense": (H, FFN)}
    for name, shape in layer.items():
        shapes[f"encoder.layer.0.{name}.weight"] = shape
        shapes[f"encoder.layer.0.{name}.bias"] = (shape[0],)
    for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
        shapes[f"encoder.layer.0.{norm}.weight"] = (H,)
        shapes[f"encoder.layer.0.{norm}.bias"] = (H,)
    return shapes


def llama_shapes():
    kv = LLAMA_CONFIG["n_kv_heads"] * LLAMA_CONFIG["head_dim"]
    return {"token_embd.weight": (VOCAB, H), "output_norm.weight": (H,), "blk.0.attn_norm.weight": (H,),
            "blk.0.attn_q.weight": (H, H), "blk.0.attn_k.weight": (kv, H), "blk.0.attn_v.weight": (kv, H),
            "blk.0.attn_output.weight": (H, H), "blk.0.ffn_norm.weight": (H,), "blk.0.ffn_gate.weight": (FFN, H),
            "blk.0.ffn_up.weight": (FFN, H), "blk.0.ffn_down.weight": (H, FFN)}


def weights(shapes, rng, fmt="q8"):
    tensors = {}
    for name, shape in shapes.items():
        x = rng.normal(0, 0.1, shape).astype(np.float32)
        if len(shape) == 1 and name.endswith(("LayerNorm.weight", "norm.weight")):
            x += 1
        tensors[name] = pyrt.quantize(x, fmt if len(shape) == 2 else "f32", 32)
    return native_weights(tensors)


def build_bert(w):
    return _core.BertEncoder(BERT_CONFIG, w)


def build_llama(w):
    return _core.LlamaDecoder(LLAMA_CONFIG, w)


MODELS = {
    "bert": (bert_shapes, build_bert, "encoder.layer.0.output.dense.weight"),
    "llama": (llama_shapes, build_llama, "blk.0.ffn_up.weight"),
}


@pytest.fixture(params=sorted(MODELS))
def model(request, rng):
    shapes, build, matrix = MODELS[request.param]
    return weights(shapes(), rng), build, matrix


def test_a_complete_table_builds_a_model_that_runs(model):
    good, build, _ = model
    native = build(good)
    if isinstance(native, _core.LlamaDecoder):
        out = native.forward(np.array([1, 2, 3], np.int32))
    else:
        out = native.encode(np.array([[1, 2, 3]], np.int32), None, None, "mean", True)
    assert np.all(np.isfinite(out)) and np.abs(out).max() > 0


def test_same_fault_same_error(model):
    good, build, matrix = model
    missing = {k: v for k, v in good.items() if k != matrix}
    with pytest.raises(pyrt.FileFormatError, match=matrix):
        build(missing)
    data, fmt, block, shape = good[matrix]
    transposed = pyrt.quantize(np.zeros(shape[::-1], np.float32), fmt, block)
    with pytest.raises(pyrt.ShapeError, match=matrix):
        build({**good, matrix: native_weights({"t": transposed})["t"]})
    with pytest.raises(pyrt.ShapeError, match=matrix):
        build({**good, matrix: (data[:-1], fmt, block, shape)})
    with pytest.raises(pyrt.DtypeError, match=matrix):
        build({**good, matrix: (data, fmt, 48, shape)})
    with pytest.raises(pyrt.DtypeError, match=matrix):
        build({**good, matrix: (data, fmt, block)})


def test_python_front_ends_reject_non_tensors():
    with pytest.raises(pyrt.DtypeError, match="pyrt.Tensor"):
        native_weights({"token_embd.weight": np.zeros((2, 2), np.float32)})
