from __future__ import annotations

import pyrt


def test_build_info_has_the_documented_keys():
    info = pyrt.build_info()
    for key in ("version", "cpu_isa", "threads", "cuda", "cpu_isas_available", "cpu_features", "compiler"):
        assert key in info
    assert info["version"] == pyrt.__version__ == info["core_version"]
    assert info["cpu_isa"] in ("avx512", "avx2", "scalar")
    assert info["cpu_isa"] in info["cpu_isas_available"] and "scalar" in info["cpu_isas_available"]
    assert info["threads"] >= 1
    assert isinstance(info["cuda"], bool)


def test_thread_count_round_trip():
    default = pyrt.get_num_threads()
    try:
        pyrt.set_num_threads(3)
        assert pyrt.get_num_threads() == 3
        pyrt.set_num_threads(0)
        assert pyrt.get_num_threads() == default
    finally:
        pyrt.set_num_threads(default)


def test_isa_selection_round_trip():
    best = pyrt.get_cpu_isa()
    try:
        for isa in pyrt.available_cpu_isas():
            pyrt.set_cpu_isa(isa)
            assert pyrt.get_cpu_isa() == isa == pyrt.build_info()["cpu_isa"]
    finally:
        pyrt.set_cpu_isa(best)
