"""Log lines of the command line: one format for every command, with ISO 8601 time stamps.

Every line reads ``2026-03-14T09:26:53+01:00 INFO message``: local time with its UTC
offset, so lines from jobs on different nodes (and a rerun days later) sort and compare.
Warnings from libraries (``warnings.warn``) become one-line log lines too, so a rule's log
holds one kind of line. Long steps report their progress through :class:`ProgressLog`.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"
#: Libraries whose INFO lines are per request, shown with --debug only.
QUIET = ("httpx", "httpcore")


class IsoFormatter(logging.Formatter):
    """Formats ``%(asctime)s`` as ISO 8601 local time with its UTC offset, to the second."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="seconds")


@contextmanager
def log_to_stderr(debug: bool = False):
    """Send log lines (INFO and up, DEBUG with ``debug``) to stderr while the block runs.

    The handler writes to the ``sys.stderr`` of the moment and is removed afterwards, with
    the root level and warning capture as they were, so running several commands in one
    process (as the tests do) neither doubles nor loses lines.
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(IsoFormatter(FORMAT))
    old_level, old_showwarning = root.level, warnings.showwarning
    # httpx logs every request at INFO: a CryoSPARC job polled for hours would bury the step's lines.
    quiet = {name: logging.getLogger(name).level for name in QUIET}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    warnings.showwarning = _warning_line
    try:
        yield handler
    finally:
        warnings.showwarning = old_showwarning
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning as one WARNING line (not Python's two lines with the source)."""
    text = " ".join(str(message).split())
    logging.getLogger("py.warnings").warning("%s: %s (%s:%d)", category.__name__, text, Path(filename).name, lineno)


class ProgressLog:
    """Progress of a long loop as log lines: ``<what> i/n (p %), <elapsed>[: detail]``.

    Parameters
    ----------
    logger : logging.Logger
        Where the lines go (INFO).
    what : str
        The loop, e.g. ``ab initio``.
    total : int
        Steps expected.
    every : float
        Seconds between lines; 0 writes one line per step. The first and the last step
        always get a line.
    """

    def __init__(self, logger: logging.Logger, what: str, total: int, every: float = 0.0):
        self.logger, self.what, self.total, self.every = logger, what, max(int(total), 0), float(every)
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = -float("inf")

    def step(self, detail: str = "", n: int = 1) -> None:
        """Count ``n`` finished steps and log a line when due; ``detail`` is appended."""
        self.done += int(n)
        now = time.perf_counter()
        first, last = self._last == -float("inf"), self.done >= self.total
        if not (first or last) and now - self._last < self.every:
            return
        self._last = now
        pct = f" ({100.0 * self.done / self.total:.0f} %)" if self.total else ""
        self.logger.info("%s %d/%d%s, %s%s", self.what, self.done, self.total, pct, elapsed(now - self.t0),
                         f": {detail}" if detail else "")


def elapsed(seconds: float) -> str:
    """``42 s``, ``12 min 5 s`` or ``3 h 7 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"
