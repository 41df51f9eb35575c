"""Write an iteration in RELION 3.1 Class2D form.

Per iteration: ``run_itNNN_classes.mrcs`` (class averages), ``run_itNNN_model.star``
(model_general, model_classes, model_class_N spectra, model_groups, model_group_1 noise),
``run_itNNN_data.star`` (optics + particles with class, psi and offsets), the exact state
for continuing (``run_itNNN_state.pt``) and, last, ``run_itNNN_optimiser.star``: a half-written
iteration has no optimiser file, so :func:`cryosift.io.last_finished_iteration` skips it.
Every file is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.engines.builtin.state import ModelState, save_state
from cryosift.io.class2d import class2d_stem, write_class2d_iteration
from cryosift.io.models import NO_RESOLUTION, project_relative
from cryosift.io.star import write_star


def iteration_stem(job_dir: Path, iteration: int) -> Path:
    return class2d_stem(job_dir, iteration)


def model_tables(state: ModelState, data, params) -> dict:
    """The blocks of run_itNNN_model.star (``rlnReferenceImage`` is added by the writer)."""
    k = state.n_classes
    box, apix = data.box, data.pixel_size
    n_shells = box // 2 + 1
    shells = np.arange(n_shells)
    freq = shells / (box * apix)
    with np.errstate(divide="ignore"):
        angstrom = np.where(shells > 0, box * apix / np.maximum(shells, 1), NO_RESOLUTION)
    sigma2 = state.sigma2.cpu().numpy()
    general = {
        "rlnReferenceDimensionality": 2, "rlnDataDimensionality": 2, "rlnOriginalImageSize": box,
        "rlnCurrentResolution": float(box * apix / max(state.radius - 1, 1)), "rlnCurrentImageSize": 2 * state.radius,
        "rlnPaddingFactor": 2.0, "rlnIsHelix": 0, "rlnFourierSpaceInterpolator": 1, "rlnMinRadiusNnInterpolation": 10,
        "rlnPixelSize": float(apix), "rlnNrClasses": k, "rlnNrBodies": 1, "rlnNrGroups": 1,
        "rlnTau2FudgeFactor": float(params.tau2_fudge), "rlnNormCorrectionAverage": 1.0,
        "rlnSigmaOffsetsAngst": float(np.sqrt(state.sigma2_offset)), "rlnOrientationalPriorMode": 0,
        "rlnSigmaPriorRotAngle": 0.0, "rlnSigmaPriorTiltAngle": 0.0, "rlnSigmaPriorPsiAngle": 0.0,
        "rlnLogLikelihood": float(state.log_likelihood), "rlnAveragePmax": float(state.ave_pmax),
    }
    prior = state.class_prior.cpu().numpy()
    coverage = state.coverage.cpu().numpy()
    res = state.resolution.cpu().numpy()
    overall = np.zeros(k)
    for i in range(k):  # fraction of coefficients above SSNR 1 inside the resolved disc
        if res[i] < NO_RESOLUTION:
            overall[i] = coverage[i, 1:int(round(box * apix / res[i])) + 1].mean()
    classes = pd.DataFrame({
        "rlnClassDistribution": prior,
        "rlnAccuracyRotations": state.acc_rotations.cpu().numpy(),
        "rlnAccuracyTranslationsAngst": state.acc_translations.cpu().numpy(),
        "rlnEstimatedResolution": res,
        "rlnOverallFourierCompleteness": overall,
        # Offsets are particle displacements; RELION's origins are the opposite (see preprocess).
        "rlnClassPriorOffsetX": -state.prior_offsets[:, 0].cpu().numpy() * apix,
        "rlnClassPriorOffsetY": -state.prior_offsets[:, 1].cpu().numpy() * apix,
    })
    blocks = {"model_general": general, "model_classes": classes}
    dvp, tau2 = state.data_vs_prior.cpu().numpy(), state.tau2.cpu().numpy()
    for i in range(k):
        blocks[f"model_class_{i + 1}"] = pd.DataFrame({
            "rlnSpectralIndex": shells, "rlnResolution": freq, "rlnAngstromResolution": angstrom,
            "rlnSsnrMap": dvp[i], "rlnGoldStandardFsc": np.zeros(n_shells), "rlnFourierCompleteness": coverage[i],
            "rlnReferenceSigma2": sigma2, "rlnReferenceTau2": tau2[i],
            "rlnSpectralOrientabilityContribution": np.zeros(n_shells),
        })
    blocks["model_groups"] = pd.DataFrame({"rlnGroupNumber": [1], "rlnGroupName": ["group"],
                                           "rlnGroupNrParticles": [int((state.classes >= 0).sum())],
                                           "rlnGroupScaleCorrection": [1.0]})
    blocks["model_group_1"] = pd.DataFrame({"rlnSpectralIndex": shells, "rlnResolution": freq, "rlnSigma2Noise": sigma2})
    return blocks


def data_tables(state: ModelState, data) -> dict:
    """The blocks of run_itNNN_data.star: the input optics and particles with this iteration's assignments.

    Particles that no iteration has seen yet (early mini-batches) are left out.
    """
    classes = state.classes.cpu().numpy()
    seen = classes >= 0
    parts = data.pset.particles.loc[seen].copy().reset_index(drop=True)
    origins = -state.offsets.cpu().numpy()[seen] * data.pixel_size  # displacement -> RELION origin
    psi = state.psi.cpu().numpy()[seen]
    for label in ("rlnAngleRot", "rlnAngleTilt"):
        if label not in parts:
            parts[label] = 0.0
    parts["rlnAnglePsi"] = 180.0 - np.remainder(180.0 - psi, 360.0)
    parts["rlnOriginXAngst"] = origins[:, 0]
    parts["rlnOriginYAngst"] = origins[:, 1]
    parts["rlnClassNumber"] = classes[seen] + 1
    parts["rlnNormCorrection"] = 1.0
    parts["rlnLogLikeliContribution"] = state.particle_log_likelihood.cpu().numpy()[seen]
    parts["rlnMaxValueProbDistribution"] = state.max_prob.cpu().numpy()[seen]
    parts["rlnNrOfSignificantSamples"] = state.n_significant.cpu().numpy()[seen].astype(np.int64)
    return {"optics": data.pset.optics, "particles": parts}


def optimiser_table(job_dir: Path, iteration: int, params, settings: dict) -> dict:
    """RELION's optimiser_general labels for this run (the file marks the iteration as finished)."""
    stem = iteration_stem(job_dir, iteration)
    root = project_relative(Path(job_dir) / "run")
    return {"optimiser_general": {
        "rlnOutputRootName": root,
        "rlnModelStarFile": project_relative(Path(f"{stem}_model.star")),
        "rlnExperimentalDataStarFile": project_relative(Path(f"{stem}_data.star")),
        "rlnCurrentIteration": iteration,
        "rlnNumberOfIterations": int(params.iterations),
        "rlnDoSplitRandomHalves": 0,
        "rlnAdaptiveOversampleOrder": int(params.oversampling),
        "rlnAdaptiveOversampleFraction": float(params.adaptive_fraction),
        "rlnRandomSeed": int(params.seed),
        "rlnParticleDiameter": float(settings["mask_diameter"]),
        "rlnDoZeroMask": 1,
        "rlnDoSolventFlattening": 1,
        "rlnHighresLimitExpectation": float(params.highres_limit) if params.highres_limit > 0 else -1.0,
        "rlnIncrementImageSize": 10,
        "rlnDoMapEstimation": 1,
        "rlnDoAutoRefine": 0,
    }}


