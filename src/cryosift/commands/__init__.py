"""Subcommands of the ``cryosift`` command line, one module each."""
