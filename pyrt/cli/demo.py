"""`pyrt demo`: all-MiniLM-L6-v2 end to end. Takes the checkpoint from the models folder that
`python tools/fetch_models.py` fills ($PYRT_MODELS, else ~/.cache/pyrt/models), converts it to f32,
f16, q8 and q4, and prints one table (file size, bits per weight, load time, sentences/s, cosine
against the f32 run on a built-in sentence set); then answers a small semantic search with q8."""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import BLOCK_SIZES
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, command
from .models_dir import MINILM, models_dir
from .options import at_least, subcommand_parser

EXIT_CODES = "0 ok, 1 model not in the models folder, missing package or failure, 2 usage"
FORMATS = ("f32", "f16", "q8", "q4")
SEARCH_FORMAT = "q8"

# Mixed topics and lengths, a few non-English: the cosine column is the minimum over these.
SENTENCES = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "The new movie is awesome.",
    "The cat sits outside.", "The new movie is so great.", "A man is playing guitar.",
    "Do you like pizza?", "The stock market fell sharply after the announcement.",
    "Quantum computers use qubits instead of bits.", "How do I reset my password?",
    "Paris is the capital of France.", "Il pleut beaucoup à Paris en novembre.",
    "Der Zug nach Berlin hat zwanzig Minuten Verspätung.", "El perro duerme en el sofá.",
    "東京は日本の首都です。", "Photosynthesis converts light energy into chemical energy in plants.",
    "The committee postponed its decision until more data on the long-term effects of the policy "
    "could be collected and reviewed by independent experts.",
    "Hi", "Thanks!", "Python is a popular programming language for data science.",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs.",
    "Regular exercise improves both physical and mental health.", "The train was late again this morning.",
    "Machine learning models can be compressed by quantizing their weights to fewer bits.",
    "She read the whole novel in one sitting.",
]
SEARCH_CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
    "Bananas are rich in potassium.",
    "A neural network learns by adjusting its weights with gradient descent.",
    "The Great Barrier Reef is the world's largest coral reef system.",
    "Espresso is made by forcing hot water through finely ground coffee.",
    "Mount Everest is the highest mountain above sea level.",
    "Quantization makes a model smaller by storing its weights in fewer bits.",
    "The violin has four strings tuned in perfect fifths.",
]
SEARCH_QUERIES = ["Which famous landmark is in France?", "How do you make coffee?",
                  "How can a model's weights be made smaller?", "tallest peak on Earth"]


def register(subparsers: Any) -> None:
    p = subcommand_parser(subparsers, "demo", __doc__, "convert all-MiniLM-L6-v2 to f32/f16/q8/q4 and compare them",
                          EXIT_CODES)
    p.add_argument("--cache", type=Path, default=None,
                   help="the models folder (default: $PYRT_MODELS, else ~/.cache/pyrt/models)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where the converted .pyrt files go (default: a temporary folder, removed afterwards)")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"formats to compare (default {','.join(FORMATS)})")
    p.add_argument("--block", type=int, default=32, choices=BLOCK_SIZES, help="block size of the q-formats (default 32)")
    p.add_argument("--batch-size", type=at_least(1), default=32, help="sentences per batch (default 32)")
    p.set_defaults(func=run)


def find_model(cache: Path | None) -> Path:
    """The sentence-transformers folder all-MiniLM-L6-v2 in the models folder."""
    folder = (cache or models_dir()) / MINILM
    if not (folder / "model.safetensors").is_file():
        fetch = "python tools/fetch_models.py --only minilm" + (f" --cache {cache}" if cache else "")
        raise CommandError(f"{folder} has no model.safetensors: fetch it with `{fetch}` from a pyrt checkout "
                           f"(it writes exactly there), or point --cache or $PYRT_MODELS at a folder that "
                           f"holds {MINILM}/")
    return folder


