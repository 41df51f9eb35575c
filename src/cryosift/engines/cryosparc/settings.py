"""Pipeline settings of the cryoSPARC engine: project, workspace, run name and job parameters.

Settings come from the ``cryosparc`` block of a YAML/JSON configuration (a dict, a file,
or the file named by ``CRYOSIFT_CRYOSPARC_CONFIG``); ``CRYOSIFT_CRYOSPARC_PROJECT`` and
``CRYOSIFT_CRYOSPARC_WORKSPACE`` fill in a missing project or workspace. Connection keys
(server, account, password) are read by :mod:`cryosift.engines.cryosparc.credentials`.
Unknown keys are an error, so a misspelt key cannot be silently ignored.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryosift.engines.cryosparc.credentials import CONNECTION_KEYS
from cryosift.engines.cryosparc.refs import OutputRef
from cryosift.errors import InputError

ENV_CONFIG = "CRYOSIFT_CRYOSPARC_CONFIG"
ENV_PROJECT = "CRYOSIFT_CRYOSPARC_PROJECT"
ENV_WORKSPACE = "CRYOSIFT_CRYOSPARC_WORKSPACE"

SELECT_METHODS = ("select_2D", "external")

_PROJECT = re.compile(r"^P\d+$")
_WORKSPACE = re.compile(r"^W\d+$")
_JOB = re.compile(r"^J\d+$")
_RUN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class CryosparcSettings:
    """What the engine does on the server.

    Attributes
    ----------
    project, workspace : str
        Where jobs are made, e.g. ``P3`` and ``W2``.
    run : str
        Run name: job titles start with ``[cryosift <run>]`` and every job is tagged
        ``cryosift-<run>``; a rerun with the same name finds its jobs again.
    lane : str or None
        Scheduler lane to queue jobs on (None: the server's default).
    micrographs : list of str
        Outputs holding the micrographs for re-extraction, e.g. ``["J3.micrographs"]``.
    extraction_box : int or None
        Full (unbinned) extraction box in px; picks the 2D job type and the re-extraction box.
    starter_job : str or None
        The user's 2D classification job whose parameters every 2D job copies (e.g. ``J12``).
    classify_params, extract_params, abinit_params, reconstruct_params : dict
        Parameter overrides per job type (applied last).
    seed : int or None
        Random seed of every ab initio job of the run (None: reuse the run's, or draw one).
    seed_param : str
        The ab initio parameter that takes the seed.
    select_method : {"select_2D", "external"}
        Apply selections through interactive Select 2D jobs or External jobs.
    reconstruct : bool
        Run a homogeneous reconstruction (half maps) after each ab initio job.
    validation_jobs : list of dict
        Further jobs per cutoff: ``{"key", "type", "params", "connections"}``, where a
        connection names ``extract``, ``abinit`` or ``reconstruct`` (or a job UID) and an output.
    project_dir : str or None
        Where the project folder is mounted here; exported particle image paths point into it.
    wait_timeout : int or None
        Seconds to wait for one job (None: no limit).
    connection : dict
        The connection keys (see :mod:`~cryosift.engines.cryosparc.credentials`).
    """

    project: str
    workspace: str
    run: str = "cryosift"
    lane: str | None = None
    micrographs: list = field(default_factory=list)
    extraction_box: int | None = None
    starter_job: str | None = None
    classify_params: dict = field(default_factory=dict)
    extract_params: dict = field(default_factory=dict)
    abinit_params: dict = field(default_factory=dict)
    reconstruct_params: dict = field(default_factory=dict)
    seed: int | None = None
    seed_param: str = "abinit_seed_init"
    select_method: str = "select_2D"
    reconstruct: bool = True
    validation_jobs: list = field(default_factory=list)
    project_dir: str | None = None
    wait_timeout: int | None = None
    connection: dict = field(default_factory=dict, repr=False)

    @property
    def tag(self) -> str:
        """The tag every job of this run carries."""
        return f"cryosift-{self.run}"

    def title(self, step: str) -> str:
        """The title of the job made for ``step`` (unique within the run)."""
        return f"[cryosift {self.run}] {step}"


_PIPELINE_KEYS = {
    "project", "workspace", "run", "lane", "micrographs", "extraction_box", "starter_job", "classify_params",
    "extract_params", "abinit_params", "reconstruct_params", "seed", "seed_param", "select_method",
    "reconstruct", "validation_jobs", "project_dir", "wait_timeout",
}


def read_config_file(path: str | Path) -> dict:
    """A YAML or JSON configuration file as a dict (its ``cryosparc`` block when it has one)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(p, "configuration file not found")
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text())
        else:
            import yaml

            data = yaml.safe_load(p.read_text())
    except Exception as exc:  # yaml and json raise different types on bad text
        raise InputError(p, f"not a readable configuration file ({type(exc).__name__}: {exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(p, "configuration must be a mapping")
    return data


def _block(config, env: Mapping) -> dict:
    if config is None:
        path = env.get(ENV_CONFIG)
        config = read_config_file(path) if path else {}
    elif isinstance(config, (str, Path)):
        config = read_config_file(config)
    config = dict(config)
    if isinstance(config.get("cryosparc"), Mapping):
        config = dict(config["cryosparc"])
    return config


def _check_uid(value, pattern, what: str, example: str):
    if value is None:
        return None
    text = str(value)
    if not pattern.match(text):
        raise InputError(None, f"cryosparc.{what} must look like {example} (got {text!r})")
    return text


def load_settings(config: Mapping | str | Path | None = None, env: Mapping | None = None,
                  **overrides) -> CryosparcSettings:
    """Settings from a configuration block, file or ``CRYOSIFT_CRYOSPARC_CONFIG``.

    Parameters
    ----------
    config : mapping, str or Path, optional
        The ``cryosparc`` block (or a whole configuration holding one), or a file with it.
    env : mapping, optional
        Environment (default: ``os.environ``).
    **overrides
        Keys that replace the configuration's (e.g. from command-line flags); None is ignored.

    Raises
    ------
    InputError
        Unknown keys, a missing project or workspace, or malformed values.
    """
    env = os.environ if env is None else env
    block = _block(config, env)
    block.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(block) - _PIPELINE_KEYS - set(CONNECTION_KEYS) - {"password"}
    if unknown:
        raise InputError(None, f"unknown cryosparc setting(s): {', '.join(sorted(unknown))}")
    project = block.get("project") or env.get(ENV_PROJECT)
    workspace = block.get("workspace") or env.get(ENV_WORKSPACE)
    if not project or not workspace:
        raise InputError(None, "cryosparc.project and cryosparc.workspace are required "
                               f"(or {ENV_PROJECT} / {ENV_WORKSPACE})")
    run = str(block.get("run", "cryosift"))
    if not _RUN.match(run):
        raise InputError(None, f"cryosparc.run must be letters, digits, '.', '_' or '-' (got {run!r})")
    method = block.get("select_method", "select_2D")
    if method not in SELECT_METHODS:
        raise InputError(None, f"cryosparc.select_method must be one of {', '.join(SELECT_METHODS)} (got {method!r})")
    micrographs = block.get("micrographs") or []
    if isinstance(micrographs, str):
        micrographs = [micrographs]
    for ref in micrographs:
        OutputRef.parse(ref, uid=True)  # raises on a malformed reference
    for name in ("classify_params", "extract_params", "abinit_params", "reconstruct_params"):
        if not isinstance(block.get(name, {}), Mapping):
            raise InputError(None, f"cryosparc.{name} must be a mapping of parameter names to values")
    jobs = block.get("validation_jobs") or []
    for i, job in enumerate(jobs):
        if not isinstance(job, Mapping) or not job.get("type") or not job.get("key"):
            raise InputError(None, f"cryosparc.validation_jobs[{i}] needs at least 'key' and 'type'")
    return CryosparcSettings(
        project=_check_uid(project, _PROJECT, "project", "P3"),
        workspace=_check_uid(workspace, _WORKSPACE, "workspace", "W1"),
        run=run,
        lane=block.get("lane") or None,
        micrographs=[str(m) for m in micrographs],
        extraction_box=_positive_int(block.get("extraction_box"), "extraction_box"),
        starter_job=_check_uid(block.get("starter_job"), _JOB, "starter_job", "J12"),
        classify_params=dict(block.get("classify_params") or {}),
        extract_params=dict(block.get("extract_params") or {}),
        abinit_params=dict(block.get("abinit_params") or {}),
        reconstruct_params=dict(block.get("reconstruct_params") or {}),
        seed=None if block.get("seed") is None else int(block["seed"]),
        seed_param=str(block.get("seed_param", "abinit_seed_init")),
        select_method=method,
        reconstruct=bool(block.get("reconstruct", True)),
        validation_jobs=[dict(j) for j in jobs],
        project_dir=block.get("project_dir") or None,
        wait_timeout=_positive_int(block.get("wait_timeout"), "wait_timeout"),
        connection={k: block[k] for k in (*CONNECTION_KEYS, "password") if k in block},
    )


def _positive_int(value, what: str) -> int | None:
    if value in (None, "", 0):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(None, f"cryosparc.{what} must be a whole number (got {value!r})") from None
    if number <= 0:
        raise InputError(None, f"cryosparc.{what} must be positive (got {number})")
    return number
