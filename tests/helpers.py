"""Helpers shared by the test modules (fixtures live in conftest.py). Test modules import from here
and never from each other; tests/ is on sys.path through pyproject's pytest `pythonpath`."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

import pyrt
from pyrt.convert.writer import ENTRY, HEADER, HEADER_BYTES, pack_header
from pyrt.formats import Q4N_LEVELS, format_info

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every CPU kernel set pyrt has (conftest's cpu_isa fixture skips those this CPU or build lacks), and
# every backend an op runs on: each CPU kernel set, then the CUDA device (skipped without GPU and cupy).
CPU_ISAS = ("scalar", "avx2", "avx512")
BACKENDS = tuple(f"cpu-{isa}" for isa in CPU_ISAS) + ("cuda",)

# CUDA matmul error bound, per weight format: |error| <= CUDA_TOL * (|x| @ |W|^T) per output.
# f16 weights: FP16 products are exact in FP32, only the FP32 sums round (tensor cores may truncate
# rather than round them: K * 2^-23 ~ 3e-5 at K = 264). Quantized weights: the tensor-core path
# rounds each dequantized weight to FP16 (relative 2^-11) before the product; the GEMV path
# dequantizes in FP32.
CUDA_TOL = {"f16": 1e-4, "q8": 1.5e-3, "q4": 1.5e-3, "q4a": 1.5e-3, "q4n": 1.5e-3}

QUANT = ["q8", "q4", "q4a", "q4n", "q5"]  # block formats: d (and q4a's min) per block of B weights
PLAIN = ["f32", "f16", "bf16"]  # one value per element, no blocks

# ---- outputs, processes and model files -----------------------------------------------------------
POISON = np.float32(np.nan)


def poisoned(shape, dtype=np.float32) -> np.ndarray:
    """An output buffer full of NaN: any element the kernel forgets to write fails the test."""
    return np.full(shape, POISON, dtype=dtype)


def accumulation_bound(x64, w64, bias=None):
    """Per-output bound on FP32 accumulation error: the smaller of 4 eps sqrt(K) (|x| . |w|) and
    1e-5 sqrt(K) ||x_m * w_n||_2, plus the rounding of the bias."""
    k = max(x64.shape[-1], 1)
    # Only the bound, not the reference, is computed in FP32 (twice as fast; ~1e-6 relative is moot).
    x32, w32 = x64.astype(np.float32), w64.astype(np.float32)
    by_sum = 4 * np.finfo(np.float32).eps * np.sqrt(k) * (np.abs(x32) @ np.abs(w32).T).astype(np.float64)
    by_norm = 1e-5 * np.sqrt(k) * np.sqrt((x32 * x32) @ (w32 * w32).T).astype(np.float64)
    bound = np.minimum(by_sum, by_norm) + 1e-30
    return bound if bias is None else bound + 1e-6 * np.abs(bias)


def models_dir() -> Path:
    """Where tools/fetch_models.py puts the real checkpoints ($PYRT_MODELS, else ~/.cache/pyrt/models)."""
    from pyrt.cli.models_dir import models_dir as fetched_models_dir
    return fetched_models_dir()


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder tools/fetch_models.py fetches; skips the test when it is absent."""
    import pytest  # noqa: PLC0415 - helpers is imported by non-pytest tools too

    path = models_dir() / "all-MiniLM-L6-v2"
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"{path} is absent: run python tools/fetch_models.py --only minilm (or set PYRT_MODELS)")
    return path


