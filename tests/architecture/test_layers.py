"""The direction of dependencies in csrc/ (docs/architecture.md): bindings -> models -> ops ->
backends (cpu, cuda) -> core and the public headers. Each layer may include only the folders
below it; a file that reaches around a layer (a model calling a CPU kernel, a binding including a
backend header) fails here with the offending line."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "csrc"
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)

# folder -> the include prefixes its files may use (quoted includes; system headers are free).
ALLOWED = {
    "include/pyrt": ("pyrt/",),
    "core": ("core/", "pyrt/"),  # core/*.h: private helpers of the core (e.g. the scale search)
    "cpu": ("cpu/", "pyrt/"),
    "cuda": ("cuda/", "pyrt/"),
    "ops": ("ops/", "cpu/", "cuda/", "pyrt/"),
    "models": ("models/", "pyrt/"),
    "bindings": ("bindings/", "models/", "pyrt/"),
}
SOURCE_SUFFIXES = {".h", ".cc", ".cu", ".cuh"}


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (CSRC / folder).rglob("*") if p.suffix in SOURCE_SUFFIXES)


def test_every_source_folder_has_a_rule():
    folders = {p.parent.relative_to(CSRC).as_posix() for p in CSRC.rglob("*") if p.suffix in SOURCE_SUFFIXES}
    assert folders <= set(ALLOWED), f"folders without a dependency rule: {sorted(folders - set(ALLOWED))}"


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_includes_point_down(folder):
    files = sources(folder)
    assert files, f"csrc/{folder} holds no sources"
    wrong = []
    for path in files:
        for target in INCLUDE.findall(path.read_text()):
            if not target.startswith(ALLOWED[folder]):
                wrong.append(f"{path.relative_to(CSRC)} includes \"{target}\"")
    assert not wrong, "includes against bindings -> models -> ops -> backends -> core:\n" + "\n".join(wrong)


def test_models_reach_weights_through_one_table():
    families = [p for p in sources("models") if p.stem.endswith(("encoder", "decoder")) and p.suffix == ".cc"]
    assert len(families) >= 2, "the model families are no longer named *encoder.cc / *decoder.cc: update this test"
    # Every model family gets its tensors from models/weights.h (one lookup, the same errors).
    for path in sources("models"):
        # The families (encoder.cc: BERT/MPNet, causal_decoder.cc: Llama/Qwen2/Gemma); their helpers
        # (limits, KV cache) hold no weights.
        if not path.stem.endswith(("encoder", "decoder")) or path.suffix != ".cc":
            continue
        text = path.read_text()
        assert "WeightTable" in text, f"{path.name} builds its weights without models/weights.h"
