"""One in-process server for the module's tests: uvicorn in a thread on 127.0.0.1 and a free port,
serving SmolLM2 (as "smol") and all-MiniLM-L6-v2 (as "mini"), and the official openai client."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

import pyrt

from helpers import models_dir

pytest.importorskip("starlette", reason="the server needs the 'server' extra (starlette)")
uvicorn = pytest.importorskip("uvicorn", reason="the server needs the 'server' extra (uvicorn)")
openai = pytest.importorskip("openai", reason="the end-to-end tests use the official openai client")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="building the encoder needs safetensors")
pytest.importorskip("gguf", reason="reading SmolLM2 needs the gguf package")

ENCODER_FILES = ("tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
                 "tokenizer_config.json", "config_sentence_transformers.json")


def _smollm2():
    found = sorted((models_dir() / "smollm2").glob("*.gguf"))
    if not found:
        pytest.skip("SmolLM2 is absent: run python tools/fetch_models.py (or set PYRT_MODELS)")
    return pyrt.LanguageModel(found[0], context_length=512)


def _minilm():
    folder = models_dir() / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("all-MiniLM-L6-v2 is absent: run python tools/fetch_models.py (or set PYRT_MODELS)")
    weights = safetensors_numpy.load_file(str(folder / "model.safetensors"))
    tensors = {k: pyrt.quantize(v, "f32") for k, v in weights.items() if v.dtype == np.float32}
    config = json.loads((folder / "config.json").read_text())
    files = {n: (folder / n).read_bytes() for n in ENCODER_FILES if (folder / n).is_file()}
    return pyrt.SentenceEncoder.from_parts(tensors, config, files)


@pytest.fixture(scope="package")
def models():
    return {"smol": _smollm2(), "mini": _minilm()}


class ServerThread:
    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="package")
def base_url(models):
    from pyrt.server import create_app
    from pyrt.server.batching import set_max_batch

    set_max_batch(models["smol"], 8)
    with ServerThread(create_app(models)) as url:
        yield url


@pytest.fixture(scope="package")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=600)