def run_python(*args: str, env: dict | None = None, timeout: float = 300,
               base_env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs ``python *args`` from a neutral directory, so the subprocess imports the installed pyrt
    (from a checkout root, ``python -c`` would pick up the uncompiled source tree instead). The
    environment is ``base_env`` (default: this process's) updated with ``env``."""
    base = dict(os.environ if base_env is None else base_env)
    # Put the directory holding the pyrt under test first, so a subprocess tests that same pyrt.
    package_parent = str(Path(pyrt.__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (package_parent, base.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                              env={**base, "PYTHONPATH": python_path, **(env or {})}, timeout=timeout)


# ---- quantized (int8 / int16) activations: a float64 emulation of the kernels' math ---------------
def quantize_activations(x: np.ndarray, block: int):
    """The C++ quantizer's math in float32 numpy: codes, d_x and S = d_x * sum(codes) per block."""
    M, K = x.shape
    xb = x.astype(np.float32).reshape(M, K // block, block)
    amax = np.abs(xb).max(axis=-1)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(xb * inv[..., None]), -127, 127)
    d = (amax / np.float32(127)).astype(np.float32)
    s = (d * q.sum(axis=-1).astype(np.float32)).astype(np.float32)
    return q, d, s


def weight_parts(t: pyrt.Tensor, fmt: str, block: int):
    """Signed integer codes c, scale d and (q4a) min m per block, so that w = d * c (+ m)."""
    N, K = t.shape
    info = format_info(fmt)
    blocks = np.ascontiguousarray(t.numpy()).reshape(N, K // block, info.block_bytes(block))
    d = blocks[..., :2].copy().view(np.float16)[..., 0].astype(np.float64)
    m = np.zeros_like(d)
    if fmt == "q8":
        c = blocks[..., 2:].view(np.int8).astype(np.float64)
    elif fmt == "q5":  # high-bit bytes (bit i of element i), then q4-ordered nibbles
        high = np.unpackbits(blocks[..., 2:2 + block // 8], axis=-1, bitorder="little")
        packed = blocks[..., 2 + block // 8:]
        c = (np.concatenate([packed & 0x0F, packed >> 4], axis=-1) | (high << 4)).astype(np.float64) - 16
    else:
        packed = blocks[..., info.header_bytes:]
        c = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).astype(np.float64)
        if fmt == "q4":
            c -= 8
        elif fmt == "q4n":
            c = Q4N_LEVELS[c.astype(np.int64)].astype(np.float64)
        else:
            m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
    return c, d, m


def emulate(x, t, fmt, block, bias):
    """float64 y = sum over blocks of d_w d_x (q_x . c) + m S (+ bias): the kernels' math, exactly."""
    q, dx, s = quantize_activations(x, block)
    c, dw, m = weight_parts(t, fmt, block)
    dots = np.einsum("mbj,nbj->mnb", q.astype(np.float64), c)
    y = np.einsum("mnb,mb,nb->mn", dots, dx.astype(np.float64), dw) + s.astype(np.float64) @ m.T
    # FP32 summation error: ~ eps * blocks * (sum of |terms|)
    mag = np.einsum("mbj,nbj->mn", np.abs(q) * dx[..., None].astype(np.float64), np.abs(c) * np.abs(dw)[..., None])
    mag += np.abs(s).astype(np.float64) @ np.abs(m).T
    if bias is not None:
        y += bias
        mag += np.abs(bias)
    tol = 4e-7 * (x.shape[1] // block + 8) * mag + 1e-30
    return y, tol


def rounding_bound(d, w64, block, tol):
    """Bound on |y - exact| when every activation of block b is off by at most d[m, b] / 2 (round
    to nearest with step d), plus the FP32 tolerance tol: sum over blocks of d / 2 * sum |w|."""
    N, K = w64.shape
    return np.einsum("mb,nb->mn", d.astype(np.float64) / 2,
                     np.abs(w64).reshape(N, K // block, block).sum(-1)) * (1 + 1e-5) + tol


def activation_case(rng, fmt, block, M, N, K, bias=True):
    # Non-zero mean and mixed magnitudes (per row and per column) so q4a's min and scales matter.
    w = (rng.standard_normal((N, K)) * rng.uniform(0.2, 3.0, (N, 1)) + 0.1).astype(np.float32)
    x = (rng.standard_normal((M, K)) * rng.uniform(0.1, 4.0, (1, K))).astype(np.float32)
    t = pyrt.quantize(w, dtype=fmt, block=block)
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    return x, t, b


def matmul_with_activations(x, t, b, activations="int8"):
    out = poisoned((x.shape[0], t.shape[0]))
    pyrt.matmul(x, t, b, out=out, activations=activations)
    assert np.isfinite(out).all(), "kernel left unwritten (NaN) outputs"
    return out


# ---- .pyrt files: reading the raw structure back, to forge broken variants ---------------------
def read_header(data: bytes) -> dict:
    fields = HEADER.unpack(data[:HEADER_BYTES])
    return dict(zip(("magic", "bom", "major", "minor", "header_bytes", "alignment", "features", "file_size",
                     "entry_count", "table_offset", "table_bytes", "metadata_offset", "metadata_bytes",
                     "table_crc", "metadata_crc", "reserved", "header_crc"), fields))


def read_layout(data: bytes):
    header = read_header(data)
    entries, pos = [], header["table_offset"]
    for _ in range(header["entry_count"]):
        e = dict(zip(("entry_bytes", "kind", "format", "ndim", "r0", "block", "name_bytes", "offset", "size",
                      "crc", "r1", "r2"), ENTRY.unpack_from(data, pos)))
        shape_at = pos + ENTRY.size
        e["shape"] = tuple(struct.unpack_from(f"<{e['ndim']}Q", data, shape_at))
        name_at = shape_at + 8 * e["ndim"]
        e["name"] = data[name_at:name_at + e["name_bytes"]].decode()
        e["pos"] = pos
        entries.append(e)
        pos += e["entry_bytes"]
    return header, entries


def reseal(data: bytearray, **header_changes) -> bytearray:
    """Recomputes the table, metadata and header CRCs (after edits), applying header changes."""
    h = read_header(bytes(data))
    h.update(header_changes)
    t0, m0 = h["table_offset"], h["metadata_offset"]
    table_crc = zlib.crc32(bytes(data[t0:t0 + h["table_bytes"]]))  # slices clamp: regions may be bogus
    meta_crc = zlib.crc32(bytes(data[m0:m0 + h["metadata_bytes"]]))
    data[:HEADER_BYTES] = pack_header(
        file_size=h["file_size"], entry_count=h["entry_count"], table_offset=t0, table_bytes=h["table_bytes"],
        metadata_offset=m0, metadata_bytes=h["metadata_bytes"], table_crc=table_crc, metadata_crc=meta_crc,
        version=(h["major"], h["minor"]), alignment=h["alignment"], required_features=h["features"],
        magic=h["magic"], byte_order_mark=h["bom"])
    return data


def set_entry_field(data: bytearray, entry: dict, field: str, value: int) -> None:
    offsets = {"kind": 4, "format": 5, "ndim": 6, "block": 8, "offset": 16, "size": 24, "crc": 32}
    fmt = {"kind": "<B", "format": "<B", "ndim": "<B", "block": "<I", "offset": "<Q", "size": "<Q", "crc": "<I"}
    struct.pack_into(fmt[field], data, entry["pos"] + offsets[field], value)


def smollm2_first_layers(n_layers: int, context_length: int):
    """SmolLM2 cut to its first ``n_layers`` (q4/32): the real vocabulary and chat template in a fast
    model for API tests. Skips when the GGUF is not under <models_dir()>/smollm2."""
    import pytest  # noqa: PLC0415 - helpers is imported by non-pytest tools too

    from pyrt.convert.readers.gguf_file import quantize_weights, read_gguf  # noqa: PLC0415

    found = sorted((models_dir() / "smollm2").glob("*.gguf"))
    if not found:
        pytest.skip("SmolLM2 GGUF not found (tools/fetch_models.py or PYRT_MODELS)")
    arrays, md = read_gguf(found[0])
    keep = {k: v for k, v in arrays.items() if not k.startswith("blk.") or int(k.split(".")[1]) < n_layers}
    return pyrt.LanguageModel.from_parts(quantize_weights(keep, "q4", 32), {**md, "llama.block_count": n_layers}, md,
                                         context_length=context_length)


def model_gguf(folder: str) -> Path:
    """The .gguf file under <models_dir()>/<folder> (pyrt/cli/models_dir.py names the folders);
    skips when it is not there."""
    import pytest  # noqa: PLC0415 - helpers is imported by non-pytest tools too

    found = sorted((models_dir() / folder).glob("*.gguf"))
    if not found:
        pytest.skip(f"{folder} GGUF not found (tools/fetch_models.py or PYRT_MODELS)")
    return found[0]


_GGUF_KEYS: dict[str, dict] = {}


def model_gguf_keys(folder: str) -> dict:
    """The key/values of that GGUF (its header only: fast, no tensor is read), read once."""
    if folder not in _GGUF_KEYS:
        import gguf  # noqa: PLC0415 - optional (the llm extra)

        from pyrt.convert.readers.gguf_limits import read_header  # noqa: PLC0415

        _GGUF_KEYS[folder], _ = read_header(model_gguf(folder), {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()})
    return _GGUF_KEYS[folder]


def llama_cpp_amx_hazard() -> str | None:
    """Why the installed llama.cpp must not run a model here, or None.

    A llama.cpp built with -march=native on a CPU with AMX (Intel Sapphire Rapids and later) routes
    Q4/Q8 products through its AMX backend, which crashes the process (SIGSEGV in
    ggml_backend_amx_mul_mat, llama.cpp issue #20824) on some machines, this Intel VM among them.
    A crash would end the whole test run, so callers skip the peer instead. .ci/run builds
    llama-cpp-python without AMX (-mno-amx-*), where this returns None. Tokenizer-only use
    (vocab_only) never reaches the backend and is unaffected."""
    try:
        import llama_cpp  # noqa: PLC0415
    except ImportError:
        return None
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    if "AMX_INT8 = 1" not in info:
        return None
    return ("this llama-cpp-python was built with llama.cpp's AMX backend, which crashes on this machine "
            "(llama.cpp #20824); rebuild it as .ci/run does: CMAKE_ARGS with -mno-amx-tile -mno-amx-int8 "
            "-mno-amx-bf16, pip install --no-cache-dir --force-reinstall llama-cpp-python")


class LlamaCppVocabularies:
    """llama.cpp's own tokenizers (llama-cpp-python, vocabulary only), opened once per path and
    closed together; ``get`` skips the test when llama-cpp-python is missing."""

    def __init__(self):
        self._open: dict[str, object] = {}

    def get(self, path):
        import pytest  # noqa: PLC0415 - helpers is imported by non-pytest tools too

        llama_cpp = pytest.importorskip("llama_cpp", reason="comparing with llama.cpp needs llama-cpp-python")
        if str(path) not in self._open:
            self._open[str(path)] = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        return self._open[str(path)]

    def close(self) -> None:
        for llama in self._open.values():
            llama.close()
        self._open.clear()
