"""pyrt's own team barrier (spin, then sleep on a futex; docs/environment.md): the decoder gives the
same logits whatever the spin time and whether threads sleep, also with more threads than cores and
with two models stepping at once; the setting's API and environment variable."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pyrt

from helpers import run_python
from llm_fixtures import smollm2_q4a  # noqa: F401 - fixture

PROMPT = np.random.default_rng(7).integers(100, 40000, 24).tolist()


@pytest.fixture
def restore_settings():
    threads, spin = pyrt.get_num_threads(), pyrt.get_wait_spin_us()
    yield
    pyrt.set_num_threads(threads)
    pyrt.set_wait_spin_us(spin)


def _decode(model, steps=6):
    """Logits of a prompt and of a few single-token steps after it."""
    model.reset()
    out = [model.forward(PROMPT[:16])]
    for t in PROMPT[16:16 + steps]:
        out.append(model.forward([t]))
    return np.concatenate([o.reshape(-1) for o in out])


def test_spin_setting_api(restore_settings):
    assert pyrt.get_wait_spin_us() == 50
    pyrt.set_wait_spin_us(0)
    assert pyrt.get_wait_spin_us() == 0
    pyrt.set_wait_spin_us(1234)
    assert pyrt.get_wait_spin_us() == 1234
    pyrt.set_wait_spin_us(-1)
    assert pyrt.get_wait_spin_us() == 50
    with pytest.raises(pyrt.UnsupportedError):
        pyrt.set_wait_spin_us(10**8)
    assert pyrt.build_info()["wait_spin_us"] == 50


@pytest.mark.parametrize("value,ok", [("0", True), ("200", True), ("abc", False), ("-3", False), ("1e3", False)])
def test_spin_environment_variable(value, ok):
    code = "import pyrt; print(pyrt.get_wait_spin_us())"
    out = run_python("-c", code, env={"PYRT_WAIT_SPIN_US": value}, timeout=120)
    if ok:
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.strip()) == int(value)
    else:
        assert out.returncode != 0 and "UnsupportedError" in out.stderr and "PYRT_WAIT_SPIN_US" in out.stderr


def test_logits_do_not_depend_on_the_wait_policy(smollm2_q4a, restore_settings):
    pyrt.set_num_threads(2)
    reference = _decode(smollm2_q4a)
    assert np.isfinite(reference).all() and reference.std() > 0
    for spin in (0, 1, 100_000):
        pyrt.set_wait_spin_us(spin)
        np.testing.assert_array_equal(_decode(smollm2_q4a), reference)


@pytest.mark.parametrize("threads", [1, 3, 5])
def test_more_threads_than_cores_sleep_and_agree(smollm2_q4a, restore_settings, threads):
    """Threads beyond the cores must sleep at barriers for the others to run: every barrier is
    crossed by all of them, and the result matches 2 threads to float32 rounding (the split of the
    rows and heads changes, the summation order inside each does not)."""
    pyrt.set_num_threads(2)
    reference = _decode(smollm2_q4a, steps=3)
    pyrt.set_num_threads(threads)
    pyrt.set_wait_spin_us(0)
    got = _decode(smollm2_q4a, steps=3)
    np.testing.assert_allclose(got, reference, rtol=2e-3, atol=2e-3 * np.abs(reference).max())


def test_two_models_step_at_once(smollm2_q4a, restore_settings):
    """Two parallel regions at the same time (two Python threads, one model each): each team has
    its own barrier, so neither waits for the other's threads."""
    from llm_fixtures import smollm2_gguf

    other = pyrt.LanguageModel(smollm2_gguf(), context_length=256)
    try:
        pyrt.set_num_threads(2)
        pyrt.set_wait_spin_us(5)
        reference = _decode(smollm2_q4a)
        # One thread per model: a model's forward() extends its one default sequence, so two threads
        # must not share a model here.
        with ThreadPoolExecutor(2) as pool:
            results = [r for pair in pool.map(lambda m: (_decode(m), _decode(m)), [smollm2_q4a, other]) for r in pair]
        assert len(results) == 4
        for r in results:
            np.testing.assert_array_equal(r, reference)
    finally:
        other.close()


@pytest.mark.parametrize("user_env", [{}, {"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "77"}])
def test_openmp_spin_count_is_set_for_the_load_only(user_env):
    """pyrt gives libgomp a short spin while it loads, unless the user chose a policy, and leaves
    the environment as it found it (children and other libraries see the user's settings)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(user_env)
    code = ("import os, pyrt, pyrt._native as n; "
            "print(sorted(k for k in os.environ if k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')), n._set_spin)")
    out = run_python("-c", code, base_env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{sorted(user_env)} {not user_env}"
