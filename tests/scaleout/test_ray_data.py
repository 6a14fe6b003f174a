"""pyrt.ray on a local Ray (2 CPUs) with the real MiniLM and SmolLM2 files: results through Ray Data
equal in-process ones bit for bit, each batch format works, the classes pickle only their settings,
bad jobs fail fast with typed errors, and actors share the model file's pages."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import pyrt

pytest.importorskip("ray", reason="the Ray Data tests need the 'ray' extra")
pa = pytest.importorskip("pyarrow", reason="the Ray Data tests need the 'ray' extra")

# Ray warns about its own deprecated settings while it starts (not pyrt's doing).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

from pyrt.ray import ColumnError, Embedder, Generator, embed_dataset, generate_dataset  # noqa: E402

PROMPTS = [f"Question {i}: what is {i} plus {i + 3}? Answer:" for i in range(8)] + [
    "The capital of France is", "Once upon a time", "List three colours:", "def fibonacci(n):",
    "The opposite of hot is", "Water boils at", "My favourite fruit is", "Translate 'bonjour' to English:"]


def blocks(table, rows: int) -> list:
    """The table cut into blocks of ``rows`` rows: Ray Data gives each actor whole blocks."""
    return [table.slice(i, rows) for i in range(0, table.num_rows, rows)]


def in_process(threads: int, fn):
    previous = pyrt.get_num_threads()
    pyrt.set_num_threads(threads)
    try:
        return fn()
    finally:
        pyrt.set_num_threads(previous)


def test_embeddings_through_ray_equal_in_process(local_ray, minilm_q8, make_sentences):
    texts = make_sentences(2000)
    ds = local_ray.data.from_arrow(blocks(pa.table({"text": texts, "n": np.arange(2000)}), 250))
    rows = embed_dataset(ds, minilm_q8, actors=2, threads_per_actor=1, rows_per_batch=128).take_all()
    expected = in_process(1, lambda: pyrt.SentenceEncoder(minilm_q8).encode(texts))
    assert len(rows) == 2000 and sorted(r["n"] for r in rows) == list(range(2000))
    got = np.stack([np.asarray(r["embedding"], dtype=np.float32) for r in sorted(rows, key=lambda r: r["n"])])
    assert got.shape == expected.shape and np.array_equal(got, expected)  # bit-identical: 1 thread on both sides


def test_greedy_generations_through_ray_equal_in_process(local_ray, smollm2_q4a):
    ds = local_ray.data.from_arrow(blocks(pa.table({"prompt": PROMPTS}), 4))
    rows = generate_dataset(ds, smollm2_q4a, actors=2, threads_per_actor=1, rows_per_batch=4,
                            max_new_tokens=10, context_length=256).take_all()
    model = pyrt.LanguageModel(smollm2_q4a, context_length=256)
    expected = in_process(1, lambda: {p: model.generate(p, max_new_tokens=10) for p in PROMPTS})
    assert {r["prompt"]: r["completion"] for r in rows} == expected
    assert sum(bool(c.strip()) for c in expected.values()) >= 6  # the comparison is not between empty strings


def test_plain_map_batches_with_pandas_batches(local_ray, minilm_q8, make_sentences):
    """embed_dataset asks for pyarrow batches; the class used directly gets Ray's pandas batches
    (every format is checked in process below)."""
    texts = make_sentences(40)
    ds = local_ray.data.from_arrow(pa.table({"text": texts}))
    rows = ds.map_batches(Embedder, fn_constructor_args=(str(minilm_q8),), batch_format="pandas",
                          batch_size=16, compute=local_ray.data.ActorPoolStrategy(size=1)).take_all()
    expected = in_process(1, lambda: pyrt.SentenceEncoder(minilm_q8).encode(texts))
    got = {r["text"]: np.asarray(r["embedding"], dtype=np.float32) for r in rows}
    assert all(np.array_equal(got[t], e) for t, e in zip(texts, expected))


@pytest.fixture
def keep_threads():
    """Embedder(threads=...) used in this process sets pyrt's process-wide thread count."""
    previous = pyrt.get_num_threads()
    yield
    pyrt.set_num_threads(previous)


