"""Apply selection decisions to particles: write the subsets and a JSON summary, atomically.

Particles come from a 2D classification (RELION ``run_itNNN_data.star`` or cryoSPARC
``*_particles.cs``) with a class per particle; scores from ``scores.csv``/``scores.star``.
Subsets are written as RELION STAR and/or cryoSPARC .cs. A .cs written from a .cs input is
a row subset of the original file (every field kept); other combinations go through
:func:`cryosift.io.write_particles`. STAR subsets carry each particle's class score in
``rlnParticleFigureOfMerit`` (raw) and ``rlnClassScore`` (0..1), so RELION's own tools can
select on it, e.g. ``relion_star_handler --select rlnParticleFigureOfMerit --maxval 3.5``.

All files of one step appear together or not at all; ``selection.json`` is renamed into
place last and marks a complete step.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io import read_cs, read_particles_star, write_cs, write_particles, write_particles_star
from cryosift.io.atomic import atomic_path
from cryosift.io.convert import particles_from_dataset, read_particles
from cryosift.io.models import ParticleSet
from cryosift.scoring.decode import class_score
from cryosift.scoring.domain import check_scores_domain, log_warnings, rejection_warning
from cryosift.scoring.outputs import CLASS_SCORE_LABEL, SCORE_LABEL, read_scores
from cryosift.selection.policy import STATUSES, SelectionPolicy, decide_round, final_split, rounds_for_box

log = logging.getLogger(__name__)

SUMMARY_NAME = "selection.json"


class ClassifiedParticles:
    """Particles of a 2D classification with their 1-based class numbers.

    Parameters
    ----------
    path : str or Path
        ``.star`` (with rlnClassNumber) or ``.cs`` (with alignments2D/class).
    reused_from : str, optional
        The classification this one repeats (a loop round after the loop stopped): its
        accepted and rejected particles were counted in the round it repeats.
    source : str or Path, optional
        What the user named for these particles (recorded in ``selection.json``; default ``path``),
        e.g. the workflow's classification record (see :mod:`cryosift.pipeline.manifest`).
    """

    def __init__(self, path: str | Path, reused_from: str | None = None, source: str | Path | None = None):
        self.path = Path(path)
        self.source = path if source is None else source
        #: The classification this one was reused from (a round after the loop stopped).
        self.reused_from = reused_from
        self.dataset = None
        if self.path.suffix == ".cs":
            self.dataset = read_cs(self.path)
            self.pset = particles_from_dataset(self.dataset, source=self.path, prefer="2d")
        elif self.path.suffix == ".star":
            self.pset = read_particles_star(self.path)
        else:
            raise InputError(self.path, "particles must be a .star or .cs file")
        if "rlnClassNumber" not in self.pset.particles:
            raise InputError(self.path, "no class per particle (rlnClassNumber / alignments2D/class): "
                                        "not a 2D classification's particles")
        self.classes = self.pset.particles["rlnClassNumber"].to_numpy(np.int64)

    @classmethod
    def unclassified(cls, path: str | Path, reused_from: str | None = None,
                     source: str | Path | None = None) -> "ClassifiedParticles":
        """Particles that reached no classification (every one was rejected before it): class 0 each."""
        self = cls.__new__(cls)
        self.path, self.source, self.reused_from = Path(path), path if source is None else source, reused_from
        self.dataset = None
        self.pset = read_particles(self.path)
        self.pset.particles["rlnClassNumber"] = np.zeros(len(self.pset), dtype=np.int64)
        self.classes = self.pset.particles["rlnClassNumber"].to_numpy(np.int64)
        return self

    def __len__(self) -> int:
        return len(self.classes)

    def scores(self, table: pd.DataFrame, scores_path=None) -> np.ndarray:
        """Score of each particle's class, float64 (n,); InputError if a class has no score."""
        lookup = dict(zip(table["class"].to_numpy(np.int64), table["score"].to_numpy(np.float64)))
        missing = sorted(set(np.unique(self.classes).tolist()) - set(lookup))
        if missing:
            raise InputError(scores_path, f"no score for class {missing[0]} (particles of {self.path.name} "
                                          f"are in classes without scores: {missing[:10]})")
        return np.array([lookup[c] for c in self.classes], dtype=np.float64)

    def write(self, path: Path, mask: np.ndarray, scores: np.ndarray | None = None) -> None:
        """Write the particles selected by ``mask`` to ``path`` (.star or .cs)."""
        rows = np.flatnonzero(mask)
        if path.suffix == ".cs" and self.dataset is not None:
            write_cs(path, self.dataset.take(rows))
            return
        subset = self.pset.subset(rows)
        if path.suffix == ".star" and scores is not None:
            subset.particles[SCORE_LABEL] = scores[rows]
            subset.particles[CLASS_SCORE_LABEL] = class_score(scores[rows])
        if path.suffix == ".star":
            write_particles_star(path, subset)
        else:
            write_particles(path, subset)


