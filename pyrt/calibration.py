"""Default calibration texts (placeholder of the q3-plan branch: the calibration slice's module,
which also collects activation statistics, replaces this file at the merge)."""
from __future__ import annotations

from pathlib import Path

CALIBRATION_DIR = Path(__file__).parent / "data" / "calibration"


def default_calibration_texts() -> list[str]:
    """The lines of pyrt/data/calibration/*.txt (blank lines and '#' comments skipped)."""
    texts = []
    for path in sorted(CALIBRATION_DIR.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                texts.append(line.strip())
    return texts
