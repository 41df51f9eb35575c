"""The cryoSPARC contract held to cryosparc-tools itself, without a server.

- The stub of ``cs.api`` in test_cryosparc_adapter.py has, function for function, the
  signatures of cryosparc-tools' own API stubs (``cryosparc/api.pyi``): names, positional /
  keyword kinds and defaults.
- Every call the adapter makes into the tools (``CryoSPARC``, ``JobController``, ``cs.api``)
  binds to the tools' signatures, and ``connect`` passes only arguments ``CryoSPARC`` takes.
- The job parameters the engine sets are checked against the typed parameter models the
  tools ship (CryoSPARC Live's 2D, ab initio and extraction parameters share the job
  parameters' names), the External job's output types against the tools' ``Datatype`` and
  the statuses the engine waits for against ``JobStatus``. What the tools do not ship (most
  job parameters, job types, input/output names, Select 2D's endpoints) is listed in
  docs/cryosparc.md, and that list is checked to be exactly what stays unverified.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import typing
from pathlib import Path

import pydantic
import pytest
from cryosparc.controllers.job import JobController
from cryosparc.tools import CryoSPARC

import cryosift.engines.cryosparc.adapter as adapter_module
from cryosift.engines.cryosparc import params as P
from cryosift.engines.cryosparc.adapter import DONE, CryosparcAdapter
from cryosift.engines.cryosparc.credentials import ConnectionSettings, Secret
from cryosift.engines.cryosparc.graph import build_plan
from cryosift.engines.cryosparc.settings import load_settings
from tests.cryosparc_api import shape, stub_signature
from tests.test_cryosparc_adapter import STUBS

ROOT = Path(__file__).resolve().parents[1]


def own_signature(fn) -> inspect.Signature:
    sig = inspect.signature(fn)
    return sig.replace(parameters=list(sig.parameters.values())[1:])  # without self


@pytest.mark.parametrize("namespace", sorted(STUBS))
def test_api_stub_functions_have_the_tools_signatures(namespace):
    stub = STUBS[namespace]
    functions = {n: f for n, f in vars(stub).items() if not n.startswith("_") and callable(f)}
    assert functions, f"no functions in the stub of api.{namespace}"
    for name, fn in functions.items():
        assert shape(own_signature(fn)) == shape(stub_signature(namespace, name)), f"api.{namespace}.{name}"


def test_a_stub_that_drifts_is_caught():
    class Drifted:
        def find_one(self, project_uid, job_uid):  # positional-or-keyword, where the tools have positional-only
            pass

    assert shape(own_signature(Drifted.find_one)) != shape(stub_signature("jobs", "find_one"))
    with pytest.raises(KeyError, match="not in cryosparc-tools' API stubs"):
        stub_signature("jobs", "no_such_function")


# ------------------------------------------------------------------ the adapter's calls into the tools
def _chain(node) -> list[str]:
    """``self._cs.api.jobs.find`` -> ['self', '_cs', 'api', 'jobs', 'find'] (empty when not a plain chain)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    if isinstance(node, ast.Call):  # self._job(...).queue -> ['<job>', 'queue']
        inner = _chain(node.func)
        if inner[-2:] == ["self", "_job"] or inner == ["self", "_job"]:
            return ["<job>", *parts[::-1]]
    return []


