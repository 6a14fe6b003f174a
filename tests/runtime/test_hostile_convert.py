"""The converter on corrupt inputs and under signals (issue 21): every corrupt source exits 3 (the
documented "source cannot be read"), and SIGTERM/SIGHUP remove the temporary output like Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pyrt
from fuzz import seeds
from pyrt.cli.convert import main as convert_main


def _edit(key, value, name="layer.weight"):
    def edit(header):
        header[name][key] = value
    return edit


CORRUPT_SAFETENSORS = {
    "shape_product_overflows": _edit("shape", [2**32, 2**32, 2**32]),
    "shape_wraps_to_the_right_size": _edit("shape", [2**62, 2**62, 256]),  # 2^132 * 256 == 1024 mod 2^64
    "dtype_is_a_list": _edit("dtype", ["F32"]),
    "offsets_are_strings": _edit("data_offsets", ["0", "1024"]),
    "offsets_are_floats": _edit("data_offsets", [0.0, 1024.0]),
    "shape_has_a_float": _edit("shape", [8, 32.5]),
    "shape_is_a_string": _edit("shape", "8x32"),
    "entry_is_a_list": lambda h: h.__setitem__("layer.weight", [1, 2]),
    "shape_is_huge_and_empty": _edit("shape", [2**62, 0, 2**62]),
    "negative_dimension": _edit("shape", [-8, -32]),
    "three_offsets": _edit("data_offsets", [0, 512, 1024]),
}


@pytest.mark.parametrize("case", list(CORRUPT_SAFETENSORS))
def test_corrupt_safetensors_header_exits_3(tmp_path, case, capsys):
    rng = np.random.default_rng(3)
    arrays = {"layer.weight": rng.standard_normal((8, 32)).astype(np.float32)}
    src = tmp_path / "model.safetensors"
    src.write_bytes(seeds.safetensors_bytes(arrays, CORRUPT_SAFETENSORS[case]))
    assert convert_main([str(src), "-o", str(tmp_path / "out.pyrt"), "-q"]) == 3
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_valid_safetensors_still_converts(tmp_path):
    rng = np.random.default_rng(4)
    arrays = {"layer.weight": rng.standard_normal((8, 32)).astype(np.float32)}
    src = tmp_path / "model.safetensors"
    src.write_bytes(seeds.safetensors_bytes(arrays))
    assert convert_main([str(src), "-o", str(tmp_path / "out.pyrt"), "-q", "--dtype", "f32"]) == 0
    np.testing.assert_array_equal(pyrt.load(tmp_path / "out.pyrt").tensors["layer.weight"].dequantize(), arrays["layer.weight"])


@pytest.fixture(scope="module")
def slow_source(tmp_path_factory):
    """A safetensors file whose q4 conversion takes a few seconds: time to signal it mid-way."""
    rng = np.random.default_rng(5)
    arrays = {f"layer{i}.weight": rng.standard_normal((256, 1024)).astype(np.float32) for i in range(48)}
    src = tmp_path_factory.mktemp("slow") / "big.safetensors"
    src.write_bytes(seeds.safetensors_bytes(arrays))
    return src


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_signal_during_conversion_removes_the_temporary_file(tmp_path, slow_source, signum, code):
    out = tmp_path / "OUT.pyrt"
    package_parent = str(Path(pyrt.__file__).resolve().parents[1])
    # The child starts with the signal's default disposition: run under `nohup` (SIGHUP ignored) the
    # test would otherwise inherit an ignored SIGHUP, which the converter rightly keeps ignoring.
    proc = subprocess.Popen([sys.executable, "-m", "pyrt.cli.convert", str(slow_source), "-o", str(out), "-q",
                             "--dtype", "q4"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": package_parent}, text=True,
                            preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".OUT.") for p in tmp_path.iterdir()):  # the writer has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "temporary or partial output left behind"


@pytest.mark.parametrize("name,content", [
    ("config.json", "[" * 100_000 + "]" * 100_000),
    ("modules.json", "[" * 100_000 + "]" * 100_000),
    ("model.safetensors.index.json", json.dumps({"weight_map": ["a", "b"]})),
    ("model.safetensors.index.json", json.dumps({"weight_map": {"w": 5}})),
])
def test_corrupt_hf_folder_json_exits_3(tmp_path, name, content):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    if name != "model.safetensors.index.json":
        (folder / "model.safetensors").write_bytes(seeds.small_safetensors_bytes())
    (folder / name).write_text(content)
    assert convert_main([str(folder), "-o", str(tmp_path / "out.pyrt"), "-q"]) == 3
    assert not (tmp_path / "out.pyrt").exists()


def test_ignored_hangup_stays_ignored():
    """Under `nohup` SIGHUP is ignored: the CLI must not turn it back into a termination."""
    from pyrt.cli.exits import stop_signals_raise

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_raise():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
