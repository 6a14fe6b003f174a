"""pyrt-convert: checkpoints (Hugging Face folders, safetensors, .npz, PyTorch, GGUF) to .pyrt files.

Works without the native core (slower: the numpy reference quantizer is used then)."""
from .pipeline import convert_checkpoint
from .writer import ModelWriter, save_model

__all__ = ["convert_checkpoint", "ModelWriter", "save_model"]
