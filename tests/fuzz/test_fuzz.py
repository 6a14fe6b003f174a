"""The fuzz campaign kept running (issue 21): a bounded seeded campaign in worker subprocesses, and
the replay of every reproducer the long campaigns saved (bench/fuzz_campaign.py)."""
from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pytest

from fuzz.campaign import REGRESSIONS, run_campaign
from fuzz.harness import KINDS, case_input, run_case, seed_files
from fuzz.mutate import MUTATORS, mutant

# Enough for every mutator on every kind many times over, about 20-30 s on a busy 2-core machine.
SMOKE_CASES = 600


def test_bounded_campaign_finds_no_crash_hang_or_foreign_exception():
    result = run_campaign(seed=2026, cases=SMOKE_CASES, workers=2, chunk=SMOKE_CASES // 2, hang_seconds=60,
                          save=False, log=None)
    assert result["cases"] == SMOKE_CASES, result
    assert set(result["counts"]) <= {"ok", "typed"}, result
    # The mutants reach past the first check: some load (and run), most are refused with a PyrtError.
    assert result["counts"].get("ok", 0) > 0 and result["counts"].get("typed", 0) > SMOKE_CASES // 3, result


def test_cases_are_reproducible_and_mutated():
    with tempfile.TemporaryDirectory() as tmp:
        seeds = seed_files(Path(tmp))
        a = [case_input(seeds, 7, i) for i in range(30)]
        b = [case_input(seeds, 7, i) for i in range(30)]
    assert a == b
    assert [k for k, _ in a[:3]] == list(KINDS)
    assert sum(data not in seeds.values() for _, data in a) >= 25


def test_every_mutator_changes_its_input():
    rng = random.Random(1)
    data = bytes(range(256)) * 4 + b'{"a": 12, "b": "x"}'
    for m in MUTATORS:
        assert any(m(data, rng) != data for _ in range(5)), m.__name__
    assert mutant(data, rng) != data or mutant(data, rng) != data


def _reproducers() -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob("*") if p.suffix != ".json" and p.name != "README.md")


@pytest.mark.parametrize("path", _reproducers(), ids=lambda p: p.name)
def test_saved_reproducer_is_handled(path, tmp_path):
    note = json.loads(path.with_suffix(path.suffix + ".json").read_text())
    assert run_case(note["kind"], path.read_bytes(), tmp_path) in ("ok", "typed"), note
