"""CryosparcAdapter through cryosparc-tools' own CryoSPARC / JobController code.

No server runs here, so the tools' HTTP layer (``cs.api``) is replaced by a stub that
speaks the v5 API's method signatures and returns the tools' own pydantic models. Each
adapter method is checked for what reaches that layer (endpoints, bodies, connections,
tags) and what comes back.
"""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import httpx
import pytest
from cryosparc.dataset import Dataset
from cryosparc.errors import APIError
from cryosparc.models.job import Job
from cryosparc.tools import CryoSPARC

from cryosift.engines.cryosparc.adapter import CryosparcAdapter, check_versions, major_minor, tools_version
from cryosift.engines.cryosparc.credentials import ConnectionSettings, Secret
from cryosift.errors import EngineError, InputError

PASSWORD = "s3cret-Pa55word"


def api_error(code: int, text: str = "error") -> APIError:
    return APIError(text, res=httpx.Response(code, request=httpx.Request("GET", "http://stub/api/x")))


def job_model(uid, type="class_2D", title="", status="building", params=None, inputs=None, tags=()):
    return Job.model_validate({
        "uid": uid, "uid_num": int(uid[1:]), "project_uid": "P3", "project_uid_num": 3, "status_num": 0,
        "build_errors": [], "job_dir": uid, "job_dir_size_last_updated": datetime.datetime.now(datetime.timezone.utc),
        "title": title, "status": status, "tags": list(tags), "workspace_uids": ["W2"],
        "spec": {"type": type, "params": dict(params or {}), "outputs": {}, "ui_tile_width": 1, "ui_tile_height": 1,
                 "resource_spec": {},
                 "inputs": {name: {"type": "particle", "title": name,
                                   "connections": [{"job_uid": j, "output": o} for j, o in conns]}
                            for name, conns in (inputs or {}).items()}},
    })