def client_calls() -> list[tuple[str, str, int, list[str]]]:
    """(target, function, positional count, keyword names) of every call adapter.py makes into the tools.

    Targets: ``CryoSPARC`` (``self._cs.f``), ``api.<ns>`` (``self._cs.api.<ns>.f``) and
    ``JobController`` (methods of a job from ``self._job``, also when handed to ``self._call``).
    """
    tree = ast.parse(Path(adapter_module.__file__).read_text())
    found = []
    job_names = {"job"}  # local names bound to a JobController
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, args, keywords = node.func, node.args, node.keywords
        chain = _chain(func)
        if chain == ["self", "_call"] and len(args) >= 2 and isinstance(args[1], ast.Attribute):
            func, args = args[1], args[2:]
            keywords = [k for k in keywords if k.arg != "missing"]
            chain = _chain(func)
        if any(isinstance(a, ast.Starred) for a in args) or any(k.arg is None for k in keywords):
            continue
        kw = [k.arg for k in keywords]
        if chain[:3] == ["self", "_cs", "api"] and len(chain) == 5:
            found.append((f"api.{chain[3]}", chain[4], len(args), kw))
        elif chain[:2] == ["self", "_cs"] and len(chain) == 3:
            found.append(("CryoSPARC", chain[2], len(args), kw))
        elif len(chain) == 2 and (chain[0] == "<job>" or chain[0] in job_names) and hasattr(JobController, chain[1]):
            found.append(("JobController", chain[1], len(args), kw))
    return found


def test_every_call_of_the_adapter_binds_to_the_tools_signatures():
    calls = client_calls()
    targets = {(t, f) for t, f, _, _ in calls}
    # The scan sees the calls the adapter is known to make (so it cannot pass by seeing none).
    assert {("CryoSPARC", "find_job"), ("CryoSPARC", "create_job"), ("CryoSPARC", "save_external_result"),
            ("CryoSPARC", "download_file"), ("api.tags", "find"), ("api.jobs", "add_tag"),
            ("api.config", "get_version"), ("JobController", "queue"), ("JobController", "wait_for_status"),
            ("JobController", "load_output"), ("JobController", "interact"), ("JobController", "set_title")} <= targets
    for target, name, n_args, kw in calls:
        if target.startswith("api."):
            sig = stub_signature(target[4:], name)
        else:
            sig = own_signature(getattr(CryoSPARC if target == "CryoSPARC" else JobController, name))
        try:
            sig.bind(*range(n_args), **dict.fromkeys(kw))
        except TypeError as exc:
            pytest.fail(f"adapter calls {target}.{name} with {n_args} positional and {kw} keyword arguments: {exc}")


def test_connect_passes_only_what_the_client_takes(monkeypatch):
    seen = {}

    def factory(**kwargs):
        inspect.signature(CryoSPARC).bind(**kwargs)  # TypeError on a name or kind CryoSPARC does not take
        seen.update(kwargs)
        return type("Client", (), {"api": type("Api", (), {"config": type("Config", (), {
            "get_version": staticmethod(lambda: "v" + adapter_module.tools_version())})})})()

    settings = ConnectionSettings("https://cs.example.org", "me@example.org", Secret("pw"), "file f", 60)
    CryosparcAdapter.connect(settings, client_factory=factory)
    params = inspect.signature(CryoSPARC).parameters
    # Everything but the URL by keyword, and host/port given as None so the environment cannot override them.
    assert set(seen) == {"base_url", "host", "base_port", "email", "password", "timeout"}
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in seen if k != "base_url")
    assert seen["host"] is None and seen["base_port"] is None


# ------------------------------------------------------------------ job parameters and names
def tool_model_fields() -> dict[str, list[tuple[str, object]]]:
    """Field name -> [(model, annotation)] over every pydantic model cryosparc-tools ships."""
    import cryosparc.models as models

    fields: dict[str, list] = {}
    for info in pkgutil.iter_modules(models.__path__):
        mod = importlib.import_module(f"cryosparc.models.{info.name}")
        for cls in vars(mod).values():
            if inspect.isclass(cls) and issubclass(cls, pydantic.BaseModel) and cls.__module__ == mod.__name__:
                for name, field in cls.model_fields.items():
                    fields.setdefault(name, []).append((cls.__name__, field.annotation))
    return fields


