"""Names of cryoSPARC job outputs (``J12.particles``).

Its own module because both the settings (which check the configured micrograph outputs)
and the job graph (which connects outputs) need it, and neither may import the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryosift.errors import InputError

_REF = re.compile(r"^(?P<job>[A-Za-z][A-Za-z0-9_/-]*)[.:](?P<output>[A-Za-z][A-Za-z0-9_]*)$")
_JOB_UID = re.compile(r"^J\d+$")


@dataclass(frozen=True)
class OutputRef:
    """One output of one job (re-exported by :mod:`~cryosift.engines.cryosparc.graph`).

    Attributes
    ----------
    job : str
        A job UID (``J12``) or, in a plan, the key of a planned job.
    output : str
        The output's name, e.g. ``particles``.
    """

    job: str
    output: str

    def __str__(self) -> str:
        return f"{self.job}.{self.output}"

    @classmethod
    def parse(cls, text: str | OutputRef, uid: bool = False) -> OutputRef:
        """Parse ``J12.particles`` or ``J12:particles`` (with ``uid``, the job must be a job UID)."""
        if isinstance(text, OutputRef):
            return text
        m = _REF.match(str(text).strip())
        if not m or (uid and not _JOB_UID.match(m["job"])):
            raise InputError(None, f"{text!r} is neither an existing file nor a job output such as J12.particles")
        return cls(m["job"], m["output"])
