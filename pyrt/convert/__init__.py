"""pyrt-convert: checkpoints (safetensors, HF folders, .npz, PyTorch, GGUF) to .pyrt files."""
