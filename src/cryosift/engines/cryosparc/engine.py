"""The cryoSPARC engine: the engine protocol, and the selection steps only cryoSPARC needs.

Particles stay on the server; the engine connects job outputs (``J12.particles``) and
exports results to local folders that record where they came from (``cryosparc.json``),
so a folder or file it wrote can be handed to the next step in place of a job output.
Step names (part of every job title, hence of what a rerun finds) default to the last
two parts of the output folder, e.g. ``ds1/round2`` for ``results/classify/ds1/round2``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryosift.engines.base import (
    BUILTIN_TUNING_2D,
    AbinitResult,
    Class2DResult,
    EngineBase,
    ExtractionResult,
    ReconstructionResult,
    Resume,
    known_options,
)
import cryosift.engines.cryosparc.classify as C
import cryosift.engines.cryosparc.reconstruct as R
from cryosift.engines.cryosparc.adapter import ENGINE, CryosparcAdapter, JobRef, tools_version
from cryosift.engines.cryosparc.credentials import load_connection_settings
from cryosift.engines.cryosparc.exports import resolve_sources
from cryosift.engines.cryosparc.graph import JobSpec, build_plan
from cryosift.engines.cryosparc.params import COMMON_2D, IGNORED_2D
from cryosift.engines.cryosparc.runner import JobRunner
from cryosift.engines.cryosparc.settings import CryosparcSettings, load_settings
from cryosift.errors import EngineError, InputError
from cryosift.records import read_selection

log = logging.getLogger(__name__)


def step_name(job_dir: str | Path, step: str | None = None) -> str:
    """``step`` when given, else the last two parts of ``job_dir`` (``ds1/round2``)."""
    if step:
        return str(step).strip("/")
    parts = Path(job_dir).resolve().parts
    return "/".join(parts[-2:])


def _one_source(refs, particles):
    if len(refs) != 1:
        raise InputError(None, f"{particles}: expected one particle output, found {len(refs)}")
    return refs[0]


def extraction_result(job_dir, out: dict) -> ExtractionResult:
    """The engine protocol's record of :func:`~cryosift.engines.cryosparc.reconstruct.extract`'s export."""
    return ExtractionResult(ENGINE, Path(job_dir), out["star"], out["n"], extra={"cs": out["cs"], "job": out["job"]})


def abinit_result(job_dir, out: dict) -> AbinitResult:
    """The engine protocol's record of :func:`~cryosift.engines.cryosparc.reconstruct.abinit`'s export."""
    if out.get("map") is None or out.get("star") is None:
        raise EngineError(ENGINE, f"exporting ab initio job {out['job'].uid}", None, "the job exported no map or no particles")
    return AbinitResult(ENGINE, Path(job_dir), out["map"], out["star"], None, seed=out["seed"],
                        extra={"cs": out["cs"], "job": out["job"], "n_particles": out["n"]})


def reconstruction_result(job_dir, out: dict) -> ReconstructionResult:
    """The engine protocol's record of :func:`~cryosift.engines.cryosparc.reconstruct.reconstruct`'s export."""
    halves = (out["half1"], out["half2"]) if out.get("half1") and out.get("half2") else None
    return ReconstructionResult(ENGINE, Path(job_dir), out["full"], halves, extra={"job": out["job"]})


class CryosparcEngine(EngineBase):
    """CryoSPARC behind the engine protocol, driven through cryosparc-tools.

    Parameters
    ----------
    config : mapping, str or Path, optional
        The ``cryosparc`` settings block, or a YAML/JSON file holding it (default: the file
        named by ``CRYOSIFT_CRYOSPARC_CONFIG``); see :class:`CryosparcSettings`.
    adapter : CryosparcAdapter, optional
        A server session (default: log in on first use with the configured credentials).
    **overrides
        Settings that replace the configuration's (``project``, ``workspace``, ``run`` ...);
        ``device``, ``threads``, ``mpi``, ``prefix`` and ``gpu`` (for the local engines) are ignored.
    """

    name = "cryosparc"
    capabilities = frozenset({"classify2d", "extract", "abinit", "reconstruct"})
    #: The builtin engine's search settings and RELION's, which cryoSPARC chooses itself.
    class2d_ignored = frozenset(BUILTIN_TUNING_2D) | frozenset(IGNORED_2D)

    def __init__(self, config=None, adapter=None, device=None, threads=None, mpi=None, prefix=None, gpu=None,
                 **overrides):
        self.settings: CryosparcSettings = load_settings(config, **overrides)
        self._adapter = adapter

    def __repr__(self) -> str:
        s = self.settings
        return f"CryosparcEngine(project={s.project}, workspace={s.workspace}, run={s.run!r})"

    @property
    def adapter(self):
        """The server session (logs in on first use)."""
        if self._adapter is None:
            self._adapter = CryosparcAdapter.connect(load_connection_settings(self.settings.connection))
        return self._adapter

    @property
    def runner(self) -> JobRunner:
        return JobRunner(self.adapter, self.settings)

    # ----------------------------------------------------------------- checks and plans
    def check(self) -> dict:
        """Log in, compare versions and open the project and workspace; a summary dict."""
        adapter = self.adapter
        info = adapter.check_project(self.settings.project, self.settings.workspace)
        return {"server_version": adapter.server_version(), "tools_version": tools_version(),
                "project": self.settings.project, "workspace": self.settings.workspace, **info}

    def plan(self, box: int, source: str | None = None, rounds: int | None = None, cutoffs=(2.5, 3.5, 4.5),
             seed: int | None = None, dataset: str = "data") -> list[JobSpec]:
        """The job graph of a whole run, without a server (see :func:`build_plan`)."""
        return build_plan(self.settings, box, source=source, rounds=rounds, cutoffs=cutoffs, seed=seed,
                          dataset=dataset)

    # ----------------------------------------------------------------- 2D
    def classify2d(self, particles, job_dir, resume: Resume | str = Resume.AFRESH, step: str | None = None,
                   extraction_box: int | None = None, **options) -> Class2DResult:
        """2D classification of ``particles`` on the server, exported to ``job_dir``.

        Parameters
        ----------
        particles : str, Path, OutputRef or list
            Job outputs (``J12.particles``) or files/folders this engine exported; several are pooled.
        job_dir : str or Path
            Export folder: RELION Class2D layout, the cryoSPARC ``.cs``/``.mrc`` files, ``cryosparc.json``.
        resume : Resume
            Checked only: a rerun always finds its finished job by title (the server keeps the jobs).
        step : str, optional
            Step name (default: from ``job_dir``).
        extraction_box : int, optional
            Full extraction box in px, which chooses the job type (default: configured or read from the source).
        **options
            Common engine options: ``classes``, ``particle_diameter`` (Å; 0 = cryoSPARC's own),
            ``highres_limit`` (Å), ``center_classes``, ``seed``; RELION's ``iterations``,
            ``tau2_fudge``, ``psi_step``, ``offset_range``, ``offset_step`` and the builtin engine's
            search settings (``box`` ...) are accepted and ignored.
        """
        Resume(resume)
        options = known_options("cryoSPARC", options, COMMON_2D, self.class2d_ignored)
        if options.get("particle_diameter", 1) <= 0:
            options.pop("particle_diameter")
        sources = resolve_sources(particles, self.settings.project)
        return C.classify2d(self.runner, sources, job_dir, step_name(job_dir, step), options, extraction_box)

    def adopt(self, job_uid: str, job_dir) -> Class2DResult:
        """Export an existing 2D job (e.g. the starter job as round 1) to ``job_dir``; makes no job."""
        return C.adopt_classification(self.runner, job_uid, job_dir)

    def select(self, classification, classes, out, step: str | None = None, subset: str = "selected",
               method: str | None = None) -> dict:
        """Keep the particles of ``classes`` (1-based) of an exported classification; export ``out`` (.cs).

        The job's key is ``<step>/select_<subset>``; ``method`` is ``select_2D`` or ``external``
        (default: configured).
        """
        job_uid = C.classification_job(classification, self.settings.project)
        out = Path(out)
        key = f"{step_name(out.parent, step)}/select_{subset}"
        return C.select_classes(self.runner, job_uid, classes, out, key, method)

    def select_from_summary(self, classification, summary, out_dir, step: str | None = None,
                            method: str | None = None) -> dict:
        """Apply the decisions of ``cryosift select`` (its ``selection.json``) on the server.

        A loop round gives ``accepted.cs`` and ``kept.cs`` (kept + attractor classes); a final
        split gives ``score_le_<cutoff>.cs`` per cutoff. An empty subset makes no job: its file
        holds no particles and is recorded as empty, so pooling skips it. Returns subset
        name -> result of :meth:`select` (None for an empty subset).
        """
        groups = read_selection(summary).class_groups()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        step = step_name(out_dir, step)
        results = {}
        for name, classes in groups.items():
            if not classes:
                log.info("%s: no classes in %s; nothing to select", step, name)
                C.write_empty_selection(self.runner, C.classification_job(classification, self.settings.project),
                                        out_dir / f"{name}.cs")
                results[name] = None
                continue
            results[name] = self.select(classification, classes, out_dir / f"{name}.cs", step, name, method)
        return results

    def write_scores(self, classification, scores, step: str | None = None) -> JobRef:
        """Show ``scores`` (a ``scores.csv``/``.star`` or DataFrame) in CryoSPARC as an External job."""
        from cryosift.scoring.outputs import read_scores

        table = read_scores(scores) if isinstance(scores, (str, Path)) else scores
        job_uid = C.classification_job(classification, self.settings.project)
        where = Path(scores).parent if isinstance(scores, (str, Path)) else Path(classification)
        return C.write_scores(self.runner, job_uid, table, f"{step_name(where, step)}/scores")

    # ----------------------------------------------------------------- 3D
    def _source(self, particles):
        return _one_source(resolve_sources(particles, self.settings.project), particles)

    def extract(self, particles, job_dir, box: int | None = None, step: str | None = None,
                **_options) -> ExtractionResult:
        """Re-extract at the full box (``extract_micrographs_multi``); exports ``particles.cs`` and ``.star``."""
        key = f"{step_name(job_dir, step)}/extract"
        out = R.extract(self.runner, self._source(particles), job_dir, key, box)
        return extraction_result(job_dir, out)

    def abinit(self, particles, job_dir, seed: int | None = None, step: str | None = None,
               **options) -> AbinitResult:
        """Ab initio (``homo_abinit``) with the paper's settings and the run's seed; exported map and particles
        (no half maps: the reconstruction job makes them)."""
        key = f"{step_name(job_dir, step)}/abinit"
        return abinit_result(job_dir, R.abinit(self.runner, self._source(particles), job_dir, key, seed, options))

    def reconstruct(self, particles, job_dir, step: str | None = None, **_options) -> ReconstructionResult:
        """Reconstruction with half maps (``homo_reconstruct``)."""
        key = f"{step_name(job_dir, step)}/reconstruct"
        return reconstruction_result(job_dir, R.reconstruct(self.runner, self._source(particles), job_dir, key))

    def reconstruct_selection(self, particles, job_dir, box: int | None = None, seed: int | None = None,
                              step: str | None = None, **options) -> dict:
        """One cutoff's branch: re-extraction, ab initio, reconstruction and validation jobs."""
        return R.reconstruct_selection(self.runner, self._source(particles), job_dir, step_name(job_dir, step),
                                       box, seed, options)
