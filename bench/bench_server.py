"""`pyrt serve` under load: aggregate decode throughput with 1 and with 8 concurrent streaming
clients (issue 16's target: >= 3x with 8) and time to first token for a short chat prompt after
load (target < 50 ms), measured with the official openai client against an in-process server on
127.0.0.1.

    python bench/bench_server.py [SmolLM2.gguf or .pyrt] [--tokens 64] [--clients 8]

Decode throughput = completion tokens / (last token time - first token time), summed over the
clients and measured over the window in which all of them stream, so prefill is left out. Prints the
machine block (bench/machine_info.py) first: the figures are only comparable on the same machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine_info  # noqa: E402

import pyrt  # noqa: E402

CHAT = [{"role": "user", "content": "Hi!"}]
PROMPTS = ["The history of the printing press", "How rivers shape valleys", "A short story about a lighthouse",
           "Why the sky is blue", "The rules of chess", "How bread is baked", "The life of honeybees",
           "A guide to the night sky"]


def start_server(model):
    import uvicorn

    from pyrt.server import create_app

    server = uvicorn.Server(uvicorn.Config(create_app({"model": model}), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


def stream_once(client, prompt: str, tokens: int) -> tuple[float, float, float, int]:
    """(request start, first token, last token, completion tokens) of one streamed completion."""
    start = time.perf_counter()
    first = last = None
    count = 0
    for chunk in client.completions.create(model="model", prompt=prompt, max_tokens=tokens, temperature=0,
                                           stream=True):
        if chunk.choices and chunk.choices[0].text:
            last = time.perf_counter()
            first = first or last
            count += 1  # one chunk per token here (SmolLM2's pieces are whole characters)
    return start, first or start, last or start, count


def aggregate_tokens_per_s(client, clients: int, tokens: int) -> float:
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda p: stream_once(client, p, tokens), PROMPTS[:clients]))
    window = max(r[2] for r in runs) - min(r[1] for r in runs)
    return sum(r[3] - 1 for r in runs) / window  # tokens after each client's first


def time_to_first_token_ms(client, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for chunk in client.chat.completions.create(model="model", messages=CHAT, max_tokens=1, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                out.append((time.perf_counter() - start) * 1e3)
                break
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=None, help="SmolLM2 .gguf/.pyrt (default: the fetched SmolLM2)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.model is None:
        from pyrt.cli.models_dir import models_dir
        args.model = str(sorted((models_dir() / "smollm2").glob("*.gguf"))[0])
    import openai

    machine = machine_info.describe()
    model = pyrt.LanguageModel(args.model, context_length=512)
    server, thread, port = start_server(model)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
    try:
        time_to_first_token_ms(client, 1)  # warm-up: first request after load
        ttft = time_to_first_token_ms(client, args.repeats)
        single = aggregate_tokens_per_s(client, 1, args.tokens)
        many = aggregate_tokens_per_s(client, args.clients, args.tokens)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    machine["load_average_end"] = machine_info.load_average()
    print("\n".join(machine_info.markdown_lines(machine)))
    busy = (machine["load_average"] or (0,))[0] > 0.5 * machine["cores_usable"]
    if busy:
        print("- measured on a busy machine: other processes share the cores, and more client threads also "
              "win this process a larger share of them, which inflates the concurrent figure")
    engine = "batch engine" if hasattr(model, "engine") else "serial stand-in (no batch engine in this build)"
    print(f"\nengine: {engine}; {args.tokens} tokens per client, greedy")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| time to first token, short chat prompt (median of {args.repeats}) | {statistics.median(ttft):.1f} ms | < 50 ms |")
    print(f"| aggregate decode, 1 streaming client | {single:.1f} tokens/s | |")
    print(f"| aggregate decode, {args.clients} streaming clients | {many:.1f} tokens/s | |")
    print(f"| ratio | {many / single:.2f}x | >= 3x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
