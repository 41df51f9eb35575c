"""cryosparc-tools' own API stubs (``cryosparc/api.pyi``) for the tests, and a tiny server built from them.

cryosparc-tools makes its ``api.<namespace>.<function>`` calls at run time from the OpenAPI
schema a live server publishes; the package ships the same functions as typed stubs in
``api.pyi``. :func:`stub_signature` reads those stubs (names, positional/keyword kinds,
defaults); :class:`VanishingServer` publishes an OpenAPI schema generated from them on a
localhost port, answers the few requests a login and a first look at a job need, and then
closes its port, as a server that goes away in the middle of a run.
"""

from __future__ import annotations

import functools
import http.server
import inspect
import json
import threading
import urllib.parse
from pathlib import Path

import cryosparc
from cryosparc.constants import API_SUFFIX


@functools.lru_cache(maxsize=1)
def stub_module() -> dict:
    """The namespace of ``cryosparc/api.pyi``, executed with annotations left unevaluated."""
    path = Path(cryosparc.__file__).parent / "api.pyi"
    ns = {"__name__": "cryosparc._api_stub", "__package__": "cryosparc"}
    exec(compile("from __future__ import annotations\n" + path.read_text(), str(path), "exec"), ns)
    return ns


def namespaces() -> dict[str, type]:
    """``api`` namespace name -> stub class, e.g. ``jobs`` -> ``JobsAPI`` ('' is the top level)."""
    ns = stub_module()
    client = ns["APIClient"]
    return {"": client, **{name: ns[str(t)] for name, t in client.__annotations__.items()}}


def stub_signature(namespace: str, function: str) -> inspect.Signature:
    """The stub's signature of ``api.<namespace>.<function>`` without ``self`` (KeyError if none)."""
    cls = namespaces()[namespace]
    fn = cls.__dict__.get(function)
    if fn is None:
        raise KeyError(f"api.{namespace + '.' if namespace else ''}{function} is not in cryosparc-tools' API stubs")
    sig = inspect.signature(fn)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def shape(sig: inspect.Signature) -> list[tuple]:
    """What a caller relies on: each parameter's name, kind and default (annotations left out)."""
    return [(p.name, p.kind.name, p.default) for p in sig.parameters.values()]


def openapi_schema(responses: dict[str, dict] | None = None) -> dict:
    """An OpenAPI document with every function of the stubs, as cryosparc-tools' client reads one.

    Positional-only parameters become path parameters, keyword-only ones query parameters and
    a positional-or-keyword one the JSON body, so every call the stubs allow builds a request.
    ``responses`` maps a function (``jobs.find_one``) to the JSON schema of its answer (default:
    any JSON).
    """
    paths = {}
    for ns_name, cls in namespaces().items():
        for name, fn in vars(cls).items():
            if name.startswith("_") or not callable(fn):
                continue
            summary = f"{ns_name}.{name}" if ns_name else name
            params = list(inspect.signature(fn).parameters.values())[1:]
            path = "/" + summary.replace(".", "/") + "".join(
                f"/{{{p.name}}}" for p in params if p.kind is p.POSITIONAL_ONLY)
            op = {"summary": summary, "parameters": [], "responses": {"200": {"content": {"application/json": {
                "schema": (responses or {}).get(summary, {})}}}}}
            for p in params:
                if p.kind is p.POSITIONAL_ONLY:
                    op["parameters"].append({"name": p.name, "in": "path", "required": True})
                elif p.kind is p.KEYWORD_ONLY:
                    op["parameters"].append({"name": p.name, "in": "query", "required": p.default is p.empty})
                elif p.kind is p.POSITIONAL_OR_KEYWORD and "requestBody" not in op:
                    op["requestBody"] = {"content": {"application/json": {"schema": {"title": p.name}}}}
            paths[path] = {"post" if "requestBody" in op else "get": op}
    return {"openapi": "3.1.0", "info": {"title": "cryosift test server"}, "paths": paths, "components": {}}


class VanishingServer:
    """A localhost CryoSPARC stand-in that answers ``answers`` and closes its port after ``last``.

    Parameters
    ----------
    answers : dict
        Function (``config.get_version``) -> JSON answer.
    last : str
        The function after whose answer the server goes away (its listening port closed).
    times : int
        ... after its ``times``-th answer.
    responses : dict, optional
        Function -> JSON schema of its answer (a ``$ref`` makes the client build its model).

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:<port>``.
    requests : list of str
        Functions asked for, in order.
    """

    def __init__(self, answers: dict, last: str, times: int = 1, responses: dict | None = None):
        self.answers, self.last, self.times, self.requests = answers, last, times, []
        self.schema = openapi_schema(responses)
        self.routes = {}
        for path, ops in self.schema["paths"].items():
            for op in ops.values():
                self.routes[path.split("/{")[0]] = op["summary"]
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self):
                path = urllib.parse.urlparse(self.path).path.removeprefix(API_SUFFIX)
                if path == "/openapi.json":
                    body, name = outer.schema, "openapi.json"
                else:
                    name = next((s for p, s in sorted(outer.routes.items(), key=lambda kv: -len(kv[0]))
                                 if path == p or path.startswith(p + "/")), path)
                    body = outer.answers.get(name)
                outer.requests.append(name)
                if name == outer.last and outer.requests.count(name) == outer.times:
                    outer.server.socket.close()  # gone: the next request finds the port closed
                    outer.gone.set()
                data = json.dumps(body).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 0.2  # the serving loop looks at ``gone`` this often
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.gone = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        try:
            while not self.gone.is_set():
                self.server.handle_request()
        except (OSError, ValueError):  # the port was closed under the waiting loop: the server is gone
            pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if not self.gone.is_set():
            self.gone.set()
            self.server.socket.close()
        self.thread.join(timeout=5)
