"""Subcommands of the `pyrt` CLI (see pyrt/cli.py): one module each, exposing register(subparsers)."""
