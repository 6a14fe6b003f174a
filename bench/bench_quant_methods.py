#!/usr/bin/env python3
"""Quantization methods side by side: round to nearest (RTN), searched scales, searched scales
weighted by calibration activations (pyrt.calibration), and GPTQ on the calibrated searched scales
(pyrt/quantize_gptq.py, the converter's default), on the real models, as a markdown table.

Encoder: all-MiniLM-L6-v2, only the Linear weights quantized (embeddings and norms stay f32), the
cosine of each of 64 evaluation sentences' embeddings to the FP32 model's (mean and min). The
sentences are our own (very short, multilingual, code, numbers, some over 128 tokens) and share
nothing with the calibration text (pyrt/data/calibration/default.txt).
Decoder: SmolLM2-135M-Instruct from its Q4_1 GGUF (the only source): perplexity of an evaluation
text for the dequantized source weights and for q4/32 requantized by RTN and by the calibrated
search and GPTQ (token embedding q8 in every case, as llama.cpp does); how much of the gap to the
source closes; the converter's accuracy report (perplexity, KL, top-1 on 256 tokens of
pyrt/data/evaluation/decoder.txt) for the searched and the GPTQ conversion.
Held out: the same cosines on pyrt/data/evaluation/sentences.txt and heldout.txt (66 and 48
sentences written separately; heldout.txt never used to choose a method), so that the gains are
not fitted to the 64 sentences.
Conversion: wall time of pyrt.convert.convert_checkpoint with calibration (the default).

Usage: python bench/bench_quant_methods.py [--models DIR] [--skip-llm] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyrt  # noqa: E402
from pyrt.calibration import (calibration_sentences, collect_activation_stats, collect_second_moments,  # noqa: E402
                              default_calibration_texts)
from pyrt.calibration_synthetic import ENCODER_GPTQ_DAMP as SYNTHETIC_DAMP, synthetic_calibration_texts  # noqa: E402
from pyrt.quantize_gptq import quantize_gptq  # noqa: E402

EVAL_SENTENCES = [
    "hi", "no", "Thanks!", "Why?", "ok then", "42", "¡Hola!", "Danke schön.", "Merci beaucoup.", "谢谢", "ありがとう",
    "The train leaves at 6:45 from platform nine.", "My laptop battery dies after an hour.",
    "Can you recommend a good book about the history of mathematics?", "Turn left after the second traffic light.",
    "The soup needs more salt and a little lemon.", "We adopted a three-legged dog from the shelter last spring.",
    "Die Sitzung wurde wegen eines Stromausfalls abgebrochen.", "Wo finde ich den nächsten Geldautomaten?",
    "Mein Bruder repariert alte Fahrräder in seiner Garage.", "Les enfants construisent un château de sable sur la plage.",
    "Je cherche un appartement avec un balcon près du centre.", "La conférence commence demain à neuf heures précises.",
    "El perro del vecino ladra toda la noche.", "¿Dónde puedo comprar sellos para enviar una carta a Chile?",
    "Mañana lloverá en el norte y hará sol en el sur.", "Il treno per Milano è in ritardo di venti minuti.",
    "O museu fecha às segundas-feiras.", "Het regent al drie dagen in Amsterdam.", "Я люблю читать по вечерам.",
    "这个周末我想去海边看日出。", "他每天早上六点起床跑步。", "请把窗户关上，外面太吵了。",
    "私は毎朝コーヒーを二杯飲みます。", "来週の月曜日に歯医者の予約があります。", "この道をまっすぐ行くと駅に着きます。",
    "오늘 날씨가 정말 좋네요.", "x = [i ** 2 for i in range(100) if i % 3 == 0]",
    "while (queue.length) { const node = queue.shift(); visit(node); }", "SELECT name, price FROM products ORDER BY price DESC LIMIT 5;",
    "ERROR 502: bad gateway, upstream server did not respond within 60 s", "pip install --upgrade numpy==1.26.4",
    "1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89", "Total: 1,284.50 EUR (VAT 21% included)", "GDP grew 2.3% in Q3 2023.",
    "Version 4.0.2 released on 2024-11-03.", "- eggs\n- butter\n- 500 g flour\n- sugar",
    "Q: What is the boiling point of water at sea level? A: 100 degrees Celsius.",
    "The defendant denied all charges and his lawyer requested a postponement of the trial.",
    "Photosynthesis in desert plants often happens at night to save water.",
    "A small earthquake shook the coastal town but caused no damage.",
    "The researchers trained the network on satellite images to count trees in tropical forests.",
    "Please attach the signed contract and a copy of your identity card to the email.",
    "I can't believe the concert sold out in four minutes!",
    "He painted the fence blue, then changed his mind and painted it white.",
    "Maintenance of the elevator is scheduled for Thursday morning; please use the stairs.",
    ("In the early twentieth century, the expansion of railway networks transformed rural economies, allowing "
     "farmers to sell perishable goods in distant cities, while at the same time drawing young workers away from "
     "villages toward factories, a shift that historians still debate in terms of its social costs and benefits. ") * 2,
    ("Die Energiewende verlangt nicht nur neue Windräder und Solaranlagen, sondern auch Speicher, Leitungen und "
     "flexible Verbraucher, die ihren Strombedarf an das schwankende Angebot anpassen können, was Netzbetreiber, "
     "Industrie und Haushalte gleichermaßen vor große Aufgaben stellt. ") * 2,
    ("La biodiversité des océans est menacée par la surpêche, le réchauffement de l'eau et la pollution plastique, "
     "et de nombreux scientifiques demandent la création de vastes zones protégées où toute activité industrielle "
     "serait interdite pendant plusieurs décennies. ") * 2,
    ("def merge(a, b):\n    out, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n"
     "            out.append(a[i]); i += 1\n        else:\n            out.append(b[j]); j += 1\n"
     "    return out + a[i:] + b[j:]\n") * 2,
    ("随着城市人口不断增加，交通拥堵和空气污染成为许多大城市面临的共同问题，政府正在通过发展公共交通、"
     "鼓励骑行以及推广新能源汽车来改善居民的出行环境。") * 3,
    "The quick brown fox.", "Yes, absolutely.", "Is the museum open on public holidays?",
]
assert len(EVAL_SENTENCES) == 64

# The perplexity text: our own, not in the calibration text.
LLM_EVAL_TEXT = (
    "The harbour was quiet in the early morning. Fishing boats came back one after another, and the gulls followed "
    "them, screaming for scraps. On the pier, an old man mended a net with quick, patient hands. He had done this "
    "work for fifty years and said he could do it with his eyes closed. A girl asked him whether the sea had changed "
    "since he was young. He thought for a while and answered that the sea was the same, but there were fewer fish "
    "and more plastic. Then he went back to his net, and the girl walked on toward the market, where the first "
    "stalls were opening and the smell of fresh bread mixed with the smell of salt."
)

SCHEMES = [  # (label, format, method, calibrated: False, True (the default text) or "synthetic")
    ("q4 RTN", "q4", "rtn", False), ("q4 searched", "q4", "search", False), ("q4 searched + calibration", "q4", "search", True),
    ("q4a RTN", "q4a", "rtn", False), ("q4a searched", "q4a", "search", False),
    ("q4a searched + calibration", "q4a", "search", True),
    ("q4n searched", "q4n", "search", False), ("q4n searched + calibration", "q4n", "search", True),
    ("q8 RTN", "q8", "rtn", False), ("q8 searched", "q8", "search", False), ("q8 searched + calibration", "q8", "search", True),
    ("q4 GPTQ (calibrated search)", "q4", "gptq", True), ("q4a GPTQ (calibrated search)", "q4a", "gptq", True),
    ("q4n GPTQ (calibrated search)", "q4n", "gptq", True), ("q8 GPTQ (calibrated search)", "q8", "gptq", True),
    # no calibration text: statistics from random sequences of the model's tokens (--calibration synthetic)
    ("q4a searched + synthetic calibration", "q4a", "search", "synthetic"),
    ("q4a GPTQ, synthetic calibration (no text)", "q4a", "gptq", "synthetic"),
    ("q4n GPTQ, synthetic calibration (no text)", "q4n", "gptq", "synthetic"),
]


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return f"{model}, {os.cpu_count()} logical CPUs, pyrt ISA {pyrt.get_cpu_isa()}, {pyrt.get_num_threads()} threads"


def _cosines(emb: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))


def minilm(models: Path, rows: list[str]) -> None:
    from safetensors.numpy import load_file

    path = models / "all-MiniLM-L6-v2"
    arrays = {k: v.astype(np.float32) for k, v in load_file(str(path / "model.safetensors")).items() if v.dtype.kind == "f"}
    files = {n: (path / n).read_text(encoding="utf-8")
             for n in ("tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json")}
    config = json.loads((path / "config.json").read_text())
    f32 = {k: pyrt.quantize(v, "f32") for k, v in arrays.items()}
    ref_model = pyrt.SentenceEncoder.from_parts(f32, config, files)
    sets = {"eval64": EVAL_SENTENCES}
    for name in ("sentences.txt", "heldout.txt"):
        sets[name] = [line for line in (REPO / "pyrt/data/evaluation" / name).read_text(encoding="utf-8").splitlines()
                      if line.strip()]
    refs = {k: ref_model.encode(v) for k, v in sets.items()}
    # as the converter calibrates an encoder (pyrt/convert/calibrate.py): on the text's sentences
    sentences = calibration_sentences(default_calibration_texts())
    stats = collect_activation_stats(ref_model, sentences, batch_size=64)
    linear = [k for k, v in arrays.items() if k.startswith("encoder.") and v.ndim == 2]
    start = time.perf_counter()
    moments = collect_second_moments(ref_model, sentences, linear, batch_size=64, dtype=np.float32)
    moments_seconds = time.perf_counter() - start
    synthetic = synthetic_calibration_texts(ref_model)
    synthetic_stats = collect_activation_stats(ref_model, synthetic, batch_size=64)
    synthetic_moments = collect_second_moments(ref_model, synthetic, linear, batch_size=64, dtype=np.float32)
    rows += ["", "### all-MiniLM-L6-v2, Linear weights only, block 32: cosine to FP32, mean / min", "",
             "| scheme | bits/weight | eval64 | sentences.txt | heldout.txt | quantize s |", "|---|---|---|---|---|---|"]
    for label, fmt, method, calibrated in SCHEMES:
        tensors = dict(f32)
        start = time.perf_counter()
        for k in linear:
            source = synthetic_stats if calibrated == "synthetic" else stats
            imp = source[k].astype(np.float32) if calibrated else None
            if method == "gptq" and calibrated == "synthetic":
                tensors[k] = quantize_gptq(arrays[k], fmt, 32, synthetic_moments[k], damp=SYNTHETIC_DAMP, importance=imp)
            elif method == "gptq":
                tensors[k] = quantize_gptq(arrays[k], fmt, 32, moments[k], importance=imp)
            else:
                tensors[k] = pyrt.quantize(arrays[k], fmt, 32, importance=imp, method=method)
        seconds = time.perf_counter() - start
        model = pyrt.SentenceEncoder.from_parts(tensors, config, files)
        cos = {k: _cosines(model.encode(v), refs[k]) for k, v in sets.items()}
        bits = pyrt.FORMATS[fmt].bits_per_weight(32)
        rows.append(f"| {label} | {bits:.1f} | " + " | ".join(f"{c.mean():.4f} / {c.min():.4f}" for c in cos.values())
                    + f" | {seconds:.2f} |")
        print(rows[-1], flush=True)
    rows.append(f"\nSecond moments of the 36 Linear inputs (GPTQ): {moments_seconds:.1f} s wall")
    tmp = Path(tempfile.mkdtemp())
    from pyrt.convert import convert_checkpoint

    for method in ("search", "gptq"):  # as `pyrt convert --dtype q4a [--quant-method search]` (with the report)
        start, cpu = time.perf_counter(), time.process_time()
        report = convert_checkpoint(path, tmp / "m.pyrt", dtype="q4a", block=32, quant_method=method, accuracy=True)
        m = report["accuracy"]["metrics"]
        rows.append(f"\nConversion all-MiniLM-L6-v2 -> q4a/32 ({method}, default calibration, accuracy report): "
                    f"{time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU "
                    f"(calibration {report['calibration']['seconds']:.1f} s wall), load average "
                    f"{os.getloadavg()[0]:.1f}; report cosine {m['cos_mean']:.4f} / {m['cos_min']:.4f}")
        print(rows[-1], flush=True)


def smollm2(models: Path, rows: list[str]) -> None:
    from pyrt.convert.readers.gguf_file import quantize_weights, read_gguf

    gguf = sorted((models / "smollm2").glob("*.gguf"))[0]
    arrays, md = read_gguf(gguf)

    def ppl(tensors) -> float:
        return pyrt.LanguageModel.from_parts(tensors, md, md, context_length=512).perplexity(LLM_EVAL_TEXT)

    source = ppl(quantize_weights(arrays, "f32"))
    rtn = {k: pyrt.quantize(v, "f32") if v.ndim == 1 else
           pyrt.quantize(v, "q8" if k in ("token_embd.weight", "output.weight") else "q4", 32, method="rtn")
           for k, v in arrays.items()}
    ppl_rtn = ppl(rtn)
    tmp = Path(tempfile.mkdtemp())
    from pyrt.convert import convert_checkpoint

    converted = {}
    for method in ("search", "gptq"):
        start, cpu = time.perf_counter(), time.process_time()
        report = convert_checkpoint(gguf, tmp / "s.pyrt", dtype="q4", block=32, quant_method=method, accuracy=True)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        converted[method] = (ppl(dict(pyrt.load(tmp / "s.pyrt").tensors)), report["accuracy"]["metrics"], seconds, cpu,
                             report["calibration"]["seconds"])
    searched = quantize_weights(arrays, "q4", 32, "q8", method="search")
    ppl_search = ppl(searched)
    gap = ppl_rtn - source
    rows += ["", f"### SmolLM2-135M-Instruct (source: {gguf.name}), perplexity of a {len(LLM_EVAL_TEXT)}-character text",
             "", "| weights | perplexity | gap to source closed | report: ppl / source ppl, KL, top-1 |", "|---|---|---|---|",
             f"| source (Q4_1, dequantized) | {source:.3f} | | |", f"| q4/32 RTN | {ppl_rtn:.3f} | 0 % | |",
             f"| q4/32 searched | {ppl_search:.3f} | {100 * (ppl_rtn - ppl_search) / gap:.0f} % | |"]
    for method, label in (("search", "searched + calibration (--quant-method search)"),
                          ("gptq", "GPTQ on the calibrated search (pyrt convert's default)")):
        p, m, seconds, cpu, cal = converted[method]
        rows.append(f"| q4/32 {label} | {p:.3f} | {100 * (ppl_rtn - p) / gap:.0f} % | {m['perplexity']:.3f} / "
                    f"{m['source_perplexity']:.3f}, {m['kl']:.4f}, {m['top1']:.3f} |")
    for method in ("search", "gptq"):
        _, _, seconds, cpu, cal = converted[method]
        rows.append(f"\nConversion SmolLM2 -> q4/32 ({method}, default calibration, accuracy report): {seconds:.1f} s "
                    f"wall, {cpu:.1f} s CPU (calibration {cal:.1f} s wall), load average {os.getloadavg()[0]:.1f}")
    print("\n".join(rows[-10:]), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=os.environ.get("PYRT_MODELS", str(Path.home() / ".cache/pyrt/models")))
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--skip-encoder", action="store_true")
    ap.add_argument("--out", help="also write the markdown here")
    args = ap.parse_args()
    rows = [f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}"]
    print(rows[0], flush=True)
    if not args.skip_encoder:
        minilm(Path(args.models), rows)
    if not args.skip_llm:
        smollm2(Path(args.models), rows)
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
