"""Subcommands of the `pyrt` command line, one module each with `register(subparsers)`."""