class StubJobs:
    """``cs.api.jobs`` of a one-project server (signatures as in cryosparc-tools' ``api.pyi``)."""

    def __init__(self):
        self.models: dict[str, Job] = {}
        self.calls: list[tuple] = []
        self.outputs: dict[tuple, Dataset] = {}
        self.fail_with: Exception | None = None

    def _new(self, **kw) -> Job:
        uid = f"J{len(self.models) + 1}"
        self.models[uid] = job_model(uid, **kw)
        return self.models[uid]

    def find(self, *, order=1, after=None, limit=100, project_uid=None, workspace_uid=None, uid=None, type=None,
             status=None, category=None, created_at=None, updated_at=None, queued_at=None, started_at=None,
             waiting_at=None, completed_at=None, killed_at=None, failed_at=None, exported_at=None, deleted=False):
        self.calls.append(("find", project_uid, workspace_uid, type))
        if self.fail_with:
            raise self.fail_with
        jobs = [m for m in self.models.values() if type is None or m.spec.type in type]
        return [] if after else jobs

    def find_one(self, project_uid, job_uid, /):
        if job_uid not in self.models:
            raise api_error(404, f"job {job_uid} not found")
        return self.models[job_uid]

    def create(self, project_uid, workspace_uid, /, params={}, *, type, title="", description="",  # noqa: B006
               created_by_job_uid=None, enable_bench=False):
        self.calls.append(("create", project_uid, workspace_uid, type, dict(params or {}), title))
        return self._new(type=type, title=title, params=params)

    def connect(self, project_uid, job_uid, input_name, /, *, source_output_name, source_job_uid):
        self.calls.append(("connect", job_uid, input_name, source_job_uid, source_output_name))
        m = self.models[job_uid]
        inputs = {k: [(c.job_uid, c.output) for c in v.connections] for k, v in m.spec.inputs.root.items()}
        inputs[input_name] = inputs.get(input_name, []) + [(source_job_uid, source_output_name)]
        self.models[job_uid] = job_model(job_uid, m.spec.type, m.title, m.status, m.spec.params.model_dump(), inputs,
                                         m.tags)
        return self.models[job_uid]

    def add_tag(self, project_uid, job_uid, tag_uid, /):
        self.calls.append(("add_tag", job_uid, tag_uid))
        self.models[job_uid].tags.append(tag_uid)
        return self.models[job_uid]

    def enqueue(self, project_uid, job_uid, /, *, lane=None, hostname=None, gpus=[],  # noqa: B006
                no_check_inputs_ready=False):
        self.calls.append(("enqueue", job_uid, lane))
        self.models[job_uid].status = "completed"
        return self.models[job_uid]

    def interactive_post(self, project_uid, job_uid, /, body, *, endpoint, timeout=10):
        self.calls.append(("interactive_post", job_uid, endpoint, dict(body)))
        if endpoint == "get_class_info":
            return [{"class_idx": i, "num_particles_total": 10 * (i + 1), "selected": False} for i in range(3)]
        return None

    def load_output(self, project_uid, job_uid, output_name, /, *, version="F", slots="default"):
        self.calls.append(("load_output", job_uid, output_name, slots))
        return self.outputs[(job_uid, output_name)]

    def set_title(self, project_uid, job_uid, /, *, title):
        self.calls.append(("set_title", job_uid, title))
        self.models[job_uid].title = title
        return self.models[job_uid]

    def set_description(self, project_uid, job_uid, /, description):
        self.calls.append(("set_description", job_uid, description))
        return self.models[job_uid]

    def create_external_result(self, project_uid, workspace_uid, /, body):
        self.calls.append(("create_external_result", workspace_uid, body))
        return self._new(type="snowflake", status="building")

    def mark_running(self, project_uid, job_uid, /, *, status="running"):
        self.models[job_uid].status = status
        return self.models[job_uid]

    def save_output(self, project_uid, job_uid, output_name, /, dataset, *, filename=None, version=0):
        self.calls.append(("save_output", job_uid, output_name, len(dataset)))
        return self.models[job_uid]

    def mark_completed(self, project_uid, job_uid, /):
        self.models[job_uid].status = "completed"
        return self.models[job_uid]

    def get_log(self, project_uid, job_uid, /):
        return "line 1\nline 2\nfailed with " + PASSWORD


class StubTags:
    def __init__(self):
        self.tags = [SimpleNamespace(uid="T1", title="other", id="1")]
        self.calls = []

    def find(self, *, order=1, after=None, limit=100, created_by_user_id=None, type=None, uid=None):
        return [] if after else list(self.tags)

    def create(self, *, type, colour=None, description=None, created_by_workflow=None, title):
        self.calls.append(("create", type, title))
        tag = SimpleNamespace(uid=f"T{len(self.tags) + 1}", title=title, id=str(len(self.tags) + 1))
        self.tags.append(tag)
        return tag


class StubStream:
    def __init__(self, data: bytes):
        self.data = data

    def save(self, target):
        with open(target, "wb") as fh:
            fh.write(self.data)


class StubProjects:
    def find_one(self, project_uid, /):
        if project_uid != "P3":
            raise api_error(404)
        return SimpleNamespace(uid="P3", title="Apoferritin")

    def download_file(self, project_uid, /, *, path=""):
        return StubStream(f"contents of {path}".encode())


class StubWorkspaces:
    def find_one(self, project_uid, workspace_uid, /):
        return SimpleNamespace(uid=workspace_uid, title="Run")


class StubConfig:
    def get_version(self):
        return "v5.0.1"


#: ``cs.api`` namespace -> its stub here; each stub method has the signature of the function
#: in cryosparc-tools' API stubs (test_cryosparc_contract.py holds them to it).
STUBS = {"jobs": StubJobs, "tags": StubTags, "projects": StubProjects, "workspaces": StubWorkspaces,
         "config": StubConfig}


