"""A simulated dataset on disk: stack, STAR, .cs, ground truth, true map and model, dataset.json.

Images are rendered and written in chunks, so memory stays bounded whatever the
number of particles. Every file is written atomically; dataset.json is written last
and marks a complete dataset.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cryosift import __version__
from cryosift.device import pick_device
from cryosift.errors import InputError, require_file
from cryosift.fourier import fourier_crop
from cryosift.io import StackWriter, dataset_from_particles, write_cs, write_map, write_particles_star
from cryosift.io.atomic import atomic_path, write_text_atomic
from cryosift.io.jsonfile import read_json
from cryosift.logs import ProgressLog
from cryosift.io.models import ParticleSet
from cryosift.simulate.junk import junk_counts
from cryosift.simulate.particles import Simulator
from cryosift.simulate.spec import SimulationSpec
from cryosift.simulate.structure import load_true_structure, partial_volumes, write_model
from cryosift.simulate.table import draw_table, stream

log = logging.getLogger(__name__)

CHUNK = 256
FILES = {"particles_mrcs": "particles.mrcs", "particles_star": "particles.star", "particles_cs": "particles.cs",
         "ground_truth_csv": "ground_truth.csv", "map_mrc": "map.mrc", "model_cif": "model.cif",
         "dataset_json": "dataset.json"}
BINNED = {"binned_mrcs": "particles_binned.mrcs", "binned_star": "particles_binned.star"}


@dataclass
class SimulatedDataset:
    """Paths of a simulated dataset and its ground truth.

    Attributes
    ----------
    out_dir : Path
    particles_mrcs, particles_star, particles_cs, ground_truth_csv, map_mrc, model_cif, dataset_json : Path
    binned_mrcs, binned_star : Path or None
        The binned copy, when asked for.
    ground_truth : pd.DataFrame
        One row per image (see :data:`cryosift.simulate.table.COLUMNS`).
    info : dict
        The content of dataset.json.
    spec : SimulationSpec
    """

    out_dir: Path
    particles_mrcs: Path
    particles_star: Path
    particles_cs: Path
    ground_truth_csv: Path
    map_mrc: Path
    model_cif: Path
    dataset_json: Path
    binned_mrcs: Path | None
    binned_star: Path | None
    ground_truth: pd.DataFrame
    info: dict
    spec: SimulationSpec

    @property
    def is_true(self) -> np.ndarray:
        """Boolean mask of the true particles, shape (n,)."""
        return (self.ground_truth["label"] == "true").to_numpy()


def particle_set(table: pd.DataFrame, spec: SimulationSpec, box: int, pixel_size: float,
                 stack_name: str = "particles.mrcs", source: Path | None = None) -> ParticleSet:
    """The ground truth as a RELION 3.1 particle set (true poses and origins)."""
    names = table["image_name"].str.replace("@particles.mrcs", f"@{stack_name}", regex=False)
    parts = pd.DataFrame({
        "rlnImageName": names.to_numpy(dtype=object),
        "rlnMicrographName": table["micrograph"].to_numpy(dtype=object),
        "rlnOpticsGroup": np.ones(len(table), dtype=np.int64),
        "rlnDefocusU": table["defocus_u_A"].to_numpy(), "rlnDefocusV": table["defocus_v_A"].to_numpy(),
        "rlnDefocusAngle": table["defocus_angle"].to_numpy(), "rlnPhaseShift": table["phase_shift"].to_numpy(),
        "rlnAngleRot": table["rot"].to_numpy(), "rlnAngleTilt": table["tilt"].to_numpy(),
        "rlnAnglePsi": table["psi"].to_numpy(),
        "rlnOriginXAngst": table["origin_x_A"].to_numpy(), "rlnOriginYAngst": table["origin_y_A"].to_numpy(),
        "rlnRandomSubset": table["random_subset"].to_numpy(),
    })
    if np.any(table["bfactor"].to_numpy() != 0):
        parts.insert(7, "rlnCtfBfactor", table["bfactor"].to_numpy())
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [float(spec.voltage)],
        "rlnSphericalAberration": [float(spec.spherical_aberration)],
        "rlnAmplitudeContrast": [float(spec.amplitude_contrast)], "rlnImagePixelSize": [float(pixel_size)],
        "rlnImageSize": [int(box)], "rlnImageDimensionality": [2],
    })
    return ParticleSet(parts, optics, source=source)


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")


def simulate_dataset(spec: SimulationSpec, out_dir: str | Path, progress: bool = False, device=None,
                     source: str | Path | None = None, chunk: int = CHUNK) -> SimulatedDataset:
    """Simulate a dataset and write it to ``out_dir``.

    Parameters
    ----------
    spec : SimulationSpec
        What to simulate.
    out_dir : str or Path
        Output folder (created).
    progress : bool
        Show a progress bar.
    device : str or torch.device, optional
        ``cuda``/``cpu``; default the GPU when there is one.
    source : str or Path, optional
        The settings file, named in errors.
    chunk : int
        Images rendered at once (bounds memory; results do not depend on it on the CPU, and
        agree to float32 rounding on a GPU, whose FFTs may round other batch sizes differently).

    Returns
    -------
    SimulatedDataset
    """
    spec.validate(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(str(device) if device is not None else None)
    truth = load_true_structure(spec, source)
    variants = partial_volumes(truth, 4, stream(spec.seed, 7)) if spec.junk.get("partial", 0) > 0 else []
    try:
        table = draw_table(spec, FILES["particles_mrcs"], [name for name, _ in variants])
    except ValueError as exc:
        raise InputError(source if source is not None else spec.structure, str(exc)) from None
    sim = Simulator(truth.volume, spec, truth.diameter_A, [v for _, v in variants], device=dev)
    sim.calibrate(table)
    paths = {k: out / v for k, v in FILES.items()}
    binned = {k: (out / v if spec.binned_box else None) for k, v in BINNED.items()}
    n, box = len(table), spec.box
    binned_apix = spec.pixel_size * box / spec.binned_box if spec.binned_box else None
    log.info("simulating %d images (%d true) of a %.0f kDa particle, %d px at %.3f Å/px, SNR %.3g",
             n, int((table["label"] == "true").sum()), truth.mass_kda, box, spec.pixel_size, spec.snr)
    label = f"cryosift {__version__} simulate {spec.name} seed {spec.seed}"
    small_writer = (StackWriter(binned["binned_mrcs"], n, spec.binned_box, binned_apix, label=label)
                    if spec.binned_box else contextlib.nullcontext())
    with StackWriter(paths["particles_mrcs"], n, box, spec.pixel_size, label=label) as writer, small_writer as small:
        done = ProgressLog(log, "simulated images", n, every=30.0)
        with tqdm(total=n, unit="img", disable=not progress, desc="simulate") as bar:
            for start in range(0, n, chunk):
                images = sim.render(table.iloc[start:start + chunk])
                writer.write(images)
                if small is not None:
                    small.write(fourier_crop(torch.from_numpy(images), spec.binned_box).numpy())
                bar.update(len(images))
                done.step(n=len(images))
    write_map(paths["map_mrc"], truth.volume, spec.pixel_size, label=label)
    write_model(paths["model_cif"], truth.structure)
    pset = particle_set(table, spec, box, spec.pixel_size, source=paths["particles_star"])
    write_particles_star(paths["particles_star"], pset)
    write_cs(paths["particles_cs"], dataset_from_particles(pset, alignments="3d", seed=spec.seed))
    if spec.binned_box:
        write_particles_star(binned["binned_star"], particle_set(table, spec, spec.binned_box, binned_apix,
                                                                 BINNED["binned_mrcs"]))
    _write_csv(paths["ground_truth_csv"], table)
    counts = junk_counts(spec.junk, n)
    info = {
        "format": "cryosift-simulation", "version": 1, "cryosift_version": __version__, "name": spec.name,
        "box": box, "pixel_size": spec.pixel_size, "diameter_A": round(truth.diameter_A, 2),
        "mass_kda": round(truth.mass_kda, 3), "symmetry": truth.symmetry, "structure": spec.structure,
        "map_resolution_A": truth.resolution, "n_particles": n, "n_true": int(n - sum(counts.values())),
        "junk_counts": counts, "snr": spec.snr, "noise_sigma": sim.noise_sigma,
        "signal_variance": sim.signal_variance, "seed": spec.seed,
        "binned_box": spec.binned_box, "binned_pixel_size": binned_apix,
        "partial_variants": [name for name, _ in variants],
        "files": {**FILES, **({k: v for k, v in BINNED.items()} if spec.binned_box else {})},
        "spec": spec.to_dict(),
    }
    write_text_atomic(paths["dataset_json"], json.dumps(info, indent=2) + "\n")
    return SimulatedDataset(out, **paths, **binned, ground_truth=table, info=info, spec=spec)


def load_simulated_dataset(out_dir: str | Path) -> SimulatedDataset:
    """Open a dataset written by :func:`simulate_dataset` (reads dataset.json and ground_truth.csv)."""
    out = Path(out_dir)
    meta = out / FILES["dataset_json"]
    info = read_json(meta, "a simulation's dataset.json")
    if info.get("format") != "cryosift-simulation":
        raise InputError(meta, "not a cryosift simulation (no format: cryosift-simulation)")
    files = info["files"]
    table = pd.read_csv(require_file(out / files["ground_truth_csv"]), keep_default_na=False)
    paths = {k: out / files[k] for k in FILES}
    binned = {k: (out / files[k] if k in files else None) for k in BINNED}
    return SimulatedDataset(out, **paths, **binned, ground_truth=table, info=info,
                            spec=SimulationSpec.from_dict(info["spec"], source=meta))
