"""pyrt: a lightweight inference runtime. Half-precision and block-quantized weights, exact
activations, fast CPU kernels, no PyTorch. See README.md and docs/."""
from __future__ import annotations

from ._version import __version__

from .errors import (
    ArgumentError, ArgumentTypeError, ChecksumError, DeviceError, DtypeError, FileFormatError, FileIOError,
    InternalError, PyrtError, RangeError, ShapeError, TemplateError, TruncatedFileError, UnsupportedError, VersionError,
)
from .formats import FORMATS, BLOCK_SIZES
from .llm import LanguageModel
from .ops import Linear, matmul
from .runtime import (
    available_cpu_isas, build_info, get_adaptive_threads, get_cpu_isa, get_num_threads, get_threads_last_used,
    get_wait_spin_us, set_adaptive_threads, set_cpu_isa, set_num_threads, set_wait_spin_us,
)
from .tensor import Tensor, quantize
from .model import Model, load
from .encoder import SentenceEncoder

__all__ = [
    "__version__", "Tensor", "quantize", "load", "Model", "matmul", "Linear", "SentenceEncoder", "LanguageModel", "build_info", "FORMATS", "BLOCK_SIZES",
    "get_num_threads", "set_num_threads", "get_threads_last_used", "get_adaptive_threads", "set_adaptive_threads",
    "get_wait_spin_us", "set_wait_spin_us", "get_cpu_isa", "set_cpu_isa", "available_cpu_isas",
    "PyrtError", "ShapeError", "DtypeError", "RangeError", "FileFormatError", "TruncatedFileError",
    "ChecksumError", "VersionError", "FileIOError", "DeviceError", "UnsupportedError", "InternalError",
    "ArgumentError", "ArgumentTypeError", "TemplateError",
]