@pytest.fixture
def stub():
    cs = object.__new__(CryoSPARC)  # the tools' own class, without logging in
    cs.base_url = "http://stub:39000"
    cs.api = SimpleNamespace(**{name: cls() for name, cls in STUBS.items()})
    settings = ConnectionSettings("http://stub:39000", "me@example.org", Secret(PASSWORD), "environment variable X")
    return CryosparcAdapter(cs, settings), cs.api


def test_create_job_connects_inputs_and_tags_it(stub):
    adapter, api = stub
    api.jobs._new(type="extract_micrographs_multi", status="completed")  # J1
    job = adapter.create_job("P3", "W2", "class_2D", {"class2D_K": 6}, {"particles": [("J1", "particles")]},
                             "[cryosift t] ds/round1/classify2d", tags=["cryosift-t"])
    assert ("create", "P3", "W2", "class_2D", {"class2D_K": 6}, "[cryosift t] ds/round1/classify2d") in api.jobs.calls
    assert ("connect", "J2", "particles", "J1", "particles") in api.jobs.calls
    assert api.tags.calls == [("create", "job", "cryosift-t")] and ("add_tag", "J2", "T2") in api.jobs.calls
    assert (job.uid, job.type, job.status) == ("J2", "class_2D", "building")
    assert job.connections == {"particles": [("J1", "particles")]} and job.params == {"class2D_K": 6}
    assert job.tags == ("cryosift-t",)


def test_find_jobs_by_title_tag_and_type(stub):
    adapter, api = stub
    api.jobs._new(type="class_2D", title="a", tags=["T1"])
    api.jobs._new(type="homo_abinit", title="b")
    assert [j.uid for j in adapter.find_jobs("P3", "W2", title="a")] == ["J1"]
    assert [j.uid for j in adapter.find_jobs("P3", "W2", tag="other")] == ["J1"]
    assert adapter.find_jobs("P3", "W2", tag="no such tag") == []
    assert [j.uid for j in adapter.find_jobs("P3", "W2", type="homo_abinit")] == ["J2"]
    assert ("find", ["P3"], ["W2"], ["homo_abinit"]) in api.jobs.calls


def test_queue_and_wait_and_select_2d_interaction(stub):
    adapter, api = stub
    api.jobs._new(type="select_2D")
    assert adapter.queue_and_wait("P3", "J1", lane="gpu") == "completed"
    assert ("enqueue", "J1", "gpu") in api.jobs.calls
    info = adapter.class_info("P3", "J1")
    adapter.set_class_selected("P3", "J1", 2, True)
    adapter.finish("P3", "J1")
    posts = [c[2:] for c in api.jobs.calls if c[0] == "interactive_post"]
    assert posts == [("get_class_info", {}), ("set_class_selected", {"class_idx": 2, "selected": True}), ("finish", {})]
    assert [c["num_particles_total"] for c in info] == [10, 20, 30]


def test_outputs_downloads_and_external_jobs(stub, tmp_path):
    adapter, api = stub
    api.jobs._new(type="class_2D", status="completed")
    ds = Dataset.allocate(3, [("alignments2D/class", "u4")])
    api.jobs.outputs[("J1", "particles")] = ds
    assert adapter.load_output("P3", "J1", "particles", slots=["alignments2D"]) is ds
    assert ("load_output", "J1", "particles", ["alignments2D"]) in api.jobs.calls
    target = adapter.download_file("P3", "J1/J1_020_class_averages.mrc", tmp_path / "x.mrc")
    assert target.read_bytes() == b"contents of J1/J1_020_class_averages.mrc"
    job = adapter.save_external_output("P3", "W2", ds.slice(0, 2), "particle", "particles_selected", ["alignments2D"],
                                       ("J1", "particles"), "[cryosift t] ds/round1/select_kept", "two rows",
                                       tags=["cryosift-t"])
    body = next(c[2] for c in api.jobs.calls if c[0] == "create_external_result")
    assert body.name == "particles_selected" and body.spec.type == "particle"
    assert [getattr(s, "name", s) for s in body.spec.slots] == ["alignments2D"]
    assert (body.connection.job_uid, body.connection.output) == ("J1", "particles")
    assert ("save_output", "J2", "particles_selected", 2) in api.jobs.calls
    assert ("set_title", "J2", "[cryosift t] ds/round1/select_kept") in api.jobs.calls
    assert ("set_description", "J2", "two rows") in api.jobs.calls
    assert (job.uid, job.type, job.status, job.title) == ("J2", "snowflake", "completed",
                                                         "[cryosift t] ds/round1/select_kept")


