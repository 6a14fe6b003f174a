"""What one mutant does: written to a file, then loaded (and converted, built, run) the way a user
would; the outcome is "ok", "typed" (a PyrtError) or "foreign:<ExceptionType>". Workers run a range
of cases in a subprocess so that a crash (death by a signal) or a hang is caught by the parent; cases
are reproducible from (seed, index) alone."""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

KINDS = ("pyrt", "safetensors", "gguf")
CASE_SECONDS = 10  # per-case CPU-time limit inside a worker (Python-level); the parent kills a stuck worker


class CaseTimeout(BaseException):
    pass


def seed_files(workdir: Path) -> dict[str, bytes]:
    from fuzz import seeds

    return {"pyrt": seeds.write_llama_pyrt(workdir / "seed_llama.pyrt").read_bytes(),
            "pyrt_bert": seeds.write_bert_pyrt(workdir / "seed_bert.pyrt").read_bytes(),
            "safetensors": seeds.small_safetensors_bytes(), "gguf": seeds.llama_gguf_bytes()}


def case_input(seeds_by_kind: dict[str, bytes], seed: int, index: int) -> tuple[str, bytes]:
    """The (kind, bytes) of case ``index`` of campaign ``seed``: kinds in turn, .pyrt alternating
    between the Llama and the BERT seed."""
    from fuzz.mutate import fix_pyrt_checksums, mutant

    kind = KINDS[index % len(KINDS)]
    rng = random.Random(zlib.crc32(f"{seed}:{index}".encode()))
    source = seeds_by_kind["pyrt_bert" if kind == "pyrt" and index % 2 else kind]
    data = mutant(source, rng)
    if kind == "pyrt" and rng.random() < 0.5:  # half with checksums recomputed: past the CRC checks
        data = fix_pyrt_checksums(data)
    return kind, data


def load_case(kind: str, path: Path) -> None:
    """Everything pyrt does with such a file: load, read every tensor, build and run the model."""
    import pyrt

    if kind == "pyrt":
        model = pyrt.load(path, verify=bool(zlib.crc32(path.read_bytes()[:64]) & 1))
        for t in model.tensors.values():
            if t.nbytes <= 1 << 20:
                t.dequantize()
        arch = model.metadata.get("architecture")
        if arch == "llama":
            lm = pyrt.LanguageModel(path, context_length=16)
            lm.generate("abc", max_new_tokens=2)
        elif arch == "bert":
            pyrt.SentenceEncoder(model).encode(["hello world"])
    elif kind == "safetensors":
        from pyrt.convert.readers.safetensors_file import open_safetensors

        source = open_safetensors(path, use_package=bool(len(path.read_bytes()) & 1))
        try:
            for t in source.tensors:
                np.asarray(t.load(), dtype=np.float32)
        finally:
            for close in source.closers:
                close()
    else:
        from pyrt.convert.readers.gguf_file import open_gguf

        source = open_gguf(path)
        for t in source.tensors:
            t.load()
        pyrt.LanguageModel(path, context_length=16, dtype="f32", embedding_dtype=None).generate("ab", max_new_tokens=2)


def run_case(kind: str, data: bytes, workdir: Path) -> str:
    import pyrt

    path = workdir / f"case.{kind}"
    path.write_bytes(data)
    try:
        load_case(kind, path)
        return "ok"
    except pyrt.PyrtError:
        return "typed"
    except CaseTimeout:
        return "hang"
    except Exception as exc:  # noqa: BLE001 - what the campaign counts
        return f"foreign:{type(exc).__name__}"
    except BaseException as exc:
        if type(exc).__name__ == "PanicException":
            return "foreign:PanicException"
        raise


def worker_main(seed: int, start: int, stop: int, progress: str, results: str) -> None:
    """Runs cases [start, stop): writes the index of the case about to run to ``progress`` (8 bytes)
    and one JSON line per non-ok-or-typed outcome, plus the final counts, to ``results``."""
    os.environ.setdefault("PYRT_NUM_THREADS", "1")
    import pyrt

    pyrt.set_num_threads(1)

    def on_timeout(signum, frame):
        raise CaseTimeout()
    # A CPU-time limit (ITIMER_PROF): a worker starved by a busy machine is slow, not hung.
    signal.signal(signal.SIGPROF, on_timeout)
    counts: dict[str, int] = {}
    peak = 0
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        workdir = Path(tmp)
        seeds_by_kind = seed_files(workdir)
        fd = os.open(progress, os.O_RDWR | os.O_CREAT)
        with open(results, "a") as out:
            for index in range(start, stop):
                os.pwrite(fd, index.to_bytes(8, "little"), 0)
                kind, data = case_input(seeds_by_kind, seed, index)
                signal.setitimer(signal.ITIMER_PROF, CASE_SECONDS)
                outcome = run_case(kind, data, workdir)
                signal.setitimer(signal.ITIMER_PROF, 0)
                counts[outcome] = counts.get(outcome, 0) + 1
                if outcome not in ("ok", "typed"):
                    out.write(json.dumps({"index": index, "kind": kind, "outcome": outcome}) + "\n")
                    out.flush()
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out.write(json.dumps({"done": [start, stop], "counts": counts, "peak_rss_kib": peak}) + "\n")
        os.pwrite(fd, stop.to_bytes(8, "little"), 0)
        os.close(fd)


if __name__ == "__main__":
    worker_main(*(int(a) for a in sys.argv[1:4]), sys.argv[4], sys.argv[5])
