"""pyrt's version, written only here: pyproject.toml reads it (scikit-build-core's regex provider),
CMakeLists.txt passes it to the C++ core, `pyrt --version` and pyrt.__version__ report it."""
__version__ = "0.1.0"