def engine_jobs(inputs: set | None = None) -> dict[str, dict]:
    """Job type -> {parameter: value} over everything the engine sets: both 2D job types with the
    paper's presets and every common option, ab initio, re-extraction, and a whole plan (whose
    input names are added to ``inputs``)."""
    common = {"classes": 50, "particle_diameter": 150.0, "highres_limit": 6.0, "center_classes": True, "seed": 3}
    jobs: dict[str, dict] = {}
    inputs = set() if inputs is None else inputs
    for box in (128, 256):
        job_type, params = P.class2d_params(box, common=common)
        jobs.setdefault(job_type, {}).update(params)
    jobs["homo_abinit"] = P.abinit_params(7)
    jobs["extract_micrographs_multi"] = P.extract_params(256)
    for method in ("select_2D", "external"):
        settings = load_settings({"project": "P3", "workspace": "W2", "micrographs": ["J3.micrographs"],
                                  "select_method": method}, env={})
        for box in (128, 256):
            for spec in build_plan(settings, box, source="J10.particles", cutoffs=[3.5], seed=7):
                jobs.setdefault(spec.type, {}).update(spec.params)
                inputs.update(spec.connections)
    return jobs


def documented_unverified() -> set[str]:
    """The names docs/cryosparc.md lists as not verifiable without a server."""
    text = (ROOT / "docs" / "cryosparc.md").read_text()
    m = re.search(r"<!-- unverified: begin -->(.*?)<!-- unverified: end -->", text, re.S)
    assert m, "docs/cryosparc.md has no list of what stays unverified"
    return set(re.findall(r"`([A-Za-z0-9_]+)`", m[1]))


def test_parameters_the_tools_model_are_named_and_typed_as_there():
    fields = tool_model_fields()
    checked = {}
    for job_type, params in engine_jobs().items():
        for name, value in params.items():
            for model, annotation in fields.get(name, []):
                pydantic.TypeAdapter(annotation).validate_python(value)  # ValidationError on a wrong type
                checked[name] = model
    # The parameters cryosparc-tools types (Live's streaming 2D, ab initio and extraction models).
    assert checked == {"class2D_K": "LiveClass2DParams", "class2D_max_res": "LiveClass2DParams",
                       "class2D_window_inner_A": "LiveClass2DParams", "abinit_K": "LiveAbinitParams",
                       "box_size_pix": "LivePreprocessingParams"}
    # Live types the maximum resolution as a whole number of Å: a fractional limit would not validate.
    with pytest.raises(pydantic.ValidationError):
        pydantic.TypeAdapter(dict(fields["class2D_max_res"])["LiveClass2DParams"]).validate_python(4.5)


def test_external_output_types_and_statuses_are_the_tools_own():
    from cryosparc.models.job import JobStatus
    from cryosparc.spec import Datatype

    # The types of the outputs the engine saves in External jobs (scores: templates; selection: particles).
    source = "\n".join(Path(p).read_text() for p in Path(adapter_module.__file__).parent.glob("*.py"))
    saved = set(re.findall(r'save_external\(\s*spec,\s*[^,]+,\s*"(\w+)"', source))
    assert saved == {"particle", "template"}
    assert saved <= set(typing.get_args(Datatype))
    assert set(DONE) | {"waiting", "building"} <= set(typing.get_args(JobStatus))


def test_what_stays_unverified_is_listed_in_the_docs():
    import cryosparc

    from cryosift.engines.cryosparc import graph

    fields = tool_model_fields()
    inputs: set = set()
    jobs = engine_jobs(inputs)
    assert inputs == {"particles", "templates", "micrographs", "passthrough"}
    params = {name for p in jobs.values() for name in p}
    outputs = {v for k, v in vars(graph).items() if k.isupper() and isinstance(v, str)}
    endpoints = {"get_class_info", "set_class_selected", "finish"}
    # A job type counts as the tools' own when their source names it in quotes (examples, docstrings).
    package = Path(cryosparc.__file__).parent
    tools_text = "\n".join(p.read_text() for p in package.rglob("*.py*") if p.suffix in (".py", ".pyi"))
    named = {t for t in jobs if re.search(rf"[\"']{re.escape(t)}[\"']", tools_text)}
    assert named == {"class_2D_new", "extract_micrographs_multi", "homo_abinit", "homo_reconstruct", "snowflake"}
    unverified = (params - set(fields)) | (set(jobs) - named) | outputs | inputs | endpoints
    assert unverified == documented_unverified()
