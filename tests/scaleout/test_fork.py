"""pyrt in a multiprocessing child started with fork, after the parent ran multi-threaded (its
OpenMP team started): GNU OpenMP's workers do not survive fork, so pyrt switches such a child to
one thread (and refuses more with UnsupportedError) instead of hanging. Run in a subprocess with a
timeout so a regression fails instead of stalling the suite."""
from __future__ import annotations

import json

import pytest

from helpers import run_python

SCRIPT = r"""
import json, multiprocessing as mp
import numpy as np
import pyrt

pyrt.set_num_threads(2)
rng = np.random.default_rng(5)
x = rng.standard_normal((64, 256)).astype(np.float32)
w = pyrt.quantize(rng.standard_normal((512, 256)).astype(np.float32), "q8", 32)
parent = pyrt.matmul(x, w)  # 2 threads: the OpenMP team is started

def child(queue):
    result = {"threads": pyrt.get_num_threads(), "equal": bool(np.array_equal(pyrt.matmul(x, w), parent))}
    try:
        pyrt.set_num_threads(2)
        result["raised"] = None
    except pyrt.UnsupportedError as exc:
        result["raised"] = str(exc)
    pyrt.set_num_threads(0)
    result["after_reset"] = pyrt.get_num_threads()
    queue.put(result)

ctx = mp.get_context("fork")
queue = ctx.Queue()
proc = ctx.Process(target=child, args=(queue,), daemon=True)
proc.start()
try:
    print(json.dumps(queue.get(timeout=60)))
except Exception:  # the child hangs: end it, so no orphan outlives the test
    proc.kill()
    print(json.dumps({"hung": True}))
proc.join(10)
print(json.dumps({"parent_threads": pyrt.get_num_threads(), "exitcode": proc.exitcode}))
"""


def test_forked_child_runs_on_one_thread_instead_of_hanging():
    import pyrt

    if not pyrt.build_info().get("openmp"):
        pytest.skip("this build has no OpenMP: nothing to guard")
    proc = run_python("-c", SCRIPT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    child, parent = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert child["threads"] == 1 and child["equal"]
    assert child["raised"] and "fork" in child["raised"] and "spawn" in child["raised"]
    assert child["after_reset"] == 1
    assert parent == {"parent_threads": 2, "exitcode": 0}  # the parent keeps its threads
