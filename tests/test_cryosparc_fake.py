"""A recording fake of CryosparcAdapter: a tiny simulated CryoSPARC project for engine tests.

It answers the adapter's methods with real cryosparc-tools Datasets and writes the files a
server would (class-average stacks as plain .mrc volumes, maps), into a project folder under
the test's tmp_path. Jobs "run" when queued: 2D classification assigns particle ``uid % K``
to a class, Select 2D waits for class choices, extraction/ab initio/reconstruction add the
fields cryoSPARC adds. Every call is recorded in ``calls``. The tests at the bottom keep the
fake's methods in step with the real adapter's.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import mrcfile
import numpy as np
from cryosparc.dataset import Dataset

from cryosift.engines.cryosparc.adapter import DONE, CryosparcAdapter, JobRef
from cryosift.errors import EngineError, InputError

RES_RANGE = (6.0, 20.0)
ITERATION = 20


def make_particles(n=120, box=64, pixel_size=2.0, seed=0, path="J2/extract/particles.mrcs") -> Dataset:
    """Particles as an extraction job outputs them (blob, ctf, location)."""
    rng = np.random.default_rng(seed)
    ds = Dataset.allocate(n, [
        ("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)), ("blob/psize_A", "f4"), ("blob/sign", "f4"),
        ("ctf/type", "O"), ("ctf/exp_group_id", "u4"), ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"),
        ("ctf/amp_contrast", "f4"), ("ctf/df1_A", "f4"), ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"),
        ("ctf/phase_shift_rad", "f4"), ("location/micrograph_path", "O"), ("location/micrograph_shape", "u4", (2,)),
        ("location/center_x_frac", "f4"), ("location/center_y_frac", "f4")])
    ds["uid"] = rng.choice(np.arange(10_000, 10_000 + 50 * n), size=n, replace=False).astype(np.uint64)
    ds["blob/path"] = np.array([path] * n, dtype=object)
    ds["blob/idx"] = np.arange(n)
    ds["blob/shape"] = np.tile([box, box], (n, 1))
    ds["blob/psize_A"] = pixel_size
    ds["blob/sign"] = -1.0
    ds["ctf/type"] = np.array(["spline"] * n, dtype=object)
    ds["ctf/accel_kv"], ds["ctf/cs_mm"], ds["ctf/amp_contrast"] = 300.0, 2.7, 0.07
    ds["ctf/df1_A"] = rng.uniform(1.2e4, 2.5e4, n)
    ds["ctf/df2_A"] = ds["ctf/df1_A"] - rng.uniform(0, 300, n)
    ds["ctf/df_angle_rad"] = rng.uniform(-np.pi, np.pi, n)
    ds["location/micrograph_path"] = np.array([f"J1/motioncorrected/mic{i % 4}.mrc" for i in range(n)], dtype=object)
    ds["location/micrograph_shape"] = np.tile([4096, 4096], (n, 1))
    ds["location/center_x_frac"] = rng.uniform(0.05, 0.95, n)
    ds["location/center_y_frac"] = rng.uniform(0.05, 0.95, n)
    return ds


def class_images(k: int, box: int) -> np.ndarray:
    """Class i is a disc of value i + 1 (so an exported image tells which class it is)."""
    y, x = np.mgrid[:box, :box] - box / 2
    r = np.hypot(x, y)
    return np.stack([np.where(r < box * (0.15 + 0.02 * (i % 5)), i + 1.0, 0.0) for i in range(k)]).astype(np.float32)


class FakeAdapter:
    """Simulated CryoSPARC server with the adapter's methods (see the module docstring).

    Parameters
    ----------
    root : Path
        The project folder (files named project-relative live below it).
    project, workspace : str
        The only project and workspace that exist.
    version : str
        What ``server_version`` reports.
    default_k : int
        Classes of a 2D job without ``class2D_K``.
    fail_types : set of str
        Job types that fail when queued.
    """

    def __init__(self, root: Path, project="P3", workspace="W2", version="v5.0.1", default_k=6, fail_types=()):
        self.root, self.project, self.workspace, self.version = Path(root), project, workspace, version
        self.default_k, self.fail_types = default_k, set(fail_types)
        self.jobs: dict[str, JobRef] = {}
        self.outputs: dict[tuple[str, str], Dataset] = {}
        self.selected: dict[str, dict[int, bool]] = {}
        self.calls: list[tuple] = []
        self.n = 0

    # ----------------------------------------------------------------- helpers for tests
    def add_job(self, type, outputs=None, params=None, title="", status="completed", connections=None) -> str:
        """Put a job (with outputs) on the server, as if the user had made it."""
        self.n += 1
        uid = f"J{self.n}"
        self.jobs[uid] = JobRef(self.project, uid, type, title, status, (), dict(connections or {}), dict(params or {}))
        for name, ds in (outputs or {}).items():
            self.outputs[(uid, name)] = ds
        return uid

    def made(self, type=None) -> list[tuple]:
        """The create_job calls (optionally of one job type)."""
        return [c for c in self.calls if c[0] == "create_job" and (type is None or c[1]["type"] == type)]

    def _check(self, project, workspace=None):
        if project != self.project:
            raise InputError(None, f"project {project} not found on the CryoSPARC server")
        if workspace is not None and workspace != self.workspace:
            raise InputError(None, f"workspace {project} {workspace} not found on the CryoSPARC server")

    def _input(self, job: JobRef, name: str) -> Dataset:
        parts = [self.load_output(self.project, j, o) for j, o in job.connections.get(name, [])]
        if not parts:
            raise EngineError("cryosparc", f"running {job.uid}", None, f"input {name} is not connected")
        return parts[0] if len(parts) == 1 else Dataset.append(*parts)

    def _write_mrc(self, rel: str, data: np.ndarray, pixel_size: float) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with mrcfile.new(path, overwrite=True) as mrc:  # cryoSPARC writes stacks as plain volumes
            mrc.set_data(np.asarray(data, dtype=np.float32))
            mrc.voxel_size = pixel_size

    # ----------------------------------------------------------------- the jobs' work
    def _run(self, job: JobRef) -> str:
        if job.type in self.fail_types:
            return "failed"
        run = getattr(self, f"_run_{job.type}", None)
        if run is not None:
            return run(job) or "completed"
        return "completed"  # e.g. validation jobs with no outputs the engine reads

    def _run_class_2D(self, job):
        parts = self._input(job, "particles")
        k = int(job.params.get("class2D_K", self.default_k))
        n, box = len(parts), int(parts["blob/shape"][0][-1])
        psize = float(parts["blob/psize_A"][0])
        cls = (np.asarray(parts["uid"]) % k).astype(np.uint32)
        out = parts.copy().add_fields([("alignments2D/class", "u4"), ("alignments2D/pose", "f4"),
                                       ("alignments2D/shift", "f4", (2,)), ("alignments2D/psize_A", "f4"),
                                       ("alignments2D/class_posterior", "f4")])
        rng = np.random.default_rng(len(parts))
        out["alignments2D/class"] = cls
        out["alignments2D/pose"] = rng.uniform(0, 2 * np.pi, n)
        out["alignments2D/shift"] = rng.normal(scale=1.5, size=(n, 2))
        out["alignments2D/psize_A"] = psize
        out["alignments2D/class_posterior"] = rng.uniform(0.5, 1.0, n)
        rel = f"{job.uid}/{job.uid}_{ITERATION:03d}_class_averages.mrc"
        self._write_mrc(rel, class_images(k, box), psize)
        avg = Dataset.allocate(k, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)),
                                   ("blob/psize_A", "f4"), ("blob/res_A", "f4")])
        avg["uid"] = np.arange(1, k + 1, dtype=np.uint64) + 1000 * self.n
        avg["blob/path"] = np.array([rel] * k, dtype=object)
        avg["blob/idx"] = np.arange(k)
        avg["blob/shape"] = np.tile([box, box], (k, 1))
        avg["blob/psize_A"] = psize
        avg["blob/res_A"] = np.linspace(*RES_RANGE, k)
        self.outputs[(job.uid, "particles")] = out
        self.outputs[(job.uid, "class_averages")] = avg

    _run_class_2D_new = _run_class_2D

    def _run_select_2D(self, job):
        self.selected[job.uid] = {}
        return "waiting"

    def _run_extract_micrographs_multi(self, job):
        parts = self._input(job, "particles")
        self._input(job, "micrographs")
        box = int(job.params["box_size_pix"])
        old = int(parts["blob/shape"][0][-1])
        out = parts.filter_prefixes(["blob", "ctf", "location"], copy=True)
        out["blob/path"] = np.array([f"{job.uid}/extract/particles_{box}.mrcs"] * len(out), dtype=object)
        out["blob/idx"] = np.arange(len(out))
        out["blob/shape"] = np.tile([box, box], (len(out), 1))
        out["blob/psize_A"] = np.asarray(parts["blob/psize_A"]) * old / box
        self.outputs[(job.uid, "particles")] = out

    def _run_homo_abinit(self, job):
        parts = self._input(job, "particles")
        n = len(parts)
        rng = np.random.default_rng(int(job.params.get("abinit_seed_init", 0)))
        out = parts.copy().add_fields([("alignments3D/pose", "f4", (3,)), ("alignments3D/shift", "f4", (2,)),
                                       ("alignments3D/psize_A", "f4"), ("alignments3D/split", "u4")])
        out["alignments3D/pose"] = rng.normal(size=(n, 3))
        out["alignments3D/shift"] = rng.normal(size=(n, 2))
        out["alignments3D/psize_A"] = np.asarray(parts["blob/psize_A"])
        out["alignments3D/split"] = np.arange(n) % 2
        self.outputs[(job.uid, "particles_class_0")] = out
        self.outputs[(job.uid, "volume_class_0")] = self._volume(job, ["map"], float(parts["blob/psize_A"][0]))

    def _run_homo_reconstruct(self, job):
        parts = self._input(job, "particles")
        self.outputs[(job.uid, "particles")] = parts.copy()
        self.outputs[(job.uid, "volume")] = self._volume(job, ["map", "map_half_A", "map_half_B"],
                                                         float(parts["blob/psize_A"][0]))

    def _volume(self, job, slots, psize) -> Dataset:
        ds = Dataset.allocate(1, [(f"{s}/{f}", t) for s in slots for f, t in (("path", "O"), ("psize_A", "f4"))])
        for i, slot in enumerate(slots):
            rel = f"{job.uid}/{job.uid}_{slot}.mrc"
            self._write_mrc(rel, np.full((12, 12, 12), i + 1.0, np.float32), psize)
            ds[f"{slot}/path"] = np.array([rel], dtype=object)
            ds[f"{slot}/psize_A"] = psize
        return ds

    # ----------------------------------------------------------------- the adapter's methods
    def server_version(self) -> str:
        self.calls.append(("server_version",))
        return self.version

    def check_project(self, project, workspace):
        self._check(project, workspace)
        return {"project_title": "Fake project", "workspace_title": "Fake workspace"}

    def find_jobs(self, project, workspace, *, title=None, tag=None, type=None):
        self._check(project, workspace)
        self.calls.append(("find_jobs", {"title": title, "tag": tag, "type": type}))
        return [JobRef(**vars(j)) for j in self.jobs.values()
                if (title is None or j.title == title) and (tag is None or tag in j.tags)
                and (type is None or j.type == type)]

    def job(self, project, uid):
        self._check(project)
        if uid not in self.jobs:
            raise InputError(None, f"job {project} {uid} not found on the CryoSPARC server")
        return JobRef(**vars(self.jobs[uid]))

    def create_job(self, project, workspace, type, params, connections, title, tags=()):
        self._check(project, workspace)
        for refs in connections.values():
            for j, o in refs:
                if (j, o) not in self.outputs:
                    raise EngineError("cryosparc", f"creating a {type} job", None, f"no output {j}.{o}")
        self.calls.append(("create_job", {"type": type, "params": dict(params), "title": title, "tags": list(tags),
                                          "connections": {k: [tuple(c) for c in v] for k, v in connections.items()}}))
        uid = self.add_job(type, params=params, title=title, status="building",
                           connections={k: [tuple(c) for c in v] for k, v in connections.items()})
        self.jobs[uid].tags = tuple(tags)
        return self.job(project, uid)

    def queue(self, project, uid, lane=None):
        self.calls.append(("queue", uid, lane))
        job = self.jobs[uid]
        if job.status != "building":
            raise EngineError("cryosparc", f"queuing {project} {uid}", None, f"job is {job.status}")
        job.status = self._run(job)

    def wait(self, project, uid, statuses=DONE, timeout=None):
        self.calls.append(("wait", uid, tuple(statuses)))
        status = self.jobs[uid].status
        if status not in statuses:
            raise AssertionError(f"fake job {uid} is {status}, which never becomes {statuses}")
        return status

    def queue_and_wait(self, project, uid, lane=None, timeout=None):
        self.queue(project, uid, lane)
        return self.wait(project, uid, DONE, timeout)

    def set_description(self, project, uid, text):
        self.calls.append(("set_description", uid, text))

    def log_tail(self, project, uid, lines=20):
        return f"fake log of {uid}: job failed" if self.jobs[uid].status == "failed" else ""

    def load_output(self, project, uid, output, slots="all"):
        self._check(project)
        self.calls.append(("load_output", uid, output))
        if (uid, output) not in self.outputs:
            raise EngineError("cryosparc", f"loading {project} {uid}.{output}", None, "no such output")
        ds = self.outputs[(uid, output)].copy()
        return ds.filter_prefixes(slots) if isinstance(slots, (list, tuple)) else ds

    def download_file(self, project, path, target):
        self.calls.append(("download_file", path))
        shutil.copyfile(self.root / path, target)
        return Path(target)

    def class_info(self, project, uid):
        job = self.jobs[uid]
        assert job.type == "select_2D" and job.status == "waiting", job
        parts = self._input(job, "particles")
        avg = self._input(job, "templates")
        counts = np.bincount(np.asarray(parts["alignments2D/class"], dtype=np.int64), minlength=len(avg))
        return [{"class_idx": int(i), "num_particles_total": int(counts[i]), "res_A": float(avg["blob/res_A"][i]),
                 "selected": self.selected[uid].get(int(i), False)} for i in np.asarray(avg["blob/idx"])]

    def set_class_selected(self, project, uid, class_idx, selected):
        self.calls.append(("set_class_selected", uid, int(class_idx), bool(selected)))
        self.selected[uid][int(class_idx)] = bool(selected)

    def finish(self, project, uid):
        self.calls.append(("finish", uid))
        job = self.jobs[uid]
        parts, avg = self._input(job, "particles"), self._input(job, "templates")
        keep = {c for c, on in self.selected[uid].items() if on}
        mask = np.isin(np.asarray(parts["alignments2D/class"], dtype=np.int64), sorted(keep))
        tmask = np.isin(np.asarray(avg["blob/idx"], dtype=np.int64), sorted(keep))
        self.outputs[(uid, "particles_selected")] = parts.mask(mask)
        self.outputs[(uid, "particles_excluded")] = parts.mask(~mask)
        self.outputs[(uid, "templates_selected")] = avg.mask(tmask)
        self.outputs[(uid, "templates_excluded")] = avg.mask(~tmask)
        job.status = "completed"

    def save_external_output(self, project, workspace, dataset, type, name, slots, passthrough, title,
                             description="", tags=()):
        self._check(project, workspace)
        missing = [s for s in slots if s not in dataset.prefixes()]
        assert not missing, f"dataset lacks slots {missing}"
        self.calls.append(("save_external_output", {"type": type, "name": name, "slots": list(slots),
                                                    "passthrough": tuple(passthrough) if passthrough else None,
                                                    "title": title, "description": description, "n": len(dataset),
                                                    "uids": np.asarray(dataset["uid"]).tolist()}))
        out = dataset.copy()
        if passthrough:
            parent = self.outputs[tuple(passthrough)]
            rows = {int(u): i for i, u in enumerate(np.asarray(parent["uid"]))}
            unknown = [int(u) for u in np.asarray(dataset["uid"]) if int(u) not in rows]
            assert not unknown, f"rows {unknown[:3]} are not in {passthrough}"
            full = parent.take(np.array([rows[int(u)] for u in np.asarray(dataset["uid"])], dtype=np.int64))
            for f in dataset.fields(exclude_uid=True):
                full[f] = dataset[f]
            out = full
        uid = self.add_job("snowflake", outputs={name: out}, title=title)
        self.jobs[uid].tags = tuple(tags)
        return self.job(project, uid)


# --------------------------------------------------------------------------- the fake keeps the contract

def _public(cls) -> dict:
    return {n: inspect.signature(f) for n, f in inspect.getmembers(cls, inspect.isfunction)
            if not n.startswith("_") and n != "connect"}


def test_fake_has_every_adapter_method_with_the_same_parameters():
    real, fake = _public(CryosparcAdapter), _public(FakeAdapter)
    missing = sorted(set(real) - set(fake))
    assert not missing
    for name, sig in real.items():
        assert list(sig.parameters) == list(fake[name].parameters), name


def test_fake_classification_outputs_are_cryosparc_datasets(tmp_path):
    fake = FakeAdapter(tmp_path)
    src = fake.add_job("extract_micrographs_multi", {"particles": make_particles(40, box=32)}, {"box_size_pix": 32})
    job = fake.create_job("P3", "W2", "class_2D", {"class2D_K": 4}, {"particles": [(src, "particles")]}, "t")
    assert fake.queue_and_wait("P3", job.uid) == "completed"
    parts = fake.load_output("P3", job.uid, "particles")
    avg = fake.load_output("P3", job.uid, "class_averages", slots=["blob"])
    assert isinstance(parts, Dataset) and len(parts) == 40 and len(avg) == 4
    assert np.array_equal(np.asarray(parts["alignments2D/class"]), np.asarray(parts["uid"]) % 4)
    with mrcfile.open(tmp_path / str(avg["blob/path"][0])) as mrc:
        assert mrc.data.shape == (4, 32, 32) and not mrc.is_image_stack()
