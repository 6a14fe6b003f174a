#!/usr/bin/env python3
"""all-MiniLM-L6-v2 embeddings with 4-bit Linear weights against the FP32 model: cosine mean / min
over 64 varied sentences (very short, multilingual, long), for q4, q4a and q4n (docs/quantization.md).

Only the Linear weights are quantized (embedding tables stay f32), no calibration. Needs the model
folder (tools/fetch_models.py; $PYRT_MODELS).

    python bench/q4n_minilm_accuracy.py [--block 32] [--formats q4,q4a,q4n]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pyrt  # noqa: E402
from pyrt.cli.models_dir import models_dir  # noqa: E402
from pyrt.convert import convert_checkpoint  # noqa: E402

SHORT = ["Hi.", "No!", "Why?", "Thanks a lot.", "OK", "Rain again.", "See you soon.", "Well done!",
         "Coffee?", "It works.", "Stop.", "Good night."]
PLAIN = [
    "The committee postponed its decision until the next quarterly meeting.",
    "A small bakery on the corner sells bread that is still warm at seven in the morning.",
    "Gradient descent moves the parameters against the direction of the gradient.",
    "She forgot her umbrella and arrived at the interview completely soaked.",
    "The river flooded the lower fields twice this spring.",
    "Please restart the router if the connection drops again.",
    "The museum's new wing displays textiles from the fourteenth century.",
    "Our flight was delayed by three hours because of fog in Frankfurt.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "He practiced the violin every evening until his neighbours complained.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Inflation eased slightly in November, according to the statistics office.",
    "The goalkeeper saved a penalty in the last minute of the match.",
    "A compiler translates source code into machine instructions.",
    "The hikers reached the summit just before the storm rolled in.",
    "My grandmother still writes letters by hand to all her friends.",
    "The library extended its opening hours during the exam period.",
    "Volcanic ash grounded hundreds of flights across northern Europe.",
    "The startup raised its first round of funding from local investors.",
    "Cats sleep for up to sixteen hours a day.",
    "The treaty was signed after months of difficult negotiations.",
    "This laptop's battery lasts about nine hours on a single charge.",
    "The choir rehearsed the new piece for the winter concert.",
    "Researchers sequenced the genome of an ancient wheat variety.",
]
MULTILINGUAL = [
    "Der Zug nach Berlin fährt heute mit zwanzig Minuten Verspätung ab.",
    "El mercado abre temprano los sábados y cierra a mediodía.",
    "La réunion a été reportée à jeudi prochain.",
    "Il gatto dorme sul divano tutto il pomeriggio.",
    "O relatório final será publicado na próxima semana.",
    "De fiets staat achter het huis in de schuur.",
    "Kiedy skończysz pracę, zadzwoń do mnie.",
    "Дождь шёл весь день, и улицы опустели.",
    "東京の地下鉄はとても時間に正確です。",
    "我们明天早上八点在图书馆门口见面。",
    "오늘 저녁에 친구들과 영화를 보러 갑니다.",
    "الطقس اليوم مشمس وحار جداً.",
    "Bugün hava çok güzel, parka gidelim mi?",
    "Η θάλασσα ήταν ήρεμη όλο το πρωί.",
    "Sähkökatko kesti koko yön.",
    "हम कल सुबह पहाड़ों की ओर निकलेंगे।",
]
LONG_PARTS = [
    "The annual report describes how the cooperative expanded from a single dairy to a network of "
    "forty farms, how it financed new cooling equipment, why it changed its delivery schedule twice, "
    "and what the members decided about prices after a long and occasionally heated general assembly",
    "In the first chapter the author recounts a childhood spent between two harbour towns, the smell "
    "of tar and fish, the ferries that never ran on time, an uncle who repaired radios for the whole "
    "street, and the slow realisation that the sea, which had always seemed endless, was mostly work",
    "To configure the service, copy the example file, set the database address and the credentials, "
    "choose a log level, enable the metrics endpoint if you run a monitoring system, and then start "
    "the daemon; on failure, the log names the missing setting and the line of the file it expected",
]


def sentences() -> list[str]:
    long = []
    for i in range(12):  # > 128 tokens: three paragraphs in rotating order, repeated
        parts = LONG_PARTS[i % 3:] + LONG_PARTS[:i % 3]
        long.append((". ".join(parts) + ". ") * (1 + i % 2))
    out = SHORT + PLAIN + MULTILINGUAL + long
    assert len(out) == 64, len(out)
    return out


def encode(path: Path, texts: list[str]) -> np.ndarray:
    emb = np.asarray(pyrt.SentenceEncoder(str(path)).encode(texts), dtype=np.float64)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--formats", default="q4,q4a,q4n")
    args = p.parse_args(argv)
    src = models_dir() / "all-MiniLM-L6-v2"
    texts = sentences()
    keep_embeddings = ["embeddings=f32"]
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "f32.pyrt"
        convert_checkpoint(src, ref_path, dtype="f32")
        ref = encode(ref_path, texts)
        print(f"# all-MiniLM-L6-v2, Linear weights only, block {args.block}, 64 sentences, no calibration, "
              f"{time.strftime('%Y-%m-%d')}")
        print("| format | bits/weight (Linear) | cos mean | cos min | convert s |")
        print("|---|---|---|---|---|")
        for fmt in args.formats.split(","):
            path = Path(tmp) / f"{fmt}.pyrt"
            start = time.perf_counter()
            convert_checkpoint(src, path, dtype=fmt, block=args.block, rules=keep_embeddings)
            seconds = time.perf_counter() - start
            cos = np.sum(encode(path, texts) * ref, axis=1)
            bits = pyrt.FORMATS[fmt].bits_per_weight(args.block)
            print(f"| {fmt} | {bits:.3g} | {cos.mean():.4f} | {cos.min():.4f} | {seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
