"""Job parameters of the cryoSPARC engine, following the CryoSift paper where it states a choice.

- 2D classification: the job type follows the full extraction box (``class_2D_new``, the
  small-particle 2D job, below 200 px; ``class_2D`` otherwise). Small particles get the
  paper's settings (3 Å maximum resolution, initial class uncertainty factor 3, no forced
  maximum over poses/shifts, 40 online-EM iterations, batch size 400 per class).
- Ab initio: initial resolution 35 Å, maximum resolution 3 Å, minibatch 300 rising to 1000,
  one class, and one seed for every cutoff (the paper cloned the job, seed included, so the
  maps differ only by their particles).
- Re-extraction: the full extraction box, unbinned.

Parameters come in layers, later ones winning: these presets, the user's starter 2D job
(its parameters are copied), the engine's common options, then the configuration's
``*_params`` overrides.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Boxes below this (px) count as small particles (the 2D job type; the loop's rounds follow
#: :func:`cryosift.selection.policy.rounds_for_box`).
SMALL_BOX = 200

#: The paper's 2D settings for small particles (``class_2D_new``).
SMALL_PARTICLE_2D = {
    "class2D_max_res": 3,
    "class2D_sigma_init_factor": 3,
    "class2D_force_max": False,
    "class2D_num_full_iter_batch": 40,
    "class2D_num_full_iter_batchsize_per_class": 400,
}

#: The paper's ab initio settings ("detailed" mode of the published pipeline).
PAPER_ABINIT = {
    "abinit_K": 1,
    "abinit_init_res": 35.0,
    "abinit_max_res": 3.0,
    "abinit_minisize_init": 300,
    "abinit_minisize": 1000,
}

#: Engine-protocol options -> cryoSPARC 2D parameters.
COMMON_2D = {
    "classes": "class2D_K",
    "particle_diameter": "class2D_window_inner_A",
    "highres_limit": "class2D_max_res",
    "center_classes": "class2D_recenter",
    "seed": "random_seed",
}

#: Engine-protocol options with no cryoSPARC counterpart (RELION's EM schedule and sampling);
#: accepted so that every engine takes the same command line, and otherwise ignored.
IGNORED_2D = ("iterations", "tau2_fudge", "psi_step", "offset_range", "offset_step")

#: Starter-job parameters copied when the starter's job type differs from the one chosen.
_SHARED_2D_PREFIXES = ("class2D_", "random_seed", "compute_use_ssd")


def class2d_job_type(box: int) -> str:
    """``class_2D_new`` for a full extraction box below 200 px, ``class_2D`` otherwise."""
    return "class_2D_new" if int(box) < SMALL_BOX else "class_2D"


def class2d_params(box: int, starter: dict | None = None, starter_type: str | None = None,
                   common: dict | None = None, overrides: dict | None = None) -> tuple[str, dict]:
    """The job type and parameters of a 2D classification.

    Parameters
    ----------
    box : int
        Full extraction box in px.
    starter : dict, optional
        Parameters of the user's starter 2D job (copied).
    starter_type : str, optional
        That job's type; when it differs from the chosen type only ``class2D_*`` settings,
        ``random_seed`` and ``compute_use_ssd`` are copied.
    common : dict, optional
        Engine-protocol options (``classes``, ``particle_diameter`` in Å, ``highres_limit``
        in Å, ``center_classes``, ``seed``; the RELION-only ones are ignored).
    overrides : dict, optional
        cryoSPARC parameters applied last.

    Raises
    ------
    ValueError
        An option that is neither common nor known to be ignored.
    """
    job_type = class2d_job_type(box)
    params = dict(SMALL_PARTICLE_2D) if job_type == "class_2D_new" else {}
    if starter:
        if starter_type in (None, job_type):
            copied = dict(starter)
        else:
            copied = {k: v for k, v in starter.items() if k.startswith(_SHARED_2D_PREFIXES)}
            log.info("starter job is %s, this classification %s: copying %d of its %d parameters",
                     starter_type, job_type, len(copied), len(starter))
        params.update(copied)
    for name, value in (common or {}).items():
        if name in IGNORED_2D or value is None:
            continue
        if name not in COMMON_2D:
            raise ValueError(f"unknown cryoSPARC 2D option {name!r}")
        if name == "highres_limit" and not value:
            continue  # 0 means no limit: keep cryoSPARC's (or the preset's) own
        params[COMMON_2D[name]] = value
    params.update(overrides or {})
    return job_type, params


def abinit_params(seed: int, seed_param: str = "abinit_seed_init", overrides: dict | None = None) -> dict:
    """Ab initio parameters: the paper's settings, the run's seed, then ``overrides``."""
    params = dict(PAPER_ABINIT)
    params[seed_param] = int(seed)
    params.update(overrides or {})
    return params


def extract_params(box: int, overrides: dict | None = None) -> dict:
    """Re-extraction at the full ``box`` (px), unbinned."""
    return {"box_size_pix": int(box), **(overrides or {})}
