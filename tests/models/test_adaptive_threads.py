"""The thread count that follows the load (csrc/core/adaptive_threads.cc, docs/environment.md): with
a faked count of other runnable tasks, a model's steps shrink to the free cores after a few samples
in a row and grow back once the cores are free; a single stray sample changes nothing; an explicit
count and PYRT_ADAPTIVE_THREADS=0 are never adapted; the logits are the same whichever team ran."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pyrt
from pyrt._native import core

from helpers import run_python
from llm_fixtures import smollm2_gguf, smollm2_q4a  # noqa: F401 - fixture

PROMPT = np.random.default_rng(11).integers(100, 40000, 48).tolist()
SAMPLES_TO_CHANGE = 3  # kSamplesToChange in csrc/core/adaptive_threads.cc


@pytest.fixture
def default_threads():
    """The default (adaptive) thread count, at least 2 usable cores, restored afterwards."""
    if "PYRT_NUM_THREADS" in os.environ:
        pytest.skip("PYRT_NUM_THREADS is set: the thread count is explicit, never adapted")
    threads = pyrt.get_num_threads()
    pyrt.set_num_threads(0)
    pyrt.set_adaptive_threads(True)
    if pyrt.get_num_threads() < 2:
        pytest.skip("one usable core: nothing to adapt")
    core._set_fake_load(0, pyrt.get_num_threads())  # an idle machine until a test says otherwise
    yield pyrt.get_num_threads()
    core._set_fake_load(-1, 0)
    pyrt.set_adaptive_threads(True)
    pyrt.set_num_threads(threads)


def _steps(model, tokens, others=None, cores=None):
    """Runs one single-token step per token; returns the threads each step ran on and the logits."""
    used, logits = [], []
    for t in tokens:
        if others is not None:
            core._set_fake_load(others, cores)
        logits.append(model.forward([t]))
        used.append(pyrt.get_threads_last_used())
    return used, logits


def test_shrinks_after_consecutive_samples_and_grows_back(smollm2_q4a, default_threads):
    n = default_threads
    model = smollm2_q4a
    model.reset()
    model.forward(PROMPT[:8])
    # One other task on a machine of n cores: each team start samples; the third sample in a row
    # changes the count, the step after it runs on n - 1 threads.
    used, _ = _steps(model, PROMPT[8:14], others=1, cores=n)
    assert used == [n] * SAMPLES_TO_CHANGE + [n - 1] * 3
    used, _ = _steps(model, PROMPT[14:20], others=0, cores=n)
    assert used == [n - 1] * SAMPLES_TO_CHANGE + [n] * 3
    # Many others: one thread, never zero.
    used, _ = _steps(model, PROMPT[20:25], others=5 * n, cores=n)
    assert used == [n] * SAMPLES_TO_CHANGE + [1] * 2
    assert pyrt.get_num_threads() == n  # the setting itself does not change


def test_a_stray_sample_changes_nothing(smollm2_q4a, default_threads):
    n = default_threads
    model = smollm2_q4a
    model.reset()
    model.forward(PROMPT[:8])
    used = []
    for i, t in enumerate(PROMPT[8:20]):
        u, _ = _steps(model, [t], others=(1 if i % 3 != 2 else 0), cores=n)  # two busy, one free, ...
        used += u
    assert used == [n] * 12


@pytest.mark.parametrize("switch_off", ["explicit count", "adaptation off"])
def test_explicit_count_or_off_is_never_adapted(smollm2_q4a, default_threads, switch_off):
    n = default_threads
    if switch_off == "explicit count":
        pyrt.set_num_threads(n)
    else:
        pyrt.set_adaptive_threads(False)
        assert not pyrt.get_adaptive_threads()
    model = smollm2_q4a
    model.reset()
    model.forward(PROMPT[:8])
    used, _ = _steps(model, PROMPT[8:16], others=4 * n, cores=n)
    assert used == [n] * 8
    # Back to the default count (or adaptation on): the same load shrinks the team.
    pyrt.set_num_threads(0)
    pyrt.set_adaptive_threads(True)
    used, _ = _steps(model, PROMPT[16:21], others=4 * n, cores=n)
    assert used == [n] * SAMPLES_TO_CHANGE + [1] * 2


def test_logits_do_not_depend_on_the_adapted_team(smollm2_q4a, default_threads):
    """Two Python threads decode at once while the load flips between busy and free, so the team
    size changes in the middle of their decodes: every step's logits equal those of an explicit
    count (the split of rows and heads changes with the team, the summation order does not)."""
    n = default_threads
    model_a = smollm2_q4a
    model_b = pyrt.LanguageModel(smollm2_gguf(), context_length=256)
    used = set()

    def decode(model, loads):
        model.reset()
        out = [model.forward(PROMPT[:16])]
        for i, t in enumerate(PROMPT[16:40]):
            if loads is not None:
                core._set_fake_load(loads[i], n)
            out.append(model.forward([t]))
            if loads is not None:
                used.add(pyrt.get_threads_last_used())
        return np.concatenate([o.reshape(-1) for o in out])

    pyrt.set_num_threads(n)
    reference = decode(model_a, None)
    assert np.isfinite(reference).all() and reference.std() > 0
    pyrt.set_num_threads(0)
    loads = ([n] * 6 + [0] * 6) * 2
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(decode, m, loads) for m in (model_a, model_b)]
        results = [r.result() for r in runs]
    model_b.close()
    assert {1, n} <= used  # the team did change during the decodes
    for got in results:
        np.testing.assert_array_equal(got, reference)


@pytest.mark.parametrize("value,expected", [("0", "False"), ("1", "True"), ("yes", None), ("2", None)])
def test_environment_variable(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "PYRT_NUM_THREADS"}
    env["PYRT_ADAPTIVE_THREADS"] = value
    code = "import pyrt; print(pyrt.get_adaptive_threads(), pyrt.build_info()['adaptive_threads'])"
    out = run_python("-c", code, base_env=env, timeout=120)
    if expected is None:
        assert out.returncode != 0 and "UnsupportedError" in out.stderr and "PYRT_ADAPTIVE_THREADS" in out.stderr
    else:
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [expected, expected]


def test_api_defaults():
    assert isinstance(pyrt.get_threads_last_used(), int) and pyrt.get_threads_last_used() >= 0
    info = pyrt.build_info()
    assert info["threads_last_used"] >= 0 and info["adaptive_threads"] in (True, False)
