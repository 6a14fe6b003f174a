"""The `pyrt serve` command as a user runs it: a subprocess on 127.0.0.1, queried with the openai
client, stopped with Ctrl-C (SIGINT); its exit codes for an unreadable model and a port in use."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pyrt

from helpers import models_dir

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")


def _serve(*args: str) -> subprocess.Popen:
    package_parent = str(Path(pyrt.__file__).resolve().parents[1])
    # PYTHONSAFEPATH and a neutral folder: `-m` must not find the checkout's uncompiled pyrt first.
    env = {**os.environ, "PYTHONPATH": package_parent, "PYRT_NUM_THREADS": "1", "PYTHONSAFEPATH": "1"}
    return subprocess.Popen([sys.executable, "-m", "pyrt", "serve", *args], stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tempfile.gettempdir())


@pytest.fixture(scope="module")
def minilm_file(tmp_path_factory):
    convert = pytest.importorskip("pyrt.convert")
    folder = models_dir() / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("all-MiniLM-L6-v2 is absent (tools/fetch_models.py)")
    out = tmp_path_factory.mktemp("serve") / "minilm.pyrt"
    convert.convert_checkpoint(str(folder), str(out), dtype="q8", block=32)
    return out


def test_serve_answers_and_stops_on_ctrl_c(minilm_file):
    proc = _serve(f"mini={minilm_file}", "--port", "0", "--threads", "1")
    try:
        port, seen = None, []
        deadline = time.monotonic() + 300
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        assert port, "".join(seen)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
        assert [m.id for m in client.models.list().data] == ["mini"]
        got = client.embeddings.create(model="mini", input=["hello there"], encoding_format="float")
        want = pyrt.SentenceEncoder(minilm_file).encode(["hello there"])
        np.testing.assert_allclose(np.array(got.data[0].embedding), want[0], rtol=0, atol=1e-6)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        proc.stderr.close()
    assert code == 130  # Ctrl-C: shut down cleanly, then the exit code every pyrt command gives it


def test_exit_codes_for_a_bad_model_and_a_busy_port(minilm_file, tmp_path):
    bad = tmp_path / "bad.pyrt"
    bad.write_bytes(b"not a model")
    proc = _serve(str(bad), "--port", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "pyrt: error:" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        proc = _serve(str(minilm_file), "--port", str(busy.getsockname()[1]))
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "cannot listen" in err