def write_iteration(job_dir: str | Path, iteration: int, state: ModelState, data, params, settings: dict) -> dict:
    """Write one iteration's files; the optimiser file comes last.

    Returns
    -------
    dict
        Paths ``model``, ``data``, ``classes``, ``state``, ``optimiser``.
    """
    job = Path(job_dir)
    stem = iteration_stem(job, iteration)
    blocks = model_tables(state, data, params)
    general, classes = blocks.pop("model_general"), blocks.pop("model_classes")
    paths = write_class2d_iteration(job, iteration, state.references.cpu().numpy(), data.pixel_size,
                                    data_tables(state, data), general, classes, blocks)
    paths.update(state=Path(f"{stem}_state.pt"), optimiser=Path(f"{stem}_optimiser.star"))
    save_state(paths["state"], state, settings)
    write_star(paths["optimiser"], optimiser_table(job, iteration, params, settings))
    return paths


def remove_iteration(job_dir: str | Path, iteration: int) -> None:
    """Delete an iteration's files (optimiser first, so it never looks finished while half removed)."""
    stem = iteration_stem(Path(job_dir), iteration)
    for name in ("optimiser.star", "state.pt", "data.star", "model.star", "classes.mrcs"):
        try:
            os.remove(f"{stem}_{name}")
        except FileNotFoundError:
            pass
