"""Training data for the scoring model: simulated datasets, 2D-classified, every class graded.

One training dataset is made by :func:`make_training_dataset`: draw settings
(:func:`draw_settings`: a new pseudo-protein of random mass and shape, pixel size, box,
SNR, orientation distribution, junk types and fractions), simulate the particles, classify
them with the builtin 2D engine (poses removed, Fourier-cropped to a small classification
box), and grade the class averages of a few iterations against the ground truth
(:mod:`cryosift.scoring.training.truth`, :mod:`cryosift.scoring.training.grades`). Early
iterations give blurred, misaligned classes, the last one the engine's best.

The folder keeps ``averages.npz`` (class-average stacks per graded iteration),
``classes.csv`` (one row per class average: features, ground-truth measures, grade) and
``settings.json``; the particles and the classification job are deleted unless ``keep``.
``classes.csv`` is written last and marks a finished dataset.

Opt-in options move the data towards real jobs (issue 28; off by default, which leaves the
output as it was): real structures of the shipped set (``real_fraction``), averages masked as
RELION stores them (``averages="relion"``), and the K range (``classes``).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io import read_class_averages, read_map, read_particles_star
from cryosift.io.atomic import atomic_path, write_text_atomic
from cryosift.scoring.features import class_features
from cryosift.scoring.training.grades import class_grade, grade_letter
from cryosift.scoring.training.render import relion_render
from cryosift.scoring.training.truth import IdealAverages, class_measures, member_table
from cryosift.simulate.atomic_models import get_entry

log = logging.getLogger(__name__)

POSE_LABELS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst")
JUNK = ("empty_ice", "carbon_edge", "ice_blob", "aggregate", "off_centre", "partial")
CLASSES_CSV = "classes.csv"
AVERAGES_NPZ = "averages.npz"


@dataclass
class GenerationSettings:
    """Ranges the training datasets are drawn from (see docs/training.md).

    Attributes
    ----------
    particles : (min, max)
        Images per dataset, junk included.
    mass_kda : (min, max)
        Pseudo-protein mass, drawn log-uniformly.
    pixel_size : (min, max)
        Å/px of the simulated particles.
    box : (min, max)
        Particle box in px (even); the box is 1.4-2.0 particle diameters when the range allows.
    class_box : (min, max)
        Classification box in px: the particle box Fourier-cropped to 2.5-5 Å/px, within this range.
    snr : (min, max)
        Signal-to-noise ratio, drawn log-uniformly.
    junk_fraction : (min, max)
        Total junk fraction (skewed towards the low end); split over the junk types by a Dirichlet draw.
    classes : (min, max)
        K of the 2D classification.
    iterations : int
        Classification iterations.
    graded_iterations : list of int
        Iterations whose class averages are graded (the last one always is).
    views_weight, preferred_weight, uniform_weight : float
        Odds of the three orientation distributions.
    real_fraction : float
        Fraction of the datasets simulated from a real structure of the shipped set
        (:mod:`cryosift.simulate.atomic_models`) instead of a pseudo-protein; 0 (default) keeps
        every dataset a pseudo-protein. The entry is drawn uniformly among those that fit the
        largest box at the coarsest pixel size (``real_entries`` narrows the choice).
    real_entries : tuple of str
        PDB ids the real structures are drawn from; empty (default): every shipped entry that fits.
    averages : str
        ``builtin`` (default): the builtin engine's class averages as it writes them;
        ``relion``: re-rendered as RELION stores them (:func:`relion_render`) before they are
        graded and stored.
    """

    particles: tuple = (800, 1500)
    mass_kda: tuple = (50.0, 600.0)
    pixel_size: tuple = (0.7, 2.5)
    box: tuple = (64, 160)
    class_box: tuple = (40, 64)
    snr: tuple = (0.05, 1.0)
    junk_fraction: tuple = (0.0, 0.6)
    classes: tuple = (10, 20)
    iterations: int = 12
    graded_iterations: tuple = (6, 9)
    views_weight: float = 0.6
    preferred_weight: float = 0.25
    uniform_weight: float = 0.15
    real_fraction: float = 0.0
    real_entries: tuple = ()
    averages: str = "builtin"

    def to_dict(self) -> dict:
        """Settings as JSON-ready values; the opt-in training-domain options only when set, so a
        default dataset's settings.json is what it was before they existed."""
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        for k in OPT_IN:
            if d[k] == (list(DEFAULT_OPT_IN[k]) if isinstance(DEFAULT_OPT_IN[k], tuple) else DEFAULT_OPT_IN[k]):
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "GenerationSettings":
        d = dict(d or {})
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(None, f"unknown training-data setting(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        out = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})
        out.validate()
        return out

    def validate(self) -> None:
        """Raise InputError for opt-in options outside their domain."""
        if not 0.0 <= float(self.real_fraction) <= 1.0:
            raise InputError(None, f"real_fraction must be within 0-1, not {self.real_fraction!r}")
        if self.averages not in AVERAGE_STYLES:
            raise InputError(None, f"averages must be one of {', '.join(AVERAGE_STYLES)}, not {self.averages!r}")
        for name in self.real_entries:
            get_entry(str(name))
        if int(self.classes[0]) < 1 or int(self.classes[1]) < int(self.classes[0]):
            raise InputError(None, f"classes must be a range [min, max] with 1 <= min <= max, not {list(self.classes)}")


#: Options of the training domain that are off by default (issue 28); omitted from settings.json when off.
OPT_IN = ("real_fraction", "real_entries", "averages")
DEFAULT_OPT_IN = {"real_fraction": 0.0, "real_entries": (), "averages": "builtin"}
#: Ways of rendering the class averages that are graded and stored.
AVERAGE_STYLES = ("builtin", "relion")
#: Smallest box / particle diameter a real structure is simulated at (the simulator warns above 0.85).
MIN_BOX_RATIO = 1.2


def _diameter(mass: float, shape: str, seed: int) -> float:
    from cryosift.density import model_coordinates
    from cryosift.simulate import build_pseudoprotein

    xyz = model_coordinates(build_pseudoprotein(mass, shape, "C1", seed=seed).structure)
    return float(2.0 * np.max(np.linalg.norm(xyz - xyz.mean(axis=0), axis=1)) + 4.0)


@lru_cache(maxsize=None)
def entry_diameter_A(entry_id: str, largest_field_A: float = math.inf) -> float:
    """Diameter (Å) of a shipped real structure as the simulator measures it, micelle included.

    Twice the largest atom distance from the mean atom position, plus 4 Å; for membrane
    proteins at least the extent of the micelle, measured on a 4 Å/px map as the simulator
    does. An entry whose atoms alone do not fit ``largest_field_A / MIN_BOX_RATIO`` is not
    mapped (its atom diameter is returned): it cannot be simulated in the allowed boxes.
    """
    from cryosift.density import model_coordinates
    from cryosift.simulate.atomic_models import MicelleSpec, load_structure, micelle_for
    from cryosift.simulate.spec import SimulationSpec
    from cryosift.simulate.structure import load_true_structure

    entry = get_entry(entry_id)
    xyz = model_coordinates(load_structure(entry))
    diameter = float(2.0 * np.max(np.linalg.norm(xyz - xyz.mean(axis=0), axis=1)) + 4.0)
    if micelle_for(entry, None) is None or diameter * MIN_BOX_RATIO > largest_field_A:
        return diameter
    apix = 4.0
    reach = diameter + 2.0 * (MicelleSpec().shell_A + 20.0)
    box = int(math.ceil(reach / apix / 2.0) * 2)
    spec = SimulationSpec(structure=f"pdb:{entry.id}", box=box, pixel_size=apix)
    return float(load_true_structure(spec).diameter_A)


def draw_real_entry(index: int, seed: int, settings: GenerationSettings) -> tuple[str, float] | None:
    """The real structure of training dataset ``index``, or None for a pseudo-protein.

    With probability ``real_fraction`` the dataset is a real structure, drawn uniformly among
    the candidate entries whose particle fits ``MIN_BOX_RATIO`` diameters into the largest box
    at the coarsest pixel size. Uses its own random stream, so the other draws of a dataset do
    not depend on this setting, and none is made when it is 0.

    Returns
    -------
    (str, float) or None
        PDB id and particle diameter in Å.
    """
    s = settings
    if float(s.real_fraction) <= 0.0:
        return None
    rng = np.random.default_rng([int(seed), 102, int(index)])
    if rng.random() >= float(s.real_fraction):
        return None
    from cryosift.simulate.atomic_models import list_structures

    largest = float(max(s.box)) * float(max(s.pixel_size))
    ids = [get_entry(str(e)).id for e in s.real_entries] or [e.id for e in list_structures()]
    # The first of a random order that fits: uniform over the entries that fit, and only
    # the entries tried are loaded.
    for entry_id in rng.permutation(sorted(set(ids))):
        diameter = entry_diameter_A(str(entry_id), largest)
        if diameter * MIN_BOX_RATIO <= largest:
            return str(entry_id), diameter
    raise InputError(None, f"no real structure among {', '.join(sorted(set(ids)))} fits a {max(s.box)} px box "
                           f"at {max(s.pixel_size)} Å/px (with {MIN_BOX_RATIO} diameters across)")


def _fit_real(diameter: float, rng: np.random.Generator, s: GenerationSettings) -> tuple[float, int]:
    """Pixel size (Å/px, within the range) and even box (px, within the range) for a real structure."""
    p_lo, p_hi = float(min(s.pixel_size)), float(max(s.pixel_size))
    box_lo, box_hi = int(min(s.box)), int(max(s.box))
    apix = float(rng.uniform(p_lo, p_hi))
    ratio = float(rng.uniform(1.4, 2.0))
    if diameter * ratio > box_hi * apix:  # too fine a pixel for the largest box: coarser, then tighter
        apix = min(p_hi, diameter * ratio / box_hi)
        ratio = max(MIN_BOX_RATIO, min(ratio, box_hi * apix / diameter))
    box = int(math.ceil(diameter * ratio / apix / 2.0) * 2)
    return apix, int(min(max(box, box_lo), box_hi))


def draw_settings(index: int, seed: int, settings: GenerationSettings | None = None) -> dict:
    """Simulation and classification settings of training dataset ``index`` (reproducible).

    Returns
    -------
    dict
        ``name``, ``structure`` (an id unique to the pseudo-protein, or ``pdb:ID`` of a real
        structure), ``spec`` (SimulationSpec settings), ``classify`` (options of the builtin
        classify2d) and ``diameter_A``.
    """
    s = settings or GenerationSettings()
    rng = np.random.default_rng([int(seed), 101, int(index)])
    sim_seed = int(rng.integers(1, 2**31 - 1))
    mass = float(math.exp(rng.uniform(math.log(s.mass_kda[0]), math.log(s.mass_kda[1]))))
    shape = str(rng.choice(["globular", "elongated", "multidomain"], p=[0.5, 0.25, 0.25]))
    real = draw_real_entry(index, seed, s)
    box_lo, box_hi = int(s.box[0]), int(s.box[1])
    if real is not None:
        diameter = real[1]
        apix, box = _fit_real(diameter, rng, s)
    else:
        diameter = _diameter(mass, shape, sim_seed)
        apix = float(rng.uniform(*s.pixel_size))
        box = int(math.ceil(diameter * rng.uniform(1.4, 2.0) / apix / 2.0) * 2)
        if box > box_hi:  # too fine a pixel for the box range: coarser pixels
            box = box_hi
            apix = max(apix, diameter * rng.uniform(1.3, 1.6) / box)
        box = max(box, box_lo)
    # Classification box: about 2.5-5 Å/px, within the allowed range.
    lo_cb, hi_cb = int(min(s.class_box)), int(max(s.class_box))
    class_box = int(np.clip(round(box * apix / rng.uniform(2.5, 5.0) / 2.0) * 2, lo_cb, hi_cb))
    class_box = min(box, class_box)
    weights = np.array([s.views_weight, s.preferred_weight, s.uniform_weight], dtype=np.float64)
    mode = str(rng.choice(["views", "preferred", "uniform"], p=weights / weights.sum()))
    # Skewed towards cleaner datasets: u^1.5 puts half of them below 0.35 of the range.
    total_junk = float(s.junk_fraction[0] + (s.junk_fraction[1] - s.junk_fraction[0]) * rng.random() ** 1.5)
    present = rng.random(len(JUNK)) < 0.7
    present[rng.integers(len(JUNK))] = True
    split = rng.dirichlet(np.ones(int(present.sum())))
    junk = {k: 0.0 for k in JUNK}
    for k, f in zip([k for k, p in zip(JUNK, present) if p], split):
        junk[k] = round(total_junk * float(f), 4)
    spec = {
        "name": f"train{index:04d}", "mass_kda": round(mass, 2), "shape": shape, "symmetry": "C1",
        "box": box, "pixel_size": round(apix, 4),
        "n_particles": int(rng.integers(s.particles[0], s.particles[1] + 1)),
        "snr": float(math.exp(rng.uniform(math.log(s.snr[0]), math.log(s.snr[1])))),
        "orientations": mode, "n_views": int(rng.integers(3, 11)) if mode == "views" else 0,
        "preferred_direction": [float(rng.uniform(-180, 180)), float(np.degrees(np.arccos(rng.uniform(-1, 1))))],
        "preferred_strength": float(rng.uniform(2.0, 12.0)),
        "defocus_range": [float(rng.uniform(6000, 12000)), float(rng.uniform(18000, 30000))],
        "shift_sd_A": float(rng.uniform(1.0, 6.0)), "particles_per_micrograph": 100,
        "junk": {k: v for k, v in junk.items() if v > 0}, "seed": sim_seed,
    }
    structure = f"pseudo-{sim_seed}"
    if real is not None:
        structure = f"pdb:{real[0]}"
        # The entry's own assembly, point group and mass; mass_kda and shape are pseudo-protein settings.
        spec = {"name": spec["name"], "structure": structure, **{k: v for k, v in spec.items()
                                                                 if k not in ("name", "mass_kda", "shape", "symmetry")}}
    classify = {"classes": int(rng.integers(s.classes[0], s.classes[1] + 1)), "iterations": int(s.iterations),
                "box": class_box, "particle_diameter": round(min(diameter * 1.2, box * apix * 0.95), 1),
                "seed": int(rng.integers(1, 10**6))}
    return {"name": spec["name"], "structure": structure, "spec": spec, "classify": classify,
            "diameter_A": round(diameter, 2), "index": int(index), "master_seed": int(seed)}


def grade_iteration(job: Path, iteration: int, truth: pd.DataFrame, volume: np.ndarray,
                    diameter_A: float, mask_diameter_A: float, seed: int = 0,
                    style: str = "builtin") -> tuple[np.ndarray, pd.DataFrame]:
    """Class averages of one iteration and their table: features, ground-truth measures, grade.

    ``style="relion"`` re-renders the averages as RELION stores them (:func:`relion_render`,
    mask at ``mask_diameter_A``) before anything is measured, so grades and features describe
    the images that are stored.
    """
    model = job / f"run_it{iteration:03d}_model.star"
    averages = read_class_averages(model)
    if style == "relion":
        averages = replace(averages, images=relion_render(averages.images, averages.pixel_size, mask_diameter_A))
    data = read_particles_star(model.with_name(model.name.replace("_model.star", "_data.star")))
    members = member_table(data.particles, truth)
    box = averages.images.shape[-1]
    ideal = IdealAverages(volume, box, mask_diameter_A / 2.0 / averages.pixel_size)
    measures = class_measures(members, averages.images, averages.class_numbers, averages.pixel_size,
                              diameter_A, ideal, seed=seed + iteration)
    table = class_features(averages).merge(measures, on="class", how="left")
    table["diameter_A"] = diameter_A
    table["grade"] = class_grade(table["aligned_purity"], table["align_rel"], table["frc_resolution_A"], diameter_A)
    table["letter"] = grade_letter(table["grade"])
    table.insert(0, "iteration", iteration)
    return np.asarray(averages.images, dtype=np.float32), table


def simulate_and_classify(out_dir: str | Path, index: int, seed: int, settings: GenerationSettings | None = None,
                          device: str | None = "cpu", threads: int | None = 1) -> dict:
    """First stage: draw settings, simulate the particles (``sim/``) and classify them (``job/``).

    Writes ``settings.json`` (with the stage times) and returns its content.
    """
    from cryosift.engines.builtin import classify2d
    from cryosift.simulate import SimulationSpec, simulate_dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = settings or GenerationSettings()
    drawn = draw_settings(index, seed, s)
    t0 = time.perf_counter()
    ds = simulate_dataset(SimulationSpec.from_dict(drawn["spec"]), out / "sim", device=device)
    pset = read_particles_star(ds.particles_star)
    pset.particles = pset.particles.drop(columns=[c for c in POSE_LABELS if c in pset.particles])
    t1 = time.perf_counter()
    classify2d(pset, out / "job", device=device, threads=threads, export=False, **drawn["classify"])
    info = {**drawn, "generation": s.to_dict(), "simulate_s": round(t1 - t0, 2),
            "classify_s": round(time.perf_counter() - t1, 2), "particle_diameter_A": ds.info["diameter_A"]}
    write_text_atomic(out / "settings.json", json.dumps(info, indent=2) + "\n")
    return info


def grade_dataset(out_dir: str | Path, keep: bool = False) -> pd.DataFrame:
    """Second stage: grade the class averages of the graded iterations; write ``averages.npz`` and ``classes.csv``.

    Deletes ``sim/`` and ``job/`` afterwards unless ``keep``.
    """
    from cryosift.simulate import load_simulated_dataset

    out = Path(out_dir)
    meta = out / "settings.json"
    if not meta.exists() or not (out / "job").is_dir():
        raise InputError(out, "no simulated and classified dataset here (run the simulate stage first)")
    info = json.loads(meta.read_text())
    s = GenerationSettings.from_dict(info["generation"])
    ds = load_simulated_dataset(out / "sim")
    t0 = time.perf_counter()
    volume, _ = read_map(ds.map_mrc)
    last = int(info["classify"]["iterations"])
    stacks, tables = {}, []
    for it in sorted({i for i in s.graded_iterations if 0 < i < last} | {last}):
        images, table = grade_iteration(out / "job", it, ds.ground_truth, volume, ds.info["diameter_A"],
                                        info["classify"]["particle_diameter"], seed=info["classify"]["seed"],
                                        style=s.averages)
        stacks[f"it{it:03d}"] = images
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "structure", info["structure"])
    table.insert(0, "dataset", info["name"])
    table["final"] = table["iteration"] == last
    table["junk_members"] = table["members"] - table["true_members"] - table["partial_members"]
    table["snr"] = info["spec"]["snr"]
    table["orientations"] = info["spec"]["orientations"]
    with atomic_path(out / AVERAGES_NPZ) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **stacks)
    if not keep:
        shutil.rmtree(out / "sim", ignore_errors=True)
        shutil.rmtree(out / "job", ignore_errors=True)
    with atomic_path(out / CLASSES_CSV) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")
    log.info("%s: %d class averages graded in %.1f s (simulated in %.1f s, classified in %.1f s)", info["name"],
             len(table), time.perf_counter() - t0, info["simulate_s"], info["classify_s"])
    return table


