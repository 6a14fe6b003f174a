"""Cost of pyrt.sampling.Sampler per token against a SmolLM2 decode step, and sampled against greedy
generation end to end (issue 16: sampling < 3 % of a step; sampled generation within 5 % of greedy).

    PYRT_MODELS=/work/models_cache python bench/bench_sampling.py [--steps 48]

The logits are real: recorded from the model's own decode. The structured-output rows add the
llguidance mask (a JSON schema) and its per-token matcher advance when llguidance is installed."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import pyrt
from pyrt.generation_options import parse_generation_options
from pyrt.sampling import Sampler

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
CASES = {
    "greedy": {},
    "temperature 0.8, top_p 0.95": dict(temperature=0.8, top_p=0.95),
    "temperature 0.8, top_k 40": dict(temperature=0.8, top_k=40),
    "temperature 1.0 (whole vocabulary)": dict(temperature=1.0),
    "min_p 0.05 + penalties + bias": dict(temperature=0.8, min_p=0.05, repetition_penalty=1.1, frequency_penalty=0.3,
                                           presence_penalty=0.3, logit_bias={2: -5.0}),
    "logprobs, top_logprobs 5": dict(temperature=0.8, top_p=0.95, logprobs=True, top_logprobs=5),
}


def _model_path() -> Path:
    root = Path(os.environ.get("PYRT_MODELS", "models")) / "smollm2"
    found = sorted(root.glob("*.gguf"))
    if not found:
        raise SystemExit(f"no SmolLM2 .gguf under {root}")
    return found[0]


def _decode_logits(model, steps: int) -> tuple[list[np.ndarray], float]:
    ids = model.encode_prompt([{"role": "user", "content": "Write a short story about a lighthouse keeper."}])
    model.reset()
    logits = model.prefill(ids)
    recorded, t0 = [], time.perf_counter()
    for _ in range(steps):
        recorded.append(logits.copy())
        logits = model.forward([int(np.argmax(logits))])
    return recorded, (time.perf_counter() - t0) / steps


def _sampler_cost(model, options: dict, recorded: list[np.ndarray], structured: bool) -> tuple[float, float]:
    """Median wall and thread-CPU seconds of one sampler call (medians resist a busy machine)."""
    o = parse_generation_options(model.tokenizer.vocab_size, seed=0, **options)
    wall, cpu = [], []
    for _ in range(3):
        constraint = None
        if structured:
            from pyrt.structured import GrammarConstraint, grammar_source

            constraint = GrammarConstraint(model.tokenizer, grammar_source(
                parse_generation_options(response_format={"type": "json_schema", "json_schema": {"schema": SCHEMA}})))
        sampler = Sampler(o, model.tokenizer.vocab_size, list(range(40)), constraint)
        generated: list[int] = []
        for logits in recorded:
            t0, c0 = time.perf_counter(), time.thread_time()
            token, _ = sampler(logits, generated)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            generated.append(token)
            if constraint is not None and constraint.finished:
                break
    return float(np.median(wall)), float(np.median(cpu))


def _generation_rate(model, tokens: int, **options) -> float:
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        no_end = {t: -100 for t in model.tokenizer.end_of_generation}  # always the full number of tokens
        out = model.create_completion("Once upon a time, in a small village by the sea,", max_tokens=tokens,
                                      logit_bias=no_end, seed=1, **options)
        best = max(best, out["usage"]["completion_tokens"] / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=48)
    args = ap.parse_args()
    model = pyrt.LanguageModel(_model_path(), context_length=512)
    recorded, step = _decode_logits(model, args.steps)
    import machine_info  # bench/ helper: the machine, date and load for the record

    m = machine_info.describe()
    print(f"{m['cpu_model']}, {m['cores_usable']} cores, load {m['load_average']}, {m['date_utc']}")
    print(f"SmolLM2-135M q4a decode step: {step * 1e3:.2f} ms ({pyrt.get_num_threads()} threads)")
    print(f"{'sampler':44s} {'us/token':>9s} {'cpu us':>7s} {'% of step':>9s}")
    rows = [(name, opts, False) for name, opts in CASES.items()]
    try:
        import llguidance  # noqa: F401
        rows += [("json_schema (llguidance), greedy", {}, True),
                 ("json_schema (llguidance), T 0.8 top_p 0.95", dict(temperature=0.8, top_p=0.95), True)]
    except ImportError:
        print("(llguidance not installed: no structured-output rows)")
    for name, opts, structured in rows:
        cost, cpu = _sampler_cost(model, opts, recorded, structured)
        print(f"{name:44s} {cost * 1e6:9.0f} {cpu * 1e6:7.0f} {100 * cost / step:8.2f}%")
    greedy = _generation_rate(model, 64, temperature=0.0)
    sampled = _generation_rate(model, 64, temperature=0.8, top_p=0.95)
    print(f"create_completion, 64 tokens: greedy {greedy:.1f} tok/s, temperature 0.8 top_p 0.95 {sampled:.1f} tok/s "
          f"({100 * (sampled / greedy - 1):+.1f} %)")


if __name__ == "__main__":
    main()
