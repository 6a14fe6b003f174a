#!/usr/bin/env python3
"""LLM benchmark: a decoder GGUF (SmolLM2-135M-Instruct by default; --family gemma3 / qwen2 for
Gemma 3 270M and Qwen2.5-Coder-0.5B) with pyrt.LanguageModel, per weight format.

Measures prompt processing (one prefill of --prompt-tokens tokens) and generation (--gen-tokens
single-token decode steps after a short prompt) in tokens/s on --threads threads, and puts
generation against the memory-bandwidth bound: every decode step reads all layer weights, the
output head and the KV cache once, so bytes/token / time per token is the achieved bandwidth.
Also prints the perplexity of the test paragraph (tests/models/test_llm.py) per format.

Peer: llama.cpp through llama-cpp-python (optional; `pip install llama-cpp-python` compiles
llama.cpp, 10-20 minutes) on the same GGUF in the same run. Its Q4_1 layers + Q8_0 embedding are
exactly pyrt's q4a/32 + q8 embedding, so the row "q4a/32+q8emb" is the same-bits comparison.
--same-bits adds the row "gguf": the file loaded as LanguageModel("x.gguf") does (pyrt/gguf_weights.py:
Q8_0/Q4_0/Q4_1/Q5_0 with the file's own bytes, Q4_K as q4a/32 and Q6_K as q8/32, slightly more bytes
than the file: MB/token says how many each reads).
The bandwidth bound is measured at the start of the run (bench/bandwidth.py, a 1 GiB read), and
the machine block (bench/machine_info.py: CPU model, ISA flags, caches, load) printed first.

    PYRT_MODELS=/tmp/pyrt_models_llm python bench/bench_models_llm.py --formats f32 q8 q4a
    python bench/bench_models_llm.py --family gemma3 --formats q4a --same-bits
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import pyrt  # noqa: E402
import pyrt.gguf_tokenizer  # noqa: E402
from pyrt.cli.models_dir import models_dir  # noqa: E402
from pyrt.convert.readers.gguf_file import quantize_weights, read_gguf  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))

# --family: the model folder and file under PYRT_MODELS (tools/fetch_models.py puts them there).
FAMILY_FILES = {"smollm2": ("smollm2", "*.gguf"), "gemma3": ("gemma3-270m", "gemma-3-270m-q4_k_m.gguf"),
                "qwen2": ("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct.gguf")}
# The timed runs feed token ids: a model whose tokenizer pyrt cannot build yet gets this stand-in
# (no perplexity then).
STUB_TOKENIZER = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"],
                  "tokenizer.ggml.merges": ["a b"]}


def weight_bytes_per_token(tensors: dict) -> int:
    """Bytes a decode step reads: every matrix except the embedding table (one row is gathered),
    plus the output head, which is the embedding itself when tied."""
    total = sum(t.nbytes for name, t in tensors.items() if name != "token_embd.weight")
    if "output.weight" not in tensors:
        total += tensors["token_embd.weight"].nbytes
    return total


def kv_bytes_per_token(config: dict, context: int) -> int:
    elem = 4 if config.get("kv_f32") else 2
    return 2 * config["n_layers"] * config["n_kv_heads"] * config["head_dim"] * context * elem


def random_prompt(n: int, vocab: int) -> list[int]:
    return np.random.default_rng(0).integers(100, vocab, n).tolist()


def time_prompt_and_generation(run, reset, prompt: list[int], gen_tokens: int,
                               prompt_repeats: int = 1) -> tuple[float, float]:
    """The protocol for every engine: (prompt tok/s, generation tok/s). ``run(ids)`` feeds tokens
    through the model and its cache; the prompt is timed ``prompt_repeats`` times from an empty
    cache (the median counts: one prefill on a shared VM varies up to 2x); generation feeds one
    token per call after a 16-token prompt (the tokens come from the prompt, so no engine pays for
    sampling)."""
    run(prompt[:8])  # warm-up: allocations, thread pool
    reset()
    times = []
    for _ in range(max(1, prompt_repeats)):
        t0 = time.perf_counter()
        run(prompt)
        times.append(time.perf_counter() - t0)
        reset()
    pp = len(prompt) / float(np.median(times))
    run(prompt[:16])
    t0 = time.perf_counter()
    for i in range(gen_tokens):
        run([prompt[16 + i % (len(prompt) - 16)]])
    return pp, gen_tokens / (time.perf_counter() - t0)


def bench_format(arrays, md, fmt, block, emb, args, activations="exact"):
    if fmt == "gguf":  # the file's own bits: what LanguageModel("x.gguf") loads (pyrt/gguf_weights.py)
        from pyrt.gguf_weights import load_gguf_tensors  # noqa: PLC0415

        tensors = load_gguf_tensors(args.model_path, measure=False)[0]
    else:
        tensors = quantize_weights(arrays, fmt, block, emb)
    ctx = max(args.prompt_tokens, 16 + args.gen_tokens, 256) + 1  # 256: room for the perplexity paragraph
    try:
        pyrt.gguf_tokenizer.GGUFTokenizer.from_metadata(md)
        tokenizer = md
    except pyrt.UnsupportedError:  # a tokenizer pyrt cannot build (yet): timing needs none
        tokenizer = STUB_TOKENIZER
    lm = pyrt.LanguageModel.from_parts(tensors, md, tokenizer, context_length=ctx, activations=activations)
    prompt = random_prompt(args.prompt_tokens, lm.config["vocab"])
    pp, tg = time_prompt_and_generation(lm.forward, lm.reset, prompt, args.gen_tokens, args.prompt_repeats)
    mean_ctx = 16 + args.gen_tokens / 2
    bytes_tok = weight_bytes_per_token(tensors) + kv_bytes_per_token(lm.config, int(mean_ctx))
    ppl = None
    if args.perplexity and tokenizer is md:
        from test_llm import PARAGRAPH  # noqa: PLC0415

        ppl = lm.perplexity(PARAGRAPH)
    return pp, tg, bytes_tok, bytes_tok * tg / 1e9, ppl


def bench_llama_cpp(path: Path, args):
    """llama.cpp on the GGUF as shipped: prompt processing and generation tokens/s, same protocol."""
    try:
        from llama_cpp import Llama  # noqa: PLC0415
    except ImportError:
        return None
    from helpers import llama_cpp_amx_hazard  # noqa: PLC0415 - tests/ is on sys.path

    hazard = llama_cpp_amx_hazard()
    if hazard:
        print(f"llama.cpp peer skipped: {hazard}", file=sys.stderr)
        return None
    ctx = max(args.prompt_tokens, 16 + args.gen_tokens, 256) + 1
    llm = Llama(model_path=str(path), n_ctx=ctx, n_threads=args.threads, n_threads_batch=args.threads,
                n_batch=args.prompt_tokens, verbose=False)
    prompt = random_prompt(args.prompt_tokens, llm.n_vocab())
    return time_prompt_and_generation(llm.eval, llm.reset, prompt, args.gen_tokens, args.prompt_repeats)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF file (default: the --family file under PYRT_MODELS)")
    ap.add_argument("--family", choices=sorted(FAMILY_FILES), default="smollm2")
    ap.add_argument("--formats", nargs="+", default=["f32", "f16", "q8", "q4", "q4a"])
    ap.add_argument("--blocks", nargs="+", type=int, default=[32])
    ap.add_argument("--embedding", default=None, help="format of the token embedding/output head (default: same)")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--prompt-repeats", type=int, default=1,
                    help="time the prompt this many times per engine and report the median")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--perplexity", action="store_true", help="also score the test paragraph")
    ap.add_argument("--same-bits", action="store_true",
                    help="also run q4a/32 with a q8 embedding (the GGUF's own bits) next to llama.cpp")
    ap.add_argument("--int8", action="store_true",
                    help="also run the same-bits model with opt-in int8 activations (docs/int8.md)")
    args = ap.parse_args()
    models = models_dir()
    folder, pattern = FAMILY_FILES[args.family]
    path = Path(args.model) if args.model else next(iter(sorted((models / folder).glob(pattern))), None)
    if path is None or not path.exists():
        print(f"no {args.family} GGUF under {models / folder} (tools/fetch_models.py or PYRT_MODELS)")
        return 1
    pyrt.set_num_threads(args.threads)
    import bandwidth  # noqa: PLC0415
    from machine_info import describe, markdown_lines  # noqa: PLC0415

    print("\n".join(markdown_lines(describe())))

    args.model_path = path
    dram = bandwidth.read_bandwidth(1 << 30, args.threads, repeats=3).gbps
    arrays, md = read_gguf(path)
    print(f"# {path.name} ({md.get('general.architecture')}); {time.strftime('%Y-%m-%d %H:%M')}; threads={args.threads}; cpu_isa={pyrt.get_cpu_isa()}; prompt={args.prompt_tokens} "
          f"gen={args.gen_tokens}; embedding={args.embedding or 'same'}; DRAM read bound {dram:.1f} GB/s")
    print(f"{'format':>14} {'pp tok/s':>9} {'tg tok/s':>9} {'MB/token':>9} {'GB/s':>6} {'of bound':>9} {'ppl':>7}")
    runs = [(fmt, block, args.embedding, "exact") for fmt in args.formats
            for block in (args.blocks if fmt in ("q8", "q4", "q4a") else [32])]
    if args.same_bits:
        runs.append(("gguf", 32, None, "exact"))
    if args.int8:
        runs.append(("q4a", 32, "q8", "int8"))
    same_bits = int8 = None
    for fmt, block, emb, activations in runs:
        pp, tg, bytes_tok, gbps, ppl = bench_format(arrays, md, fmt, block, emb, args, activations)
        name = fmt if fmt not in ("q8", "q4", "q4a") else f"{fmt}/{block}"
        if emb and emb != fmt:
            name += f"+{emb}emb"
        if activations == "int8":
            name += " i8"
            int8 = (pp, tg)
        elif fmt == "gguf":
            same_bits = (pp, tg, bytes_tok)
        ppl_s = f"{ppl:7.3f}" if ppl is not None else "      -"
        print(f"{name:>14} {pp:9.1f} {tg:9.2f} {bytes_tok / 1e6:9.1f} {gbps:6.2f} {gbps / dram:9.1%} {ppl_s}", flush=True)
    peer = bench_llama_cpp(path, args)
    if peer is None:
        print("llama.cpp: llama-cpp-python not installed (pip install llama-cpp-python), peer skipped")
    else:
        pp, tg = peer
        line = f"{'llama.cpp':>14} {pp:9.1f} {tg:9.2f}"
        if same_bits:
            gbps = same_bits[2] * tg / 1e9
            line += f" {same_bits[2] / 1e6:9.1f} {gbps:6.2f} {gbps / dram:9.1%}"
            bits = "same bits" if args.family == "smollm2" else "the file's types; Q4_K/Q6_K held as q4a/q8"
            line += f"\npyrt gguf (in place) vs llama.cpp ({bits}): prompt {same_bits[0] / pp:.2f}x, generation {same_bits[1] / tg:.2f}x"
        if int8:
            line += f"\npyrt q4a/32+q8emb int8 activations vs llama.cpp: prompt {int8[0] / pp:.2f}x, generation {int8[1] / tg:.2f}x"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