def test_errors_are_clear_and_carry_no_password(stub):
    adapter, api = stub
    with pytest.raises(InputError, match="project P9 not found"):
        adapter.check_project("P9", "W1")
    assert adapter.check_project("P3", "W2") == {"project_title": "Apoferritin", "workspace_title": "Run"}
    api.jobs.fail_with = api_error(500, f"database said {PASSWORD}")
    with pytest.raises(EngineError) as err:
        adapter.find_jobs("P3", "W2", title="x")
    assert "listing the jobs of P3 W2" in str(err.value) and PASSWORD not in str(err.value) and "***" in str(err.value)
    api.jobs._new(type="class_2D", status="failed")
    assert PASSWORD not in adapter.log_tail("P3", "J1") and adapter.log_tail("P3", "J1").startswith("line 1")
    assert PASSWORD not in repr(adapter)


def matching_server() -> str:
    """A server version the installed cryosparc-tools works with (its own major.minor)."""
    major, minor = major_minor(tools_version())
    return f"v{major}.{minor}.2"


def other_server() -> tuple[str, str]:
    """A server version the installed cryosparc-tools refuses, and the pin that server needs."""
    server = "v4.7.1" if major_minor(tools_version()) != (4, 7) else "v5.0.1"
    major, minor = major_minor(server)
    return server, f"cryosparc-tools~={major}.{minor}.0"


class Client:
    """Stands in for cryosparc.tools.CryoSPARC in connect(): records its arguments."""

    version = matching_server()
    seen: dict = {}

    def __init__(self, **kwargs):
        Client.seen = kwargs
        self.api = SimpleNamespace(config=SimpleNamespace(get_version=lambda: Client.version))


def test_connect_passes_explicit_arguments_and_checks_the_version(monkeypatch):
    settings = ConnectionSettings("https://cs.example.org", "me@example.org", Secret(PASSWORD), "file f", 60)
    monkeypatch.setenv("CRYOSPARC_MASTER_HOSTNAME", "elsewhere")  # must not leak into the call
    adapter = CryosparcAdapter.connect(settings, client_factory=Client)
    assert Client.seen == {"base_url": "https://cs.example.org", "host": None, "base_port": None,
                           "email": "me@example.org", "password": PASSWORD, "timeout": 60}
    assert adapter.server_version() == matching_server()
    server, pin = other_server()
    monkeypatch.setattr(Client, "version", server)
    with pytest.raises(EngineError) as err:
        CryosparcAdapter.connect(settings, client_factory=Client)
    text = str(err.value)
    major, minor = major_minor(tools_version())
    assert f"cryosparc-tools {tools_version()} works with CryoSPARC v{major}.{minor} only" in text and server in text
    assert pin in text and PASSWORD not in text


def test_version_rules():
    assert major_minor("5.0.3") == (5, 0) and major_minor("v4.6.2") == (4, 6) and major_minor("dev") is None
    check_versions("5.0.3", "v5.0.0")
    check_versions("4.6.1", "v4.6.2")
    for server in ("v5.1.0", "v4.0.0", "v6.0"):
        with pytest.raises(EngineError, match="works with CryoSPARC"):
            check_versions("5.0.3", server)
    with pytest.raises(EngineError, match="unreadable version"):
        check_versions("5.0.3", "unknown")
