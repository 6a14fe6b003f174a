"""ONNX Runtime as a peer for the matmul benchmark: MatMulNBits (4- and 8-bit) and plain FP32 MatMul.

`onnx` and `onnxruntime` are optional (`pip install onnxruntime onnx`, the `bench` extra): without
them ``AVAILABLE`` is False, ``UNAVAILABLE_REASON`` says why, and only the packing helpers (pure
numpy) still work.

MatMulNBits (com.microsoft contrib op, ORT's docs/ContribOperators.md) computes
``Y = A @ dequant(B)^T``, with
  B       uint8 [N, K/block, block*bits/8]: per output row n, its K weights in blocks along K,
          codes packed low-first: for 4 bits byte j of a block holds code 2j in its low nibble and
          code 2j+1 in its high nibble; for 8 bits byte j is code j;
  scales  [N, K/block], the type of A (float32 here);
  zero_points omitted: the default 2^(bits-1) (8 for 4 bits, 128 for 8 bits);
  w = (code - zero_point) * scale.
pyrt q4 is {fp16 d; u8 q[B/2]} with x = (nibble - 8) * d but nibbles split by half-block (byte j
holds element j low and element j + B/2 high), and pyrt q8 is {fp16 d; int8 q[B]} with x = q * d.
The repacking below is exact: fp16 scales widen to float32 without rounding, q4 nibbles are only
reordered, q8 codes shift by +128. So ORT and pyrt multiply by bit-identical weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

try:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    AVAILABLE = True
    UNAVAILABLE_REASON = ""
    VERSION = ort.__version__
except ImportError as exc:  # optional bench extra
    AVAILABLE = False
    UNAVAILABLE_REASON = f"onnxruntime/onnx not importable ({exc}); pip install onnxruntime onnx"
    VERSION = None

# IR 9 / opset 17: old enough for every onnxruntime >= 1.15, new enough for MatMulNBits (domain-1).
IR_VERSION = 9
ONNX_OPSET = 17


def _pyrt_blocks(data: np.ndarray, n: int, k: int, block: int, block_bytes: int) -> np.ndarray:
    """pyrt's raw bytes viewed as [N, K/block, block_bytes]."""
    if k % block:
        raise ValueError(f"K={k} is not a multiple of the block size {block}")
    expected = n * (k // block) * block_bytes
    if data.size != expected:
        raise ValueError(f"expected {expected} bytes for [{n}, {k}] block {block}, got {data.size}")
    return np.ascontiguousarray(data, dtype=np.uint8).reshape(n, k // block, block_bytes)


def _fp16_scales(blocks: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(blocks[:, :, :2]).view(np.float16)[:, :, 0].astype(np.float32)


def pack_q4_for_matmul_nbits(data: np.ndarray, n: int, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """pyrt q4 bytes -> (B uint8 [N, K/block, block/2], scales float32 [N, K/block]) for bits=4."""
    blocks = _pyrt_blocks(data, n, k, block, 2 + block // 2)
    scales = _fp16_scales(blocks)
    packed = blocks[:, :, 2:]
    # pyrt: byte j = element j (low) | element j + block/2 (high) -> codes in element order.
    codes = np.concatenate([packed & 0x0F, packed >> 4], axis=2)
    b = (codes[:, :, 0::2] | (codes[:, :, 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(b), scales


def pack_q8_for_matmul_nbits(data: np.ndarray, n: int, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """pyrt q8 bytes -> (B uint8 [N, K/block, block], scales float32 [N, K/block]) for bits=8."""
    blocks = _pyrt_blocks(data, n, k, block, 2 + block)
    scales = _fp16_scales(blocks)
    codes = blocks[:, :, 2:].view(np.int8).astype(np.int16) + 128  # default zero point 128
    return np.ascontiguousarray(codes.astype(np.uint8)), scales


def dequantize_matmul_nbits(b: np.ndarray, scales: np.ndarray, bits: int) -> np.ndarray:
    """float64 [N, K] weights that MatMulNBits reads from (B, scales) with default zero points.

    Written from the op's specification alone (not from pyrt's layout), so comparing it with
    pyrt's dequantized weights checks the repacking.
    """
    n, blocks_per_row, blob = b.shape
    if bits == 4:
        codes = np.empty((n, blocks_per_row, blob * 2), dtype=np.uint8)
        codes[:, :, 0::2] = b & 0x0F
        codes[:, :, 1::2] = b >> 4
    elif bits == 8:
        codes = b
    else:
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    zero_point = 1 << (bits - 1)
    values = (codes.astype(np.float64) - zero_point) * scales.astype(np.float64)[:, :, None]
    return values.reshape(n, -1)


@dataclass(frozen=True)
class NBitsWeights:
    """One MatMulNBits weight matrix: packed codes and float32 scales."""

    b: np.ndarray
    scales: np.ndarray
    bits: int
    block: int

    @property
    def n(self) -> int:
        return self.b.shape[0]

    @property
    def k(self) -> int:
        return self.b.shape[1] * self.block

    @property
    def nbytes(self) -> int:
        return int(self.b.nbytes + self.scales.nbytes)

    def rolled(self, shift: int) -> NBitsWeights:
        """The same weights with output rows rotated by ``shift``: new bytes at a new address."""
        return NBitsWeights(np.roll(self.b, shift, axis=0), np.roll(self.scales, shift, axis=0),
                            self.bits, self.block)


def _require() -> None:
    if not AVAILABLE:
        raise RuntimeError(UNAVAILABLE_REASON)


def matmul_nbits_model(weights: Sequence[NBitsWeights], accuracy_level: int):
    """An ONNX model with one MatMulNBits node per weight matrix, all reading the same input A
    [M, K]; output i is A @ weights[i]^T. Several nodes make a ring of distinct weights that one
    Run streams through (how a real decoder graph runs them: one session, one thread pool)."""
    _require()
    first = weights[0]
    n, k = first.n, first.k
    nodes, inits, outputs = [], [], []
    for i, w in enumerate(weights):
        if (w.n, w.k, w.bits, w.block) != (n, k, first.bits, first.block):
            raise ValueError("all weights of one model must share shape, bits and block")
        inits += [numpy_helper.from_array(w.b, f"B{i}"), numpy_helper.from_array(w.scales, f"S{i}")]
        nodes.append(helper.make_node(
            "MatMulNBits", ["A", f"B{i}", f"S{i}"], [f"Y{i}"], domain="com.microsoft",
            K=k, N=n, bits=first.bits, block_size=first.block, accuracy_level=accuracy_level))
        outputs.append(helper.make_tensor_value_info(f"Y{i}", TensorProto.FLOAT, ["M", n]))
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])
    graph = helper.make_graph(nodes, "matmul_nbits", [a], outputs, initializer=inits)
    return _model(graph, contrib=True)


def matmul_f32_model(weights: Sequence[np.ndarray]):
    """An ONNX model with one standard MatMul per float32 weight [N, K]: output i is A @ W_i^T
    (the initializer is W_i^T, [K, N], as exporters store a Linear layer)."""
    _require()
    n, k = weights[0].shape
    nodes, inits, outputs = [], [], []
    for i, w in enumerate(weights):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T, dtype=np.float32), f"W{i}"))
        nodes.append(helper.make_node("MatMul", ["A", f"W{i}"], [f"Y{i}"]))
        outputs.append(helper.make_tensor_value_info(f"Y{i}", TensorProto.FLOAT, ["M", n]))
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])
    graph = helper.make_graph(nodes, "matmul_f32", [a], outputs, initializer=inits)
    return _model(graph, contrib=False)


def _model(graph, contrib: bool):
    opsets = [helper.make_opsetid("", ONNX_OPSET)]
    if contrib:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = IR_VERSION
    return model


class OrtRunner:
    """An InferenceSession on the CPU provider with ``threads`` intra-op threads and one inter-op
    thread; ``run(x)`` returns every output (one per weight matrix in the model)."""

    def __init__(self, model, threads: int):
        _require()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # warnings about unused initializers etc. are not results
        self.session = ort.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
        self.outputs = len(self.session.get_outputs())

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {"A": x})
