"""pyrt's exception hierarchy. Every error raised by pyrt is a :class:`PyrtError`.

Problems with the caller's data are also :class:`ValueError` (shapes, dtypes, ranges, corrupt
files), so generic ``except ValueError`` code keeps working. The native core maps its errors onto
these classes by name (csrc/bindings/register_errors.cc).
"""


class PyrtError(Exception):
    """Base class of all pyrt errors."""


class ShapeError(PyrtError, ValueError):
    """Shapes do not fit: wrong rank, mismatched K, a dimension not divisible by the block."""


class DtypeError(PyrtError, ValueError):
    """Wrong array dtype or memory layout, unknown weight format or block size."""


class RangeError(PyrtError, ValueError):
    """NaN/Inf input, or a value the target format cannot hold (FP16 overflow)."""


class FileFormatError(PyrtError, ValueError):
    """A model file is corrupt, inconsistent or not a pyrt file."""


class ConfigError(FileFormatError):
    """A model's configuration lacks a key, or holds a value of the wrong type or range (the message
    names the key and the value)."""


class TruncatedFileError(FileFormatError):
    """A model file ends before the data its header describes."""


class ChecksumError(FileFormatError):
    """A tensor's bytes do not match the checksum stored in the file."""


class VersionError(FileFormatError):
    """The file was written by a newer, incompatible version of the format."""


class ArgumentError(PyrtError, ValueError):
    """An argument pyrt cannot use: an unknown option, a malformed chat message, a bad value."""


class ArgumentTypeError(PyrtError, TypeError):
    """An argument of the wrong type (None where text is needed, a float where an int is)."""


class TemplateError(PyrtError, ValueError):
    """A chat template failed to parse or render, or raised an error itself (raise_exception)."""


class FileIOError(PyrtError, OSError):
    """The operating system refused to open, map or write a file."""


class DeviceError(PyrtError, RuntimeError):
    """A device (CUDA) is missing, or a device call failed."""


class UnsupportedError(PyrtError, RuntimeError):
    """The request is valid but this build or CPU cannot serve it (e.g. a forced ISA)."""


class InternalError(PyrtError, RuntimeError):
    """A bug in pyrt. Please report it with ``pyrt.build_info()``."""


__all__ = [
    "PyrtError", "ShapeError", "DtypeError", "RangeError", "FileFormatError", "ConfigError",
    "TruncatedFileError", "ChecksumError", "VersionError", "ArgumentError", "ArgumentTypeError",
    "TemplateError", "FileIOError", "DeviceError",
    "UnsupportedError", "InternalError",
]