def make_training_dataset(out_dir: str | Path, index: int, seed: int, settings: GenerationSettings | None = None,
                          device: str | None = "cpu", threads: int | None = 1, keep: bool = False) -> pd.DataFrame:
    """Both stages for one training dataset; returns its class table.

    A folder that already holds ``classes.csv`` is left as it is (its table is returned).
    """
    done = Path(out_dir) / CLASSES_CSV
    if done.exists():
        return pd.read_csv(done)
    simulate_and_classify(out_dir, index, seed, settings, device=device, threads=threads)
    return grade_dataset(out_dir, keep=keep)


def read_training_dataset(folder: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Class averages and table of one finished training dataset, in table row order.

    Returns
    -------
    images : list of np.ndarray
        One (box, box) float32 image per table row (boxes may differ between datasets).
    table : pd.DataFrame
    """
    f = Path(folder)
    csv = f / CLASSES_CSV
    if not csv.exists():
        raise InputError(csv, "not a finished training dataset (no classes.csv)")
    table = pd.read_csv(csv)
    if "diameter_A" not in table:  # written before the diameter was stored
        table["diameter_A"] = json.loads((f / "settings.json").read_text())["particle_diameter_A"]
    # Grades always follow the current mapping of the stored measures (tables written before
    # misaligned members were counted have no aligned_purity: their purity stands for it).
    purity = table["aligned_purity"] if "aligned_purity" in table else table["purity"]
    table["grade"] = class_grade(purity, table["align_rel"], table["frc_resolution_A"], table["diameter_A"])
    table["letter"] = grade_letter(table["grade"])
    try:
        stacks = np.load(f / AVERAGES_NPZ)
    except (OSError, ValueError) as exc:
        raise InputError(f / AVERAGES_NPZ, f"unreadable class averages ({exc})") from None
    images = np.empty(len(table), dtype=object)
    for it, rows in table.groupby("iteration").groups.items():
        stack = stacks[f"it{int(it):03d}"]
        classes = table.loc[rows, "class"].to_numpy(np.int64)
        for r, k in zip(rows, classes):
            images[r] = stack[k - 1]
    return images, table
