"""Make, queue and finish jobs idempotently: a rerun finds the jobs it made by their titles.

Each step's job has a title unique within the run (``[cryosift <run>] <step>``) and the
run's tag. Before making a job the runner looks for one with that title in the workspace:
a completed one is reused, a building, queued or running one is driven on, and a failed or
killed one stops the run with the job's last log lines (clear or delete it in CryoSPARC,
then run again). A job found under the title but made from other inputs, or of another
type, is an error rather than a silent reuse.
"""

from __future__ import annotations

import logging

from cryosift.engines.cryosparc.adapter import DONE, ENGINE, JobRef
from cryosift.engines.cryosparc.graph import JobSpec
from cryosift.engines.cryosparc.settings import CryosparcSettings
from cryosift.errors import EngineError

log = logging.getLogger(__name__)


class JobRunner:
    """Drives the jobs of one run through an adapter.

    Parameters
    ----------
    adapter : CryosparcAdapter
        The server (or a fake with the same methods).
    settings : CryosparcSettings
        Project, workspace, run name, lane and wait timeout.
    """

    def __init__(self, adapter, settings: CryosparcSettings):
        self.adapter = adapter
        self.s = settings

    # ----------------------------------------------------------------- finding and making
    def find(self, spec: JobSpec) -> JobRef | None:
        """The job made earlier for ``spec`` (by title), checked against the spec; None if there is none."""
        found = self.adapter.find_jobs(self.s.project, self.s.workspace, title=spec.title)
        if not found:
            return None
        job = max(found, key=lambda j: j.number)
        if len(found) > 1:
            log.warning("%d jobs are titled %r (%s); using the newest, %s", len(found), spec.title,
                        ", ".join(j.uid for j in found), job.uid)
        if job.type != spec.type:
            raise EngineError(ENGINE, f"reusing {job.uid} for {spec.key}", None,
                              f"job {job.uid} titled {spec.title!r} is a {job.type} job, not {spec.type}; "
                              "rename or delete it, or choose another run name")
        if spec.kind != "external":
            for name, wanted in spec.connection_tuples().items():
                have = [tuple(c) for c in job.connections.get(name, [])]
                if sorted(have) != sorted(wanted):
                    raise EngineError(ENGINE, f"reusing {job.uid} for {spec.key}", None,
                                      f"job {job.uid} titled {spec.title!r} takes {name} from "
                                      f"{', '.join(f'{j}.{o}' for j, o in have) or 'nothing'}, but this step needs "
                                      f"{', '.join(f'{j}.{o}' for j, o in wanted)}; delete the job in CryoSPARC "
                                      "or choose another run name")
        return job

    def ensure(self, spec: JobSpec) -> tuple[JobRef, bool]:
        """The job for ``spec``: found again, or made now. Returns (job, made_now)."""
        job = self.find(spec)
        if job is not None:
            log.info("%s: reusing %s %s (%s)", spec.key, job.uid, job.type, job.status)
            return job, False
        job = self.adapter.create_job(self.s.project, self.s.workspace, spec.type, spec.params,
                                      spec.connection_tuples(), spec.title, tags=[self.s.tag])
        log.info("%s: made %s %s", spec.key, job.uid, spec.type)
        return job, True

    # ----------------------------------------------------------------- running
    def _failed(self, job: JobRef, spec: JobSpec, status: str) -> EngineError:
        tail = self.adapter.log_tail(self.s.project, job.uid)
        return EngineError(ENGINE, f"{spec.type} job {self.s.project} {job.uid} ({spec.key})", None,
                           (tail + "\n" if tail else "") + f"status {status}: clear or delete the job in CryoSPARC, "
                           "then run again")

    def _drive(self, job: JobRef, spec: JobSpec, until=DONE) -> str:
        status = job.status
        if status in ("failed", "killed"):
            raise self._failed(job, spec, status)
        if status == "building":
            self.adapter.queue(self.s.project, job.uid, self.s.lane)
            log.info("%s: queued %s%s", spec.key, job.uid, f" on lane {self.s.lane}" if self.s.lane else "")
        if status not in until:
            status = self.adapter.wait(self.s.project, job.uid, until, self.s.wait_timeout)
        if status not in until:
            raise EngineError(ENGINE, f"waiting for {self.s.project} {job.uid} ({spec.key})", None,
                              f"still {status} after {self.s.wait_timeout} s (cryosparc.wait_timeout)")
        return status

    def run(self, spec: JobSpec) -> JobRef:
        """Find or make the job, queue it and wait until it has completed."""
        job, _ = self.ensure(spec)
        if job.status != "completed":
            status = self._drive(job, spec)
            if status != "completed":
                raise self._failed(job, spec, status)
        return self.adapter.job(self.s.project, job.uid)

    def run_select(self, spec: JobSpec, chosen) -> JobRef:
        """Run a Select 2D job keeping the 0-based classes ``chosen``.

        The job is queued, and when it waits for input each class is set selected or not
        (only where its current state differs), then finished. A Select 2D job found
        completed is returned as it is; the caller checks its output.
        """
        chosen = {int(c) for c in chosen}
        job, _ = self.ensure(spec)
        if job.status == "completed":
            return job
        status = self._drive(job, spec, until=("waiting", *DONE))
        if status == "waiting":
            info = self.adapter.class_info(self.s.project, job.uid)
            known = {int(c["class_idx"]) for c in info}
            if chosen - known:
                raise EngineError(ENGINE, f"selecting classes in {job.uid} ({spec.key})", None,
                                  f"classes {sorted(chosen - known)} (0-based) are not in the job's "
                                  f"{len(known)} classes")
            for c in info:
                want = int(c["class_idx"]) in chosen
                if c.get("selected") is None or bool(c.get("selected")) != want:
                    self.adapter.set_class_selected(self.s.project, job.uid, int(c["class_idx"]), want)
            self.adapter.finish(self.s.project, job.uid)
            n = sum(int(c.get("num_particles_total", 0)) for c in info if int(c["class_idx"]) in chosen)
            log.info("%s: %s keeps %d of %d classes (%d particles)", spec.key, job.uid, len(chosen), len(info), n)
            status = self.adapter.wait(self.s.project, job.uid, DONE, self.s.wait_timeout)
        if status != "completed":
            raise self._failed(job, spec, status)
        return self.adapter.job(self.s.project, job.uid)

    def save_external(self, spec: JobSpec, dataset, type: str, name: str, slots, passthrough,
                      description: str = "") -> JobRef:
        """Find the External job of ``spec`` or save ``dataset`` as its output ``name``."""
        job = self.find(spec)
        if job is not None:
            if job.status != "completed":
                raise self._failed(job, spec, job.status)
            log.info("%s: reusing External job %s", spec.key, job.uid)
            return job
        job = self.adapter.save_external_output(self.s.project, self.s.workspace, dataset, type, name, slots,
                                                passthrough, spec.title, description, tags=[self.s.tag])
        log.info("%s: saved %d rows as %s.%s", spec.key, len(dataset), job.uid, name)
        return job
