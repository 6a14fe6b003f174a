"""`pyrt batch embed|generate` (docs/cli.md, docs/scale-out.md) on the module's local Ray: Parquet,
JSONL and CSV in, Parquet parts out, equal to in-process results; a rerun after a partial output
(parts missing, a temporary file left behind) completes it without losing or duplicating a row;
bad jobs end with the documented exit codes before Ray runs anything."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import pyrt
from pyrt.cli import main

pytest.importorskip("ray", reason="the Ray Data tests need the 'ray' extra")
pa = pytest.importorskip("pyarrow", reason="the Ray Data tests need the 'ray' extra")
pq = pytest.importorskip("pyarrow.parquet")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")


def read_output(folder) -> "pa.Table":
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables(pq.read_table(p) for p in parts)


def reference_embeddings(model, texts):
    previous = pyrt.get_num_threads()
    pyrt.set_num_threads(1)
    try:
        return pyrt.SentenceEncoder(model).encode(texts)
    finally:
        pyrt.set_num_threads(previous)


@pytest.fixture(scope="module")
def corpus(make_sentences):
    return make_sentences(300)


def test_parquet_jsonl_and_csv_give_the_in_process_embeddings(local_ray, minilm_q8, corpus, tmp_path, capsys):
    expected = reference_embeddings(minilm_q8, corpus)
    pq.write_table(pa.table({"text": corpus, "n": np.arange(300)}), tmp_path / "in.parquet")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus))
    (tmp_path / "in.csv").write_text("text\n" + "".join(f'"{t}"\n' for t in corpus))
    for name in ("in.parquet", "in.jsonl", "in.csv"):
        out = tmp_path / f"out-{name.replace('.', '-')}"
        code = main(["batch", "embed", str(tmp_path / name), str(out), "--model", str(minilm_q8),
                     "--rows-per-part", "128", "--batch-size", "64", "--actors", "2"])
        assert code == 0, capsys.readouterr().err
        table = read_output(out)
        assert [p.name for p in sorted(out.glob("part-*"))] == ["part-00000.parquet", "part-00001.parquet",
                                                                 "part-00002.parquet"]
        assert table["row_id"].to_pylist() == list(range(300)) and table["text"].to_pylist() == corpus
        assert np.array_equal(np.array(table["embedding"].to_pylist(), np.float32), expected)
    assert "part 2 written" in capsys.readouterr().err  # progress, part by part


def test_a_rerun_completes_a_partial_output_without_loss_or_duplication(local_ray, minilm_q8, corpus, tmp_path,
                                                                        capsys):
    pq.write_table(pa.table({"text": corpus}), tmp_path / "in.parquet")
    out = tmp_path / "out"
    args = ["batch", "embed", str(tmp_path / "in.parquet"), str(out), "--model", str(minilm_q8),
            "--rows-per-part", "50", "--actors", "2", "--batch-size", "25"]
    assert main(args) == 0
    complete = read_output(out)
    # An interrupted run: two parts never written, one half-written under its temporary name.
    (out / "part-00001.parquet").unlink()
    (out / "part-00004.parquet").rename(out / ".part-00004.parquet.12345.tmp")
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "4 already in" in err and "2 to compute" in err
    assert not list(out.glob(".*.tmp"))
    assert all((out / name).stat().st_mtime_ns == t for name, t in kept.items())  # finished parts untouched
    again = read_output(out)
    assert again["row_id"].to_pylist() == list(range(300))
    assert again.equals(complete)
    # A third run has nothing to do; a run with other options is refused.
    assert main(args) == 0 and "0 to compute" in capsys.readouterr().err
    assert main(args[:-4] + ["--rows-per-part", "60"]) == 2
    assert "another job" in capsys.readouterr().err


def test_generate_writes_the_in_process_completions(local_ray, smollm2_q4a, tmp_path, capsys):
    prompts = ["The capital of France is", "Water boils at", "Once upon a time", "The colour of the sky is"]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(prompts)))
    out = tmp_path / "out"
    code = main(["batch", "generate", str(tmp_path / "in.jsonl"), str(out), "--model", str(smollm2_q4a),
                 "--max-new-tokens", "8", "--context", "128", "--batch-size", "2", "--actors", "2"])
    assert code == 0, capsys.readouterr().err
    model = pyrt.LanguageModel(smollm2_q4a, context_length=128)
    assert read_output(out)["completion"].to_pylist() == [model.generate(p, max_new_tokens=8) for p in prompts]


def test_bad_jobs_end_with_the_documented_codes(minilm_q8, corpus, tmp_path, capsys):
    """Checked before Ray starts (no local_ray here: nothing may need it)."""
    pq.write_table(pa.table({"text": corpus[:10], "n": np.arange(10)}), tmp_path / "in.parquet")
    base = ["batch", "embed", str(tmp_path / "in.parquet"), str(tmp_path / "out")]
    cases = [
        (base + ["--model", str(tmp_path / "missing.pyrt")], 1, "missing.pyrt"),
        (base + ["--model", str(minilm_q8), "--text-column", "body"], 2, "no column 'body'"),
        (base + ["--model", str(minilm_q8), "--output-column", "text"], 2, "already has a column 'text'"),
        (base + ["--model", str(minilm_q8), "--text-column", "n"], 2, "holds int64, not text"),
        (["batch", "embed", str(tmp_path / "in.txt"), str(tmp_path / "out"), "--model", str(minilm_q8)], 2,
         "unknown input type"),
        (["batch", "embed", str(tmp_path / "nope.csv"), str(tmp_path / "out"), "--model", str(minilm_q8)], 1,
         "cannot read"),
    ]
    for argv, code, needle in cases:
        assert main(argv) == code
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
    with pytest.raises(SystemExit) as exc:
        main(["batch", "generate", "in.jsonl", "out"])  # --model is required
    assert exc.value.code == 2


def test_ctrl_c_then_rerun_loses_and_duplicates_nothing(local_ray, minilm_q8, make_sentences, tmp_path, capsys):
    """A real interruption: `python -m pyrt batch embed` (its own local Ray) gets SIGINT once its first
    part is written; the rerun (here, on the module's Ray) completes the folder."""
    import signal
    import subprocess
    import sys

    texts = make_sentences(2000)
    pq.write_table(pa.table({"text": texts}), tmp_path / "in.parquet")
    out = tmp_path / "out"
    args = ["batch", "embed", str(tmp_path / "in.parquet"), str(out), "--model", str(minilm_q8),
            "--rows-per-part", "100", "--batch-size", "50", "--actors", "1"]
    package_parent = str(Path(pyrt.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_parent, os.environ.get("PYTHONPATH"))))}
    child = subprocess.Popen([sys.executable, "-m", "pyrt", *args], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("part-*.parquet")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130 and "interrupted" in err, err[-2000:]
    written = len(list(out.glob("part-*.parquet")))
    assert 1 <= written < 20
    assert main(args) == 0
    assert f"{written} already in" in capsys.readouterr().err
    table = read_output(out)
    assert table["row_id"].to_pylist() == list(range(2000)) and table["text"].to_pylist() == texts
    assert np.array_equal(np.array(table["embedding"].to_pylist(), np.float32), reference_embeddings(minilm_q8, texts))
