"""Find RELION's programs and what the installed version can do."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class RelionInstall:
    """An installed RELION.

    Attributes
    ----------
    version : tuple of int
        (major, minor, patch), e.g. (3, 1, 3).
    refine, refine_mpi, reconstruct, preprocess : str or None
        Paths of the programs (None when absent).
    """

    version: tuple[int, int, int]
    refine: str
    refine_mpi: str | None
    reconstruct: str | None
    preprocess: str | None
    mpirun: str | None

    @property
    def has_vdam(self) -> bool:
        """Gradient-driven (VDAM) 2D classification and initial model: RELION 4 and later."""
        return self.version >= (4, 0, 0)

    @property
    def has_class_ranker(self) -> bool:
        """relion_class_ranker: RELION 4 and later."""
        return self.version >= (4, 0, 0)

    @property
    def has_sgd_initial_model(self) -> bool:
        """The SGD de novo initial model (--sgd --denovo_3dref): RELION 3.x; 4 and later use VDAM."""
        return self.version < (4, 0, 0)

    def describe(self) -> str:
        return f"RELION {'.'.join(map(str, self.version))} ({self.refine})"


_VERSION = re.compile(r"RELION version:\s*(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from RELION's version banner, or None."""
    m = _VERSION.search(text)
    if not m:
        return None
    return int(m[1]), int(m[2]), int(m[3] or 0)


@lru_cache(maxsize=4)
def find_relion(prefix: str = "") -> RelionInstall | None:
    """Locate RELION's programs (``prefix`` is a folder holding them, default PATH) and its version.

    Returns None when relion_refine is not installed.
    """
    def which(name):
        return shutil.which(f"{prefix.rstrip('/')}/{name}" if prefix else name)

    refine = which("relion_refine")
    if refine is None:
        return None
    proc = subprocess.run([refine, "--version"], capture_output=True, text=True, timeout=60)
    version = parse_version(proc.stdout + proc.stderr) or (0, 0, 0)
    return RelionInstall(version, refine, which("relion_refine_mpi"), which("relion_reconstruct"),
                         which("relion_preprocess"), shutil.which("mpirun"))