def bits_per_weight(model: Any) -> float:
    elements = sum(int(np.prod(t.shape)) for t in model.tensors.values())
    return 8.0 * sum(t.nbytes for t in model.tensors.values()) / max(elements, 1)


def measure(path: Path, batch_size: int) -> dict[str, Any]:
    """Load time, throughput and embeddings of one converted file."""
    from .. import load
    from ..encoder import SentenceEncoder

    start = time.perf_counter()
    model = load(path)
    encoder = SentenceEncoder(model)
    load_s = time.perf_counter() - start
    encoder.encode(SENTENCES[:4], batch_size=batch_size)  # first touch of the mapped weights
    start = time.perf_counter()
    embeddings = encoder.encode(SENTENCES, batch_size=batch_size)
    encode_s = time.perf_counter() - start
    return {"encoder": encoder, "embeddings": embeddings, "load_s": load_s,
            "sentences_per_s": len(SENTENCES) / encode_s, "file_bytes": path.stat().st_size,
            "bits_per_weight": bits_per_weight(model)}


def print_table(rows: dict[str, dict[str, Any]], reference: str) -> None:
    print(f"\nall-MiniLM-L6-v2 on {len(SENTENCES)} sentences; cosine against the {reference} run")
    print(f"{'format':<7} {'file MB':>8} {'bits/w':>7} {'convert s':>9} {'load ms':>8} {'sent/s':>8} "
          f"{'min cos':>9} {'mean cos':>9}")
    ref = rows[reference]["embeddings"].astype(np.float64)
    for fmt, r in rows.items():
        e = r["embeddings"].astype(np.float64)
        cos = (e * ref).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(ref, axis=1))
        print(f"{fmt:<7} {r['file_bytes'] / 1e6:>8.1f} {r['bits_per_weight']:>7.2f} {r['convert_s']:>9.1f} "
              f"{r['load_s'] * 1e3:>8.1f} {r['sentences_per_s']:>8.1f} {cos.min():>9.6f} {cos.mean():>9.6f}")


def semantic_search(encoder: Any, fmt: str) -> None:
    print(f"\nsemantic search over {len(SEARCH_CORPUS)} sentences ({fmt} model):")
    corpus = encoder.encode(SEARCH_CORPUS)
    queries = encoder.encode(SEARCH_QUERIES)
    scores = queries @ corpus.T  # embeddings are L2-normalised: dot product = cosine
    for q, row in zip(SEARCH_QUERIES, scores):
        best = np.argsort(-row)[:2]
        print(f"  {q}")
        for i in best:
            print(f"    {row[i]:.3f}  {SEARCH_CORPUS[i]}")


def demo(args: argparse.Namespace) -> int:
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats:
        raise CommandError("--formats is empty", EXIT_USAGE)
    from ..convert import convert_checkpoint

    folder = find_model(args.cache)
    print(f"checkpoint: {folder}")
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="pyrt-demo-"))
    rows: dict[str, dict[str, Any]] = {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            path = out_dir / f"minilm-{fmt}.pyrt"
            start = time.perf_counter()
            convert_checkpoint(folder, path, dtype=fmt, block=args.block)
            convert_s = time.perf_counter() - start
            rows[fmt] = measure(path, args.batch_size)
            rows[fmt]["convert_s"] = convert_s
            print(f"  {fmt}: converted in {convert_s:.1f} s, {rows[fmt]['sentences_per_s']:.1f} sentences/s",
                  file=sys.stderr)
        print_table(rows, formats[0])
        search_fmt = SEARCH_FORMAT if SEARCH_FORMAT in rows else formats[-1]
        semantic_search(rows[search_fmt]["encoder"], search_fmt)
    finally:
        rows.clear()  # drop the mappings before the files go
        if args.out_dir is None:
            shutil.rmtree(out_dir, ignore_errors=True)
    return EXIT_OK


# OSError: --out-dir cannot be made or written.
run = command(demo, failures=((OSError, EXIT_FAILED),), extras=("tokenizers", "convert"))