def domain_warnings(table: pd.DataFrame, scores_path, rejected: int | None = None, total: int | None = None,
                    reject_score: float = 4.5) -> dict:
    """Out-of-domain warnings of a step (:mod:`cryosift.scoring.domain`), logged as one line.

    Parameters
    ----------
    table : pd.DataFrame
        The scores as read (``distribution`` and ``empty_class`` are used when present).
    scores_path : str or Path
        Where they came from; the gallery is ``scores.png`` beside it.
    rejected, total : int, optional
        Particles this step rejects, of how many.
    reject_score : float
        The round's reject score.

    Returns
    -------
    dict
        ``{"warnings": [...], "warning": line}`` for ``selection.json``; empty when all is well.
    """
    dist = table["distribution"].to_numpy(np.float64) if "distribution" in table else None
    empty = None
    if "empty_class" in table:
        empty = table["empty_class"].astype(str).str.strip().str.lower().isin(["true", "1"]).to_numpy()
    found = check_scores_domain(table["score"], dist, empty, reject_score=reject_score)
    if rejected is not None and total is not None:  # the particles counted beat the class distribution
        found = [w for w in found if w.code != "most_rejected"]
        extra = rejection_warning(rejected, total, reject_score)
        if extra is not None:
            found.append(extra)
    if not found:
        return {}
    gallery = Path(scores_path).with_suffix(".png")
    line = log_warnings(found, gallery, log)
    return {"warnings": [w.to_dict() for w in found], "warning": line}


def _formats(particles: ClassifiedParticles, formats) -> list[str]:
    chosen = list(formats) if formats else [particles.path.suffix.lstrip(".")]
    bad = [f for f in chosen if f not in ("star", "cs")]
    if bad:
        raise InputError(None, f"unknown output format {bad[0]!r} (star or cs)")
    return list(dict.fromkeys(chosen))


