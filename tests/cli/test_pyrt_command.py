"""The `pyrt` command's shared habits (docs/cli.md), each run as `python -m pyrt ...` in a child
process from a neutral folder: one-line errors with the documented exit codes, options anywhere,
--version, missing optional packages named with their pip extra, Ctrl-C and a closed stdout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import pyrt
from helpers import models_dir, run_python
from pyrt.cli.exits import EXTRAS_PROVIDING

TINY = Path(__file__).resolve().parents[1] / "formats" / "data" / "v1_tiny.pyrt"  # a v1.0 file, not a language model
SMOLLM2_GGUF = models_dir() / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = models_dir() / "all-MiniLM-L6-v2"
needs_smollm2 = pytest.mark.skipif(not SMOLLM2_GGUF.is_file(),
                                   reason=f"{SMOLLM2_GGUF} absent: run python tools/fetch_models.py")
needs_minilm = pytest.mark.skipif(not (MINILM / "model.safetensors").is_file(),
                                  reason=f"{MINILM} absent: run python tools/fetch_models.py")
# Runs `python -m pyrt ARGS` with the modules named in its first argument made unimportable, as
# when an optional package is not installed.
WITHOUT_MODULES = ("import runpy, sys\n"
                   "for name in sys.argv.pop(1).split(','):\n"
                   "    sys.modules[name] = None\n"
                   "runpy.run_module('pyrt', run_name='__main__', alter_sys=True)\n")


def pyrt_cli(*args: str, without: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    if without:
        return run_python("-c", WITHOUT_MODULES, without, *args, timeout=timeout)
    return run_python("-m", "pyrt", *args, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The child failed with ``code`` and said why in one `pyrt: error:` line, without a traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrt: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def child_env() -> dict[str, str]:
    """The environment run_python gives its children: the pyrt under test first on the path."""
    package_parent = str(Path(pyrt.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(scope="module")
def smollm2_pyrt(tmp_path_factory) -> Path:
    from pyrt.convert import convert_checkpoint
    out = tmp_path_factory.mktemp("smollm2") / "smollm2-q4a.pyrt"
    convert_checkpoint(SMOLLM2_GGUF, out, dtype="q4a")
    return out


# ---- the command itself ----------------------------------------------------------------------------
def test_version_and_python_dash_m():
    proc = pyrt_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"pyrt {pyrt.__version__}"
    proc = pyrt_cli("--help")
    assert proc.returncode == 0
    for name in ("demo", "embed", "generate", "info", "convert"):
        assert name in proc.stdout


def test_version_is_defined_once():
    from pyrt._version import __version__
    assert pyrt.__version__ == __version__ == pyrt.build_info()["core_version"]
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject


def test_convert_alias_has_the_same_parser(tmp_path):
    from pyrt.cli import build_parser
    from pyrt.cli.convert import main as convert_main
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["convert"]
    with pytest.raises(SystemExit) as exc:
        convert_main(["--dtype", "q2", "x", "-o", "y"])
    assert exc.value.code == 2
    assert {a.dest for a in sub._actions} >= {"src", "output", "dtype", "block", "rule", "report", "quiet"}
    proc = pyrt_cli("convert", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "o.pyrt"), "-q")
    assert_one_line_error(proc, 3, "missing.npz")


# ---- bad command lines: argparse's usage error, exit 2 -----------------------------------------------
@pytest.mark.parametrize("args", [
    ("generate", "m.pyrt", "hi", "--top-p", "2"),
    ("generate", "m.pyrt", "hi", "-t", "-1"),
    ("generate", "m.pyrt", "hi", "-t", "nan"),
    ("generate", "m.pyrt", "hi", "-n", "many"),
    ("generate", "m.pyrt", "hi", "--context", "0"),
    ("generate", "m.pyrt", "hi", "--dtype", "q2"),  # q5 exists since issue 17
    ("generate", "m.pyrt"),
    ("embed", "m.pyrt", "hi", "--batch-size", "0"),
    ("info", "m.pyrt", "--max-tensors", "-1"),
    ("convert", "m.npz", "-o", "m.pyrt", "--block", "48"),
    ("frobnicate",),
    (),
])
def test_bad_option_values_are_usage_errors(args):
    proc = pyrt_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "usage: pyrt" in proc.stderr and "Traceback" not in proc.stderr


def test_options_anywhere(tmp_path):
    from pyrt.cli import build_parser
    args = build_parser().parse_args(["embed", "m.pyrt", "--batch-size", "8", "hi", "there", "--no-normalize"])
    assert (args.file, args.texts, args.batch_size, args.normalize) == ("m.pyrt", ["hi", "there"], 8, False)
    args = build_parser().parse_args(["generate", "-n", "3", "m.pyrt", "--raw", "a prompt", "--stop", "X"])
    assert (args.file, args.prompt, args.max_new_tokens, args.chat, args.stop) == ("m.pyrt", "a prompt", 3, False, ["X"])
    args = build_parser().parse_args(["info", "--json", str(TINY), "--verify"])
    assert args.json and args.verify and args.file == str(TINY)
    # The same through the command: the option between the file and the sentences is accepted.
    proc = pyrt_cli("embed", str(tmp_path / "missing.pyrt"), "--batch-size", "8", "hi")
    assert_one_line_error(proc, 1, "missing.pyrt")


# ---- one-line errors with their codes -----------------------------------------------------------------
@pytest.mark.parametrize("command", ["info", "embed", "generate"])
def test_missing_file(command, tmp_path):
    args = [str(tmp_path / "missing.pyrt")] + ([] if command == "info" else ["hi"])
    assert_one_line_error(pyrt_cli(command, *args), 1, "missing.pyrt")


def test_missing_gguf_file(tmp_path):
    assert_one_line_error(pyrt_cli("generate", str(tmp_path / "missing.gguf"), "hi"), 1, "missing.gguf")


def test_generate_refuses_a_model_of_another_kind():
    assert_one_line_error(pyrt_cli("generate", str(TINY), "hi"), 1, "not a language model", "Tiny")


def test_not_a_pyrt_file(tmp_path):
    (tmp_path / "text.pyrt").write_text("hello")
    for command in (["info"], ["embed"], ["generate"]):
        args = command + [str(tmp_path / "text.pyrt")] + ([] if command == ["info"] else ["hi"])
        assert_one_line_error(pyrt_cli(*args), 1, "text.pyrt")


def test_info_checksum_mismatch_is_3(tmp_path):
    data = bytearray(TINY.read_bytes())
    data[128] ^= 0xFF  # the first tensor: the writer puts it right after the 128-byte header
    (tmp_path / "bad.pyrt").write_bytes(bytes(data))
    assert pyrt_cli("info", str(tmp_path / "bad.pyrt")).returncode == 0
    assert_one_line_error(pyrt_cli("info", str(tmp_path / "bad.pyrt"), "--verify"), 3, "checksum mismatch")


def test_embed_usage_errors_found_after_parsing(tmp_path):
    assert_one_line_error(pyrt_cli("embed", str(TINY), "x", "--output", str(tmp_path / "e.txt")), 2, ".npy")


@needs_smollm2
def test_generate_prompt_longer_than_the_context(smollm2_pyrt):
    proc = pyrt_cli("generate", str(smollm2_pyrt), "word " * 40, "--raw", "--context", "16")
    assert_one_line_error(proc, 2, "the context holds 16")
    proc = pyrt_cli("generate", str(smollm2_pyrt), "hi", "--context", "100000")
    assert_one_line_error(proc, 2, "context_length 100000")


@needs_smollm2
def test_generate_streams_an_answer(smollm2_pyrt):
    proc = pyrt_cli("generate", str(smollm2_pyrt), "What is the capital of France?", "-n", "12")
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout and proc.stderr == ""


# ---- missing optional packages: the error names the pip extra ------------------------------------------
def test_extras_table_matches_pyproject():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's tomllib reads pyproject.toml")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for module, names in EXTRAS_PROVIDING.items():
        for extra in names:
            assert any(req.lower().startswith(module) for req in extras[extra]), (module, extra)


def test_missing_tokenizers_names_the_extra():
    proc = pyrt_cli("embed", str(TINY), "hi", without="tokenizers")
    assert_one_line_error(proc, 1, "tokenizers", "pip install 'pyrt-infer[tokenizers]'")


def test_missing_gguf_names_the_extra(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF not really")
    proc = pyrt_cli("convert", str(tmp_path / "m.gguf"), "-o", str(tmp_path / "o.pyrt"), without="gguf")
    assert_one_line_error(proc, 3, "gguf", "pip install 'pyrt-infer[convert]'")
    proc = pyrt_cli("generate", str(tmp_path / "m.gguf"), "hi", without="gguf")
    assert_one_line_error(proc, 1, "gguf", "pip install 'pyrt-infer[llm]'")


@needs_smollm2
def test_missing_jinja2_names_the_extra(smollm2_pyrt):
    proc = pyrt_cli("generate", str(smollm2_pyrt), "hi", "-n", "2", without="jinja2")  # chat: the model has a template
    assert_one_line_error(proc, 1, "jinja2", "pip install 'pyrt-infer[llm]'")


# ---- Ctrl-C and a closed stdout -------------------------------------------------------------------------
@needs_smollm2
def test_ctrl_c_ends_with_130_and_no_traceback(smollm2_pyrt):
    with tempfile.TemporaryDirectory() as cwd, subprocess.Popen(
            [sys.executable, "-m", "pyrt", "generate", str(smollm2_pyrt), "--raw", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
             "-n", "2000"], cwd=cwd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            assert proc.stdout.read(1)  # generating: the first piece of the answer has arrived
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.decode().strip() == "pyrt: interrupted"


@pytest.mark.parametrize("args", [("info", str(TINY)), ("info", str(TINY), "--json")])
def test_closed_stdout_exits_quietly(args):
    """`pyrt info FILE | head -1`: the reader is gone before pyrt writes; no BrokenPipeError trace."""
    with tempfile.TemporaryDirectory() as cwd, subprocess.Popen(
            [sys.executable, "-m", "pyrt", *args], cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE) as proc:
        proc.stdout.close()  # long before the child has imported pyrt
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    assert proc.returncode == 141, err
    assert err == ""


def test_info_json_through_a_pipe_still_works():
    proc = pyrt_cli("info", str(TINY), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["architecture"] == "Tiny"


# ---- the models folder: one default for the fetch tool, the demo and the tests -----------------------
def test_demo_without_the_model_gives_non_circular_advice(tmp_path):
    proc = run_python("-m", "pyrt", "demo", env={"PYRT_MODELS": str(tmp_path / "empty")})
    line = assert_one_line_error(proc, 1, str(tmp_path / "empty" / "all-MiniLM-L6-v2"))
    assert "python tools/fetch_models.py --only minilm" in line and "--cache" in line
    proc = pyrt_cli("demo", "--cache", str(tmp_path / "other"))
    assert "fetch_models.py --only minilm --cache " + str(tmp_path / "other") in proc.stderr


def test_fetch_tool_and_pyrt_agree_on_the_models_folder(tmp_path):
    home = tmp_path / "home"
    script = ("import runpy, sys\n"
              "tool = runpy.run_path(sys.argv[1])\n"
              "from pyrt.cli.models_dir import models_dir\n"
              "print(tool['models_dir'].models_dir()); print(models_dir())\n")
    env = {"HOME": str(home), "PYRT_MODELS": ""}
    tool_path = str(Path(__file__).resolve().parents[2] / "tools" / "fetch_models.py")
    proc = run_python("-c", script, tool_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(home / ".cache" / "pyrt" / "models")] * 2


def test_an_error_whose_cause_is_itself_still_ends():
    """pyrt.convert raises `raise e from e` for output errors; the handler must not walk that loop."""
    from pyrt.cli.exits import guarded

    def fail():
        exc = pyrt.FileIOError("cannot write out.pyrt")
        raise exc from exc
    assert guarded(fail, "pyrt") == 1
