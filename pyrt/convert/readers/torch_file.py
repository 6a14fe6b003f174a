"""Reader of PyTorch .bin/.pt checkpoints. Only through torch.load(weights_only=True), which refuses
pickled code; without torch the file is refused with a clear error, never unpickled by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import FileFormatError, UnsupportedError
from .base import Source, SourceTensor


def _load_state_dict(path: Path) -> dict:
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        raise UnsupportedError(
            f"{path}: reading PyTorch checkpoints needs torch (pip install torch), which is not installed. "
            "pyrt never unpickles files without torch's weights_only loader; convert the checkpoint to "
            "safetensors instead.") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types; all mean "refused"
        raise FileFormatError(f"{path}: torch.load(weights_only=True) refused the file: {exc}") from exc
    # Training checkpoints nest the weights one level down.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise FileFormatError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def open_torch(path: Path, prefix: str = "") -> Source:
    state = _load_state_dict(path)

    def loader(t):
        def load() -> np.ndarray:
            import torch  # type: ignore[import-not-found]
            if t.dtype == torch.bfloat16:  # numpy has no bfloat16
                return t.float().numpy()
            return t.detach().cpu().numpy()
        return load

    tensors = [SourceTensor(prefix + name, tuple(t.shape), str(t.dtype).replace("torch.", ""),
                            t.numel() * t.element_size(), loader(t)) for name, t in state.items()]
    return Source("pytorch", path, tensors, source_files=[path])
