"""Cost of building the GGUF tokenizers (pyrt/gguf_tokenizer.py) and of encoding with them, against
llama.cpp's own tokenizer (llama-cpp-python, vocabulary only) when it is installed.

    PYRT_MODELS=/work/models_cache python bench/bench_tokenizers.py [--repeat 3]

"build" is the first GGUFTokenizer.from_metadata of a process (the metadata check, the merges a
SentencePiece vocabulary derives from its scores, the tokenizers objects); "cached" is the next one
(the check and the cache look-up). Wall and CPU seconds are both printed: on a shared machine the
CPU time is the steadier figure. Each build runs in a fresh process so that nothing is cached.
Encoding: a 19.8 KB mixed text (English, Japanese, code, emoji), best of five."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = {"SmolLM2 (gpt2/smollm, 49,152)": "smollm2", "Qwen2.5-Coder (gpt2/qwen2, 151,936)": "qwen2.5-coder-0.5b",
          "Gemma 3 (llama/SentencePiece, 262,144)": "gemma3-270m"}
TEXT = ("The quick brown fox jumps over the lazy dog; 日本語のテキスト, def f(x):\n\treturn x  # 😀\n" * 200)


def _gguf(folder: str) -> Path:
    found = sorted((Path(os.environ.get("PYRT_MODELS", "models")) / folder).glob("*.gguf"))
    if not found:
        raise SystemExit(f"no .gguf under {folder}")
    return found[0]


def _one_process(path: str) -> dict:
    """Runs in a child: header read, cold build, cached build, encode speed."""
    import gguf

    from pyrt.convert.readers.gguf_limits import read_header
    from pyrt.gguf_tokenizer import GGUFTokenizer

    kv, _ = read_header(Path(path), {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()})
    out = {}
    for name in ("build", "cached"):
        wall, cpu = time.perf_counter(), time.process_time()
        tok = GGUFTokenizer.from_metadata(kv)
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu)
    out["encode"] = (_best_of(5, lambda: tok.encode(TEXT)), len(tok.encode(TEXT)))
    return out


def _best_of(n: int, call) -> float:
    best = float("inf")
    for _ in range(n):
        wall = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - wall)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per model (best is printed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_one_process(args.child)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    import machine_info  # bench/ helper: the machine, date and load for the record

    m = machine_info.describe()
    print(f"{m['cpu_model']}, {m['cores_usable']} cores, load {m['load_average']}, {m['date_utc']}")
    print(f"{'vocabulary':40s} {'build s':>8s} {'cpu s':>6s} {'cached s':>9s} {'encode MB/s':>12s} {'llama.cpp MB/s':>15s}")
    mb = len(TEXT.encode()) / 1e6
    root = str(Path(__file__).resolve().parents[1])  # the pyrt of this checkout, in the children too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    for label, folder in MODELS.items():
        path = str(_gguf(folder))
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", path], capture_output=True, text=True,
                                          check=True, env=env).stdout) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["build"][0])
        encode = min(r["encode"][0] for r in runs)
        peer = "-"
        try:
            import llama_cpp

            llama = llama_cpp.Llama(path, vocab_only=True, verbose=False)
            peer = f"{mb / _best_of(5, lambda: llama.tokenize(TEXT.encode(), add_bos=True, special=True)):.2f}"
            llama.close()
        except ImportError:
            pass
        print(f"{label:40s} {best['build'][0]:8.2f} {best['build'][1]:6.2f} {best['cached'][0]:9.3f} "
              f"{mb / encode:12.2f} {peer:>15s}")


if __name__ == "__main__":
    main()
