"""Builders of small scoring inputs (RELION and cryoSPARC 2D jobs, synthetic class averages).

No tests here: imported by the scoring and selection tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from cryosparc.dataset import Dataset

from cryosift.io import write_cs, write_particles_star, write_stack, write_star
from cryosift.io.models import ParticleSet


def disc_images(k=6, box=48, seed=0, noise=0.05, background=0.2):
    """k class averages: a bright disc of varying radius/height on a noisy flat background.

    Returns
    -------
    images : np.ndarray
        float32, (k, box, box).
    radii, heights : np.ndarray
        Disc radius (px) and height per class.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:box, :box] - box // 2
    radii = np.linspace(4, box / 4, k)
    heights = np.linspace(1.0, 3.0, k)
    images = background + noise * rng.standard_normal((k, box, box))
    for i in range(k):
        images[i] += heights[i] * ((xx**2 + yy**2) <= radii[i] ** 2)
    return images.astype(np.float32), radii, heights


def make_relion_job(root: Path, k=6, box=48, pixel_size=2.0, n_particles=120, seed=0, job="Class2D/job003",
                    resolution=None, empty=()):
    """A RELION 3.1 Class2D job folder (iteration 25) below ``root`` (the project folder).

    Classes listed in ``empty`` get no particles and resolution 999 / inf as RELION writes.
    Returns the job folder.
    """
    rng = np.random.default_rng(seed)
    job_dir = root / job
    job_dir.mkdir(parents=True, exist_ok=True)
    images, _, _ = disc_images(k, box, seed)
    stem = job_dir / "run_it025"
    write_stack(f"{stem}_classes.mrcs", images, pixel_size)
    choices = [c for c in range(1, k + 1) if c not in empty]
    cls = rng.choice(choices, size=n_particles)
    counts = np.bincount(cls - 1, minlength=k)
    res = np.asarray(resolution if resolution is not None else np.linspace(8, 20, k), dtype=np.float64)
    res = res.copy()
    for c in empty:
        res[c - 1] = np.inf
    rel_stack = f"{job}/run_it025_classes.mrcs"
    general = {"rlnReferenceDimensionality": 2, "rlnDataDimensionality": 2, "rlnOriginalImageSize": box,
               "rlnCurrentResolution": 10.0, "rlnCurrentImageSize": box, "rlnPaddingFactor": 2.0,
               "rlnPixelSize": pixel_size, "rlnNrClasses": k}
    classes = pd.DataFrame({
        "rlnReferenceImage": [f"{i + 1:06d}@{rel_stack}" for i in range(k)],
        "rlnClassDistribution": counts / counts.sum(),
        "rlnAccuracyRotations": 999.0,
        "rlnEstimatedResolution": res,
    })
    write_star(f"{stem}_model.star", {"model_general": general, "model_classes": classes})
    pset = particle_set(root, n_particles, box, pixel_size, seed, cls)
    write_particles_star(f"{stem}_data.star", pset)
    (job_dir / "run_it025_optimiser.star").write_text("data_optimiser_general\n_rlnOutputRootName run\n")
    return job_dir


def particle_set(root: Path, n: int, box: int, pixel_size: float, seed: int, classes: np.ndarray) -> ParticleSet:
    """Particles in ``root/Extract/particles.mrcs`` with CTF values and the given class numbers."""
    rng = np.random.default_rng(seed + 1)
    (root / "Extract").mkdir(exist_ok=True)
    write_stack(root / "Extract" / "particles.mrcs", rng.normal(size=(n, box, box)).astype(np.float32), pixel_size)
    parts = pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@Extract/particles.mrcs" for i in range(n)],
        "rlnOpticsGroup": 1,
        "rlnDefocusU": rng.uniform(1e4, 3e4, n), "rlnDefocusV": rng.uniform(1e4, 3e4, n),
        "rlnDefocusAngle": rng.uniform(-180, 180, n),
        "rlnAnglePsi": rng.uniform(-180, 180, n),
        "rlnOriginXAngst": rng.normal(scale=2, size=n), "rlnOriginYAngst": rng.normal(scale=2, size=n),
        "rlnCoordinateX": rng.uniform(0, 4000, n), "rlnCoordinateY": rng.uniform(0, 4000, n),
        "rlnMicrographName": [f"mics/m{i % 5}.mrc" for i in range(n)],
        "rlnClassNumber": np.asarray(classes, dtype=np.int64),
    })
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [300.0],
        "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1], "rlnImagePixelSize": [pixel_size],
        "rlnImageSize": [box], "rlnImageDimensionality": [2],
    })
    return ParticleSet(parts, optics, source=root / "particles.star")


def make_cryosparc_job(root: Path, k=5, box=40, pixel_size=1.5, n_particles=80, seed=0, job="J12"):
    """A cryoSPARC 2D job folder (iteration 20). Returns the folder."""
    rng = np.random.default_rng(seed)
    job_dir = root / job
    job_dir.mkdir(parents=True, exist_ok=True)
    images, _, _ = disc_images(k, box, seed)
    name = f"{job}_020_class_averages"
    write_stack(job_dir / f"{name}.mrc", images, pixel_size)
    ds = Dataset.allocate(k, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)),
                              ("blob/psize_A", "f4"), ("blob/res_A", "f4")])
    ds["uid"] = np.arange(1, k + 1, dtype=np.uint64)
    ds["blob/path"] = np.array([f"{job}/{name}.mrc"] * k, dtype=object)
    ds["blob/idx"] = np.arange(k)
    ds["blob/shape"] = np.tile([box, box], (k, 1))
    ds["blob/psize_A"] = pixel_size
    ds["blob/res_A"] = np.linspace(6, 18, k)
    write_cs(job_dir / f"{name}.cs", ds)
    cls = rng.integers(0, k, n_particles)
    pds = Dataset.allocate(n_particles, [
        ("blob/path", "O"), ("blob/idx", "u4"), ("blob/psize_A", "f4"), ("blob/shape", "u4", (2,)),
        ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"), ("ctf/amp_contrast", "f4"), ("ctf/df1_A", "f4"),
        ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"), ("ctf/exp_group_id", "u4"),
        ("alignments2D/class", "u4"), ("alignments2D/pose", "f4"), ("alignments2D/shift", "f4", (2,)),
        ("alignments2D/psize_A", "f4")])
    pds["uid"] = np.arange(1000, 1000 + n_particles, dtype=np.uint64)
    pds["blob/path"] = np.array(["J5/imported/particles.mrcs"] * n_particles, dtype=object)
    pds["blob/idx"] = np.arange(n_particles)
    pds["blob/psize_A"] = pixel_size
    pds["blob/shape"] = np.tile([box, box], (n_particles, 1))
    pds["ctf/accel_kv"], pds["ctf/cs_mm"], pds["ctf/amp_contrast"] = 300.0, 2.7, 0.1
    pds["ctf/df1_A"] = rng.uniform(1e4, 2e4, n_particles)
    pds["ctf/df2_A"] = pds["ctf/df1_A"]
    pds["alignments2D/class"] = cls
    pds["alignments2D/pose"] = rng.uniform(0, 6.28, n_particles)
    pds["alignments2D/psize_A"] = pixel_size
    write_cs(job_dir / f"{job}_020_particles.cs", pds)
    return job_dir
