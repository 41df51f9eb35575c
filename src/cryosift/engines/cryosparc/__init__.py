"""The cryoSPARC engine: CryoSift's steps as jobs on a CryoSPARC server, through cryosparc-tools.

Layers, from the server inwards:

- :mod:`~cryosift.engines.cryosparc.adapter`: the only code that calls cryosparc-tools'
  live-server API (log in, version check, make/queue/wait for jobs, load outputs, Select 2D
  interaction, External job outputs, downloads);
- :mod:`~cryosift.engines.cryosparc.credentials` and :mod:`~cryosift.engines.cryosparc.settings`:
  server, account, password (never shown) and the run's project, workspace and parameters;
- :mod:`~cryosift.engines.cryosparc.params` and :mod:`~cryosift.engines.cryosparc.graph`: job
  parameters and the job graph, also printable as a plan without a server;
- :mod:`~cryosift.engines.cryosparc.runner`: idempotent job handling (a rerun finds its jobs by title);
- :mod:`~cryosift.engines.cryosparc.classify`, :mod:`~cryosift.engines.cryosparc.reconstruct`
  and :mod:`~cryosift.engines.cryosparc.exports`: the steps and their local exports;
- :class:`CryosparcEngine`: the engine protocol over all of it;
- :mod:`~cryosift.engines.cryosparc.workflow`: what the Snakemake workflow adds (its settings
  file, datasets whose source is on the server, per-cutoff copies for validation).
"""

from cryosift.engines.cryosparc.adapter import CryosparcAdapter, JobRef, check_versions
from cryosift.engines.cryosparc.credentials import ConnectionSettings, Secret, load_connection_settings
from cryosift.engines.cryosparc.engine import CryosparcEngine
from cryosift.engines.cryosparc.graph import JobSpec, OutputRef, build_plan, render_plan
from cryosift.engines.cryosparc.settings import CryosparcSettings, load_settings

__all__ = [
    "ConnectionSettings", "CryosparcAdapter", "CryosparcEngine", "CryosparcSettings", "JobRef", "JobSpec",
    "OutputRef", "Secret", "build_plan", "check_versions", "load_connection_settings", "load_settings",
    "render_plan",
]