def _write_step(out_dir: Path, particles: ClassifiedParticles, subsets: dict, scores: np.ndarray, formats,
                summary: dict, annotate: bool) -> dict:
    """Write every subset and the summary; all renamed into place only when all succeeded."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with contextlib.ExitStack() as stack:
        # Entered first, so renamed last: selection.json marks a complete step.
        summary_tmp = stack.enter_context(atomic_path(out_dir / SUMMARY_NAME))
        for name, mask in subsets.items():
            for fmt in formats:
                final = out_dir / f"{name}.{fmt}"
                tmp = stack.enter_context(atomic_path(final))
                particles.write(tmp, mask, scores if annotate else None)
                written.setdefault(name, []).append(final.name)
        summary["outputs"] = written
        summary_tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _classified(particles) -> ClassifiedParticles:
    return particles if isinstance(particles, ClassifiedParticles) else ClassifiedParticles(particles)


def apply_round(particles: ClassifiedParticles | str | Path, scores: str | Path, out_dir: str | Path, round: int,
                rounds: int | None = None, box: int | None = None, policy: SelectionPolicy = SelectionPolicy(),
                formats=None, annotate: bool = True) -> dict:
    """One round of the loop: write ``accepted``, ``kept`` (with attractors) and ``rejected`` particles.

    Parameters
    ----------
    particles : ClassifiedParticles, str or Path
        The round's 2D classification particles (.star or .cs).
    scores : str or Path
        Its ``scores.csv`` or ``scores.star``.
    out_dir : str or Path
        Folder for ``accepted.*``, ``kept.*``, ``rejected.*`` and ``selection.json``.
    round : int
        1-based round number.
    rounds, box : int, optional
        Planned rounds, or the extraction box in px to derive them (default: the particles' box).
    policy : SelectionPolicy
        Thresholds.
    formats : sequence of {"star", "cs"}, optional
        Output formats (default: the input's).
    annotate : bool
        Add the class score columns to STAR subsets.

    Returns
    -------
    dict
        The summary written to ``selection.json``.
    """
    parts = _classified(particles)
    table = read_scores(scores)
    if rounds is None:
        if box is None:
            box = parts.pset.box
            log.info("deriving the number of rounds from the particles' box (%d px); give the extraction box "
                     "if the particles were binned", box)
        rounds = rounds_for_box(int(box))
    decision = decide_round(table, round, rounds, policy, source=scores)
    per_particle = parts.scores(table, scores)
    status_of = dict(zip(decision.table["class"], decision.table["status"]))
    status = np.array([status_of[c] for c in parts.classes], dtype=object)
    if parts.reused_from is not None:
        # The loop stopped before this round: its classification is the previous round's, whose
        # accepted and rejected particles were counted there. Only the kept ones carry over.
        status[np.isin(status, ["accepted", "rejected"])] = "counted"
    subsets = {"accepted": status == "accepted", "kept": np.isin(status, ["kept", "attractor"]),
               "rejected": status == "rejected"}
    summary = {
        "step": "round", "round": round, "rounds": rounds, "stop": decision.stop,
        "next": "final" if decision.stop else "classify",
        "policy": policy.to_dict(),
        "inputs": {"particles": str(parts.source), "scores": str(scores)},
        "rules": decision.rules,
        "classes": {s: [int(c) for c in decision.classes(s)] for s in STATUSES},
        "particles": {**{s: int((status == s).sum()) for s in STATUSES}, "total": int((status != "counted").sum())},
        "subsets": {"accepted": ["accepted"], "kept": ["kept", "attractor"], "rejected": ["rejected"]},
    }
    if parts.reused_from is not None:
        summary.update(stop=True, next="final", carried_over_from=str(parts.reused_from))
        summary["classes"].update(accepted=[], rejected=[])
    else:  # a carried-over round was judged (and warned about) in the round it repeats
        summary.update(domain_warnings(table, scores, summary["particles"]["rejected"], summary["particles"]["total"],
                                       policy.reject_score))
    return _write_step(Path(out_dir), parts, subsets, per_particle, _formats(parts, formats), summary, annotate)


def cutoff_name(cutoff: float) -> str:
    """Output name of the subset kept at ``cutoff``: ``score_le_3.5``."""
    return f"score_le_{cutoff:g}"


def apply_final(particles: ClassifiedParticles | str | Path, scores: str | Path, out_dir: str | Path, cutoffs=(2.5, 3.5, 4.5),
                formats=None, annotate: bool = True) -> dict:
    """Final split: write one particle subset per cutoff (classes scoring <= cutoff).

    Parameters
    ----------
    particles : ClassifiedParticles, str or Path
        The final 2D classification's particles (.star or .cs).
    scores : str or Path
        Its ``scores.csv`` or ``scores.star``.
    out_dir : str or Path
        Folder for ``score_le_<cutoff>.*`` and ``selection.json``.
    cutoffs : sequence of float
        Score cutoffs.
    formats, annotate
        As in :func:`apply_round`.
    """
    parts = _classified(particles)
    table = read_scores(scores)
    split = final_split(table, cutoffs, source=scores)
    per_particle = parts.scores(table, scores)
    cutoffs = sorted(float(c) for c in cutoffs)
    subsets, report = {}, {}
    for c in cutoffs:
        keep_classes = split.loc[split[f"le_{c:g}"], "class"].to_numpy()
        mask = per_particle <= c
        subsets[cutoff_name(c)] = mask
        report[f"{c:g}"] = {
            "rule": f"score <= {c:g}",
            "classes_kept": sorted(int(x) for x in keep_classes),
            "classes_rejected": sorted(int(x) for x in split.loc[~split[f"le_{c:g}"], "class"]),
            "particles_kept": int(mask.sum()), "particles_rejected": int((~mask).sum()),
        }
    summary = {"step": "final", "cutoffs": report, "particles": {"total": len(parts)},
               "inputs": {"particles": str(parts.source), "scores": str(scores)}}
    summary.update(domain_warnings(table, scores))
    return _write_step(Path(out_dir), parts, subsets, per_particle, _formats(parts, formats), summary, annotate)


def _same_optics(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal optics tables, numbers compared to float32 precision: files that went through
    cryoSPARC (.cs stores float32) carry e.g. Cs 2.700000047683716 where RELION's say 2.7."""
    if a.shape != b.shape or sorted(a.columns) != sorted(b.columns):
        return False
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number):
            if not np.allclose(x.astype(np.float64), y.astype(np.float64), rtol=1e-6, atol=0.0):
                return False
        elif not (x.astype(str) == y.astype(str)).all():
            return False
    return True


def pool_particles(inputs, out: str | Path) -> int:
    """Concatenate particle files of one data set (e.g. kept + accepted) into ``out``, atomically.

    Inputs must share the format of ``out`` (.star: identical optics tables; .cs: fields)
    and no particle may appear twice. Returns the number of particles written.
    """
    out = Path(out)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError(out, "nothing to pool")
    if any(p.suffix != out.suffix for p in paths):
        raise InputError(out, "pooled files must all have the output's format")
    if out.suffix == ".cs":
        sets = [read_cs(p) for p in paths]
        uids = np.concatenate([np.asarray(s["uid"]) for s in sets])
        if len(np.unique(uids)) != len(uids):
            raise InputError(out, "a particle (uid) appears in more than one input")
        try:
            pooled = sets[0].append(*sets[1:], assert_same_fields=True) if len(sets) > 1 else sets[0]
        except Exception as exc:  # cryosparc-tools raises plain assertion/value errors
            raise InputError(out, f"cannot pool these .cs files ({exc})") from None
        write_cs(out, pooled)
        return len(pooled)
    sets = [read_particles_star(p) for p in paths]
    optics = sets[0].optics.reset_index(drop=True)
    for p, s in zip(paths[1:], sets[1:]):
        if not _same_optics(s.optics.reset_index(drop=True), optics):
            raise InputError(p, f"optics groups differ from {paths[0].name}; pool files of one data set only")
    # Columns every input has (score columns of one step are not in another's files).
    common = [c for c in sets[0].particles.columns if all(c in s.particles for s in sets[1:])]
    particles = pd.concat([s.particles[common] for s in sets], ignore_index=True)
    dup = particles["rlnImageName"].duplicated()
    if dup.any():
        raise InputError(out, f"particle {particles['rlnImageName'][dup].iloc[0]} appears in more than one input")
    write_particles_star(out, ParticleSet(particles, optics, source=out))
    return len(particles)
