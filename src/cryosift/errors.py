"""Errors that the command line reports as one line, naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input: a file that is missing, malformed or inconsistent.

    Parameters
    ----------
    path : str or Path or None
        The file the problem is in (None when no single file is to blame).
    problem : str
        What is wrong, in the user's words.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def require_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise InputError if it is not an existing file."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if not p.is_file():
        raise InputError(p, "is not a file")
    return p