def test_batch_formats_in_process(minilm_q8, make_sentences, keep_threads):
    pd = pytest.importorskip("pandas")
    embed = Embedder(minilm_q8, threads=1)
    texts = make_sentences(5)
    expected = in_process(1, lambda: pyrt.SentenceEncoder(minilm_q8).encode(texts))
    table = embed(pa.table({"text": texts}))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert np.array_equal(np.array(table["embedding"].to_pylist(), np.float32), expected)
    frame = embed(pd.DataFrame({"text": texts}))
    assert np.array_equal(np.stack(frame["embedding"].to_list()), expected)
    arrays = embed({"text": np.array(texts, dtype=object)})
    assert np.array_equal(arrays["embedding"], expected)
    with pytest.raises(ColumnError, match="no column 'body'"):
        Embedder(minilm_q8, text_column="body")(pa.table({"text": texts}))
    with pytest.raises(ColumnError, match="already has"):
        embed(table)
    with pytest.raises(pyrt.DtypeError, match="row 1"):
        embed({"text": np.array(["ok", None], dtype=object)})


def test_classes_pickle_their_settings_only(minilm_q8, keep_threads):
    from ray import cloudpickle

    embed = Embedder(minilm_q8, batch_size=8, threads=1, normalize_embeddings=True)
    embed({"text": np.array(["load the model"], dtype=object)})  # the model is now open in this process
    blob = cloudpickle.dumps(embed)
    assert len(blob) < 2000 and b"SentenceEncoder" not in blob
    clone = cloudpickle.loads(blob)
    assert clone._model is None and clone._settings == embed._settings
    generator = Generator("/any/path.pyrt", max_new_tokens=3, stop="\n")
    assert cloudpickle.loads(cloudpickle.dumps(generator))._settings == generator._settings


def test_bad_jobs_fail_fast_in_the_driver(local_ray, minilm_q8, tmp_path, make_sentences):
    ds = local_ray.data.from_arrow(pa.table({"text": make_sentences(10)}))
    start = time.monotonic()
    with pytest.raises(pyrt.FileIOError, match="missing.pyrt"):
        embed_dataset(ds, tmp_path / "missing.pyrt", actors=1)
    not_a_model = tmp_path / "notes.pyrt"
    not_a_model.write_text("not a model")
    with pytest.raises(pyrt.FileFormatError):
        embed_dataset(ds, not_a_model, actors=1)
    with pytest.raises(ColumnError, match="no column 'body'"):
        embed_dataset(ds, minilm_q8, text_column="body", actors=1)
    with pytest.raises(ColumnError, match="already has"):
        embed_dataset(ds, minilm_q8, output_column="text", actors=1)
    with pytest.raises(pyrt.RangeError):
        generate_dataset(local_ray.data.from_arrow(pa.table({"prompt": ["hi"]})), minilm_q8, top_p=1.5)
    with pytest.raises(TypeError, match="normalise"):
        Embedder(minilm_q8, normalise=True)
    assert time.monotonic() - start < 30  # checked before any actor starts


def test_a_missing_model_in_the_actors_ends_the_job(local_ray, tmp_path, make_sentences):
    """Without the driver's checks (plain map_batches), the actor's typed error ends the job."""
    ds = local_ray.data.from_arrow(pa.table({"text": make_sentences(10)}))
    start = time.monotonic()
    with pytest.raises(local_ray.exceptions.RayError, match="FileIOError.*missing.pyrt"):
        ds.map_batches(Embedder, fn_constructor_args=(str(tmp_path / "missing.pyrt"),), batch_format="pyarrow",
                       compute=local_ray.data.ActorPoolStrategy(size=1)).take_all()
    assert time.monotonic() - start < 180


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="memory figures need Linux /proc")
def test_actors_share_the_model_file_pages(local_ray, minilm_q8, make_sentences):
    from pyrt.ray_memory import actors_memory

    results = actors_memory(minilm_q8, make_sentences(64), actors=2)
    size = os.path.getsize(minilm_q8)
    for threads, mem in results:
        assert threads == 1  # one CPU from Ray -> one pyrt thread
        assert 0.3 * size < mem["model_rss"] <= size
        assert mem["model_shared"] >= 0.95 * mem["model_rss"]  # pages mapped by both actors
        assert mem["model_pss"] <= 0.6 * mem["model_rss"]      # each is charged about half
