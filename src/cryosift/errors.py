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


class EngineError(RuntimeError):
    """An external program (RELION, cryoSPARC) failed.

    Parameters
    ----------
    engine : str
        Which engine, e.g. ``relion``.
    what : str
        The step that failed, e.g. ``relion_refine (2D classification)``.
    returncode : int or None
        The program's exit code (None when it did not run or was killed by a signal).
    stderr_tail : str
        The last lines it printed on stderr, shown in the error and the rule log.
    log : Path or None
        The full log.
    """

    def __init__(self, engine: str, what: str, returncode: int | None = None, stderr_tail: str = "",
                 log: str | Path | None = None):
        self.engine, self.what, self.returncode = engine, what, returncode
        self.stderr_tail, self.log = stderr_tail, None if log is None else str(log)
        status = "did not finish" if returncode is None else f"exited with code {returncode}"
        text = f"{what} {status}"
        if self.log:
            text += f" (log: {self.log})"
        if stderr_tail:
            text += "\n" + "\n".join("    " + line for line in stderr_tail.splitlines())
        super().__init__(text)
