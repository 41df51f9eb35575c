"""The one place that talks to a live CryoSPARC server, through cryosparc-tools.

Everything else in the engine calls the few methods of :class:`CryosparcAdapter` with
plain values (project/workspace/job UIDs, parameter dicts, ``(job, output)`` tuples) and
gets back :class:`JobRef` records or cryosparc-tools ``Dataset`` objects. Tests replace
the adapter with a recording fake that honours the same methods.

Every failure leaves as :class:`~cryosift.errors.EngineError` (or
:class:`~cryosift.errors.InputError` for a missing project, workspace or credentials, and
for a server that does not answer, at login or in the middle of a run: one line naming it),
with the password and its digest scrubbed from the text. The server's major.minor version
must equal cryosparc-tools' (tools 5.0.x for CryoSPARC v5.0, 4.x for v4.x).
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cryosift.engines.cryosparc.credentials import ConnectionSettings, Secret
from cryosift.errors import EngineError, InputError
from cryosift.logs import elapsed

log = logging.getLogger(__name__)

ENGINE = "cryosparc"
#: Job statuses after which a job does not change by itself.
DONE = ("completed", "killed", "failed")
#: Seconds between the status lines logged while waiting for a job.
WAIT_REPORT_S = 300


@dataclass
class JobRef:
    """What the engine needs to know about a job on the server.

    Attributes
    ----------
    project_uid, uid : str
        e.g. ``P3`` and ``J42``.
    type, title, status : str
        Job type key, title and scheduling status (``building`` ... ``completed``).
    tags : tuple of str
        Tag titles.
    connections : dict
        Input name -> list of (job UID, output name).
    params : dict
        Parameter values set on the job.
    """

    project_uid: str
    uid: str
    type: str
    title: str = ""
    status: str = "building"
    tags: tuple = ()
    connections: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def number(self) -> int:
        """The job number (``J42`` -> 42), for ordering."""
        m = re.search(r"\d+", self.uid)
        return int(m.group()) if m else -1


def tools_version() -> str:
    """The installed cryosparc-tools version, e.g. ``5.0.3``."""
    import cryosparc

    return cryosparc.__version__


_MAJOR_MINOR = re.compile(r"^v?(\d+)\.(\d+)")


def major_minor(version: str) -> tuple[int, int] | None:
    """(major, minor) of ``5.0.3`` or ``v5.0.1``; None when unreadable."""
    m = _MAJOR_MINOR.match(str(version).strip())
    return (int(m[1]), int(m[2])) if m else None


def check_versions(tools: str, server: str, where: str = "the server") -> None:
    """Raise EngineError unless cryosparc-tools and the server share major.minor.

    Parameters
    ----------
    tools : str
        cryosparc-tools version (``5.0.3``).
    server : str
        CryoSPARC version as the server reports it (``v5.0.1``).
    where : str
        The server, for the message.
    """
    t, s = major_minor(tools), major_minor(server)
    what = f"checking the CryoSPARC version at {where}"
    if s is None:
        raise EngineError(ENGINE, what, None, f"the server reported an unreadable version {server!r}")
    if t != s:
        raise EngineError(ENGINE, what, None,
                          f"cryosparc-tools {tools} works with CryoSPARC v{t[0]}.{t[1]} only, but the server runs "
                          f"{server}; install the matching tools: pip install 'cryosparc-tools~={s[0]}.{s[1]}.0'")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def transport_failure(exc: BaseException) -> BaseException | None:
    """The network failure behind ``exc`` (refused or dropped connection, timeout), if any.

    Only failures of the connection to the server count: a local file error while saving a
    download is not the server's.
    """
    import httpx

    for e in _chain(exc):
        if isinstance(e, (httpx.TransportError, ConnectionError, TimeoutError)):
            return e
    return None


def unreachable(base_url: str, what: str, cause: BaseException, secret: Secret, advice: str) -> InputError:
    """One line for a server that does not answer: where, during what, the network error, what to do."""
    text = " ".join(f"{type(cause).__name__}: {cause}".split())  # httpx messages may span lines
    return InputError(base_url, secret.scrub(f"CryoSPARC did not answer while {what} ({text}); {advice}"))


def connection_error(settings: ConnectionSettings, exc: BaseException) -> Exception:
    """Translate a failure to log in into a clear EngineError or InputError (no secrets)."""
    where = f"connecting to CryoSPARC at {settings.base_url} as {settings.email}"
    chain = _chain(exc)
    for e in chain:
        code = getattr(e, "code", None)
        if isinstance(code, int) and code in (401, 403):
            return EngineError(ENGINE, where, None,
                               f"the server refused the e-mail/password (HTTP {code}); check cryosparc.email and "
                               f"the password from {settings.password_source}")
    cause = transport_failure(exc)
    if cause is not None:
        return unreachable(settings.base_url, f"logging in as {settings.email}", cause, settings.password,
                           "check cryosparc.base_url and that CryoSPARC is running")
    if isinstance(exc, ValueError) and "authentication" in str(exc).lower():
        return InputError(None, f"no CryoSPARC credentials for {settings.base_url}")
    mm = major_minor(tools_version())
    return EngineError(ENGINE, where, None,
                       settings.password.scrub(f"{type(exc).__name__}: {exc}")
                       + f"\n(cryosparc-tools {tools_version()} talks to CryoSPARC v{mm[0]}.{mm[1]} servers only)")


class CryosparcAdapter:
    """A narrow interface to one CryoSPARC server.

    Parameters
    ----------
    client : cryosparc.tools.CryoSPARC
        A logged-in session (see :meth:`connect`).
    settings : ConnectionSettings, optional
        Where it is connected (for messages and to scrub the password from errors).
    """

    def __init__(self, client, settings: ConnectionSettings | None = None):
        self._cs = client
        self._settings = settings
        self._secret = settings.password if settings is not None else Secret("")
        self._tag_uids: dict[str, str] | None = None

    @classmethod
    def connect(cls, settings: ConnectionSettings, client_factory: Callable | None = None) -> CryosparcAdapter:
        """Log in and check that the server's version matches cryosparc-tools'.

        Parameters
        ----------
        settings : ConnectionSettings
            Server, account and password.
        client_factory : callable, optional
            Builds the session (default: ``cryosparc.tools.CryoSPARC``).

        Raises
        ------
        EngineError
            Server unreachable, credentials refused, or a version mismatch.
        """
        if client_factory is None:
            from cryosparc.tools import CryoSPARC as client_factory
        log.info("connecting to CryoSPARC: %s", settings.describe())
        try:
            with warnings.catch_warnings():
                # The tools only warn on a version mismatch; check_versions below refuses it.
                warnings.simplefilter("ignore")
                client = client_factory(base_url=settings.base_url, host=None, base_port=None, email=settings.email,
                                        password=settings.password.reveal(), timeout=settings.timeout)
        except Exception as exc:  # the tools wrap every failure in RuntimeError/ValueError
            raise connection_error(settings, exc) from None
        adapter = cls(client, settings)
        check_versions(tools_version(), adapter.server_version(), settings.base_url)
        return adapter

    def __repr__(self) -> str:
        where = self._settings.describe() if self._settings is not None else "a CryoSPARC session"
        return f"CryosparcAdapter({where})"

    # ----------------------------------------------------------------- plumbing
    def _call(self, what: str, fn: Callable, *args, missing: str | None = None, **kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except (EngineError, InputError):
            raise
        except Exception as exc:  # cryosparc-tools raises APIError, httpx errors, AssertionError ...
            code = getattr(exc, "code", None)
            if missing and code == 404:
                raise InputError(None, f"{missing} not found on the CryoSPARC server") from None
            cause = transport_failure(exc)
            if cause is not None:  # the server went away (stopped, restarted, network): one line, then rerun
                where = self._settings.base_url if self._settings is not None else getattr(self._cs, "base_url", None)
                raise unreachable(where or "CryoSPARC server", what, cause, self._secret,
                                  "jobs already queued go on running there: run again when the server is back "
                                  "and the run takes them up") from None
            text = self._secret.scrub(f"{type(exc).__name__}: {exc}")
            raise EngineError(ENGINE, what, None, text[-3000:]) from None

    def _job(self, project: str, uid: str):
        return self._call(f"finding {project} {uid}", self._cs.find_job, project, uid, missing=f"job {project} {uid}")

    def _tags(self, refresh: bool = False) -> dict[str, str]:
        """Job tag title -> tag UID."""
        if self._tag_uids is None or refresh:
            found, after = {}, None
            while True:
                page = self._cs.api.tags.find(type=["job"], after=after, limit=100)
                found.update({t.title: t.uid for t in page})
                if len(page) < 100:
                    break
                after = page[-1].id
            self._tag_uids = found
        return self._tag_uids

    def _tag_uid(self, title: str) -> str:
        uid = self._tags().get(title)
        if uid is None:
            uid = self._cs.api.tags.create(type="job", title=title).uid
            self._tag_uids[title] = uid
        return uid

    def _ref(self, model) -> JobRef:
        titles = {uid: title for title, uid in self._tags().items()} if model.tags else {}
        inputs = model.spec.inputs.root
        return JobRef(
            project_uid=model.project_uid, uid=model.uid, type=model.spec.type, title=model.title,
            status=model.status, tags=tuple(titles.get(t, t) for t in model.tags),
            connections={name: [(c.job_uid, c.output) for c in inp.connections] for name, inp in inputs.items()},
            params=model.spec.params.model_dump(exclude_none=True),
        )

    # ----------------------------------------------------------------- server
    def server_version(self) -> str:
        """The server's CryoSPARC version, e.g. ``v5.0.1``."""
        return self._call("reading the CryoSPARC version", self._cs.api.config.get_version)

    def check_project(self, project: str, workspace: str) -> dict:
        """Titles of a project and workspace; InputError when either does not exist."""
        p = self._call(f"opening project {project}", self._cs.find_project, project, missing=f"project {project}")
        w = self._call(f"opening workspace {project} {workspace}", self._cs.find_workspace, project, workspace,
                       missing=f"workspace {project} {workspace}")
        return {"project_title": p.title, "workspace_title": w.title}

    # ----------------------------------------------------------------- jobs
    def find_jobs(self, project: str, workspace: str, *, title: str | None = None, tag: str | None = None,
                  type: str | None = None) -> list[JobRef]:
        """Jobs in a workspace with this exact title and/or tag (title) and/or type."""
        def run():
            tag_uid = None
            if tag is not None:
                tag_uid = self._tags().get(tag) or self._tags(refresh=True).get(tag)
                if tag_uid is None:
                    return []
            search = {"type": type} if type else {}
            found = []
            for job in self._cs.find_jobs(project, workspace, **search):
                m = job.model
                if title is not None and m.title != title:
                    continue
                if tag_uid is not None and tag_uid not in m.tags:
                    continue
                found.append(self._ref(m))
            return found

        return self._call(f"listing the jobs of {project} {workspace}", run)

    def job(self, project: str, uid: str) -> JobRef:
        """The current state of one job."""
        return self._call(f"reading {project} {uid}", lambda: self._ref(self._job(project, uid).model))

    def create_job(self, project: str, workspace: str, type: str, params: dict, connections: dict, title: str,
                   tags=()) -> JobRef:
        """Make a job (status ``building``) with parameters, input connections, title and tags.

        ``connections`` maps an input name to a list of (job UID, output name).
        """
        def run():
            conns = {name: [tuple(c) for c in refs] for name, refs in connections.items()}
            job = self._cs.create_job(project, workspace, type, connections=conns, params=dict(params), title=title)
            for t in tags:
                self._cs.api.jobs.add_tag(project, job.uid, self._tag_uid(t))
            return self._ref(job.refresh().model)

        return self._call(f"creating a {type} job in {project} {workspace}", run)

    def queue(self, project: str, uid: str, lane: str | None = None) -> None:
        """Queue a job (on ``lane``, or the server's default)."""
        self._call(f"queuing {project} {uid}", lambda: self._job(project, uid).queue(lane=lane))

    def wait(self, project: str, uid: str, statuses=DONE, timeout: int | None = None) -> str:
        """Wait until the job reaches one of ``statuses`` (at most ``timeout`` s); returns the status it has then.

        While it waits, the job's status is logged every :data:`WAIT_REPORT_S` seconds, so a
        rule's log shows a job that runs for hours as alive.
        """
        job = self._job(project, uid)
        t0 = time.monotonic()
        while True:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - t0))
            part = WAIT_REPORT_S if left is None else min(WAIT_REPORT_S, left)
            status = self._call(f"waiting for {project} {uid}", job.wait_for_status, list(statuses), timeout=part)
            if status in statuses or (left is not None and left <= part):
                return status
            log.info("%s %s: %s, waited %s", project, uid, status, elapsed(time.monotonic() - t0))

    def queue_and_wait(self, project: str, uid: str, lane: str | None = None, timeout: int | None = None) -> str:
        """Queue a job and wait until it is completed, failed or killed; returns that status."""
        self.queue(project, uid, lane)
        return self.wait(project, uid, DONE, timeout)

    def set_description(self, project: str, uid: str, text: str) -> None:
        """Replace a job's (markdown) description, shown in the CryoSPARC interface."""
        self._call(f"describing {project} {uid}", lambda: self._job(project, uid).set_description(text))

    def log_tail(self, project: str, uid: str, lines: int = 20) -> str:
        """The last lines of a job's log (empty when the server does not give it)."""
        try:
            text = self._cs.api.jobs.get_log(project, uid)
        except Exception:  # a missing log must not hide the error being reported
            return ""
        return self._secret.scrub("\n".join(str(text).splitlines()[-lines:]))

    # ----------------------------------------------------------------- data
    def load_output(self, project: str, uid: str, output: str, slots="all"):
        """A job output as a cryosparc-tools Dataset."""
        return self._call(f"loading {project} {uid}.{output}",
                          lambda: self._job(project, uid).load_output(output, slots=slots))

    def download_file(self, project: str, path: str, target: str | Path) -> Path:
        """Copy a file of the project folder (path relative to it) to ``target``."""
        self._call(f"downloading {path} from {project}", self._cs.download_file, project, path, str(target))
        return Path(target)

    # ----------------------------------------------------------------- Select 2D
    def class_info(self, project: str, uid: str) -> list[dict]:
        """A waiting Select 2D job's classes: dicts with ``class_idx``, ``num_particles_total`` ..."""
        return self._call(f"reading the classes of {project} {uid}",
                          lambda: list(self._job(project, uid).interact("get_class_info")))

    def set_class_selected(self, project: str, uid: str, class_idx: int, selected: bool) -> None:
        """Select or deselect one class (0-based ``class_idx``) in a waiting Select 2D job."""
        body = {"class_idx": int(class_idx), "selected": bool(selected)}
        self._call(f"selecting class {class_idx} in {project} {uid}",
                   lambda: self._job(project, uid).interact("set_class_selected", body))

    def finish(self, project: str, uid: str) -> None:
        """Finish an interactive job (Select 2D writes its outputs)."""
        self._call(f"finishing {project} {uid}", lambda: self._job(project, uid).interact("finish"))

    # ----------------------------------------------------------------- External jobs
    def save_external_output(self, project: str, workspace: str, dataset, type: str, name: str, slots,
                             passthrough: tuple | None, title: str, description: str = "", tags=()) -> JobRef:
        """Save ``dataset`` as output ``name`` of a new, completed External job.

        Parameters
        ----------
        dataset : Dataset
            Rows (by uid) of the output, with the ``slots`` it writes.
        type : str
            Output data type (``particle``, ``template``, ...).
        slots : sequence of str
            Slots the dataset sets; the rest pass through from ``passthrough``.
        passthrough : (str, str) or None
            (job UID, output name) the rows come from.
        title : str
            The External job's title (the engine finds it again by it).
        """
        def run():
            uid = self._cs.save_external_result(project, workspace, dataset, type=type, name=name, slots=list(slots),
                                                passthrough=tuple(passthrough) if passthrough else None,
                                                title=name.replace("_", " "))
            job = self._cs.find_job(project, uid)
            job.set_title(title)
            if description:
                job.set_description(description)
            for t in tags:
                self._cs.api.jobs.add_tag(project, uid, self._tag_uid(t))
            return self._ref(job.refresh().model)

        return self._call(f"saving output {name} in an External job of {project} {workspace}", run)
