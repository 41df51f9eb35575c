"""The true structure of a simulation: the model in the map's frame, its map, and maps with a domain missing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import gemmi
import numpy as np
from scipy.cluster.vq import kmeans2

from cryosift.density import centring_origin, model_coordinates, model_map, read_model
from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path
from cryosift.simulate.atomic_models import (
    PREFIX,
    AtomicEntry,
    get_entry,
    is_atomic,
    load_structure,
    micelle_for,
    micelle_map,
    model_mass_kda,
)
from cryosift.simulate.pseudoprotein import build_pseudoprotein
from cryosift.simulate.spec import SimulationSpec

log = logging.getLogger(__name__)


@dataclass
class TrueStructure:
    """Model and map the particles are projected from.

    Attributes
    ----------
    structure : gemmi.Structure
        The model in the map's frame: voxel (z, y, x) of the map lies at (x, y, z) x
        pixel size Å; its centre of mass sits on voxel box // 2 (the rotation centre).
    volume : np.ndarray
        The true map, float32, shape (box, box, box), indexed [z, y, x].
    pixel_size : float
        Å/px.
    resolution : float
        Gaussian low-pass applied to the map, Å.
    diameter_A : float
        Particle diameter: twice the largest atom distance from the centre, plus 4 Å.
    mass_kda : float
        Model mass, kDa.
    symmetry : str
        Point group of the model ("C1" for user models; the manifest's for ``pdb:`` entries).
    residue_groups : np.ndarray
        Domain (or chain, or spatial cluster) number of every residue, int64.
    group_names : list of str
        Name of each group, used to label partial particles.
    micelle : np.ndarray or None
        The detergent micelle's part of ``volume`` (float32, same shape), for membrane
        proteins of the shipped set; None otherwise. Partial particles keep it.
    """

    structure: gemmi.Structure
    volume: np.ndarray
    pixel_size: float
    resolution: float
    diameter_A: float
    mass_kda: float
    symmetry: str
    residue_groups: np.ndarray
    group_names: list = field(default_factory=list)
    micelle: np.ndarray | None = None

    @property
    def box(self) -> int:
        """Map side in voxels."""
        return int(self.volume.shape[-1])


def _user_groups(structure: gemmi.Structure, seed: int) -> tuple[np.ndarray, list]:
    """Chains as groups when there are several, else three spatial clusters of residues."""
    chains = [ch for ch in structure[0] if len(ch)]
    if len(chains) > 1:
        groups = np.concatenate([np.full(len(ch), k) for k, ch in enumerate(chains)])
        return groups.astype(np.int64), [f"chain {ch.name}" for ch in chains]
    centres = np.array([[r[0].pos.x, r[0].pos.y, r[0].pos.z] for ch in chains for r in ch])
    k = min(3, len(centres))
    _, groups = kmeans2(centres, k, seed=np.random.default_rng(seed), minit="++")
    return groups.astype(np.int64), [f"region {i + 1}" for i in range(k)]


def without_group(structure: gemmi.Structure, residue_groups: np.ndarray, group: int) -> gemmi.Structure:
    """A copy of the model with the residues of one group removed."""
    st = structure.clone()
    flat = 0
    for chain in st[0]:
        drop = [i for i in range(len(chain)) if residue_groups[flat + i] == group]
        flat += len(chain)
        for i in reversed(drop):
            del chain[i]
    st.remove_empty_chains()
    return st


def load_true_structure(spec, source: str | Path | None = None) -> TrueStructure:
    """Build or read the model, put it in the map's frame and compute the true map.

    Parameters
    ----------
    spec : SimulationSpec
    source : str or Path, optional
        The settings file, named in errors.

    Raises
    ------
    InputError
        Unreadable model, or a particle larger than the box.
    """
    if spec.structure == "pseudo":
        try:
            pp = build_pseudoprotein(spec.mass_kda, spec.shape, spec.symmetry, seed=spec.seed)
        except ValueError as exc:
            raise InputError(source, str(exc)) from None
        st, groups, names, mass, symmetry = pp.structure, pp.residue_domains, pp.domain_names, pp.mass_kda, pp.symmetry
    elif is_atomic(spec.structure):
        entry = get_entry(spec.structure, source)
        st = load_structure(entry)
        groups, names = _user_groups(st, spec.seed)
        mass, symmetry = model_mass_kda(st), entry.symmetry
    else:
        st = read_model(spec.structure)
        st.remove_ligands_and_waters()
        st.remove_empty_chains()
        groups, names = _user_groups(st, spec.seed)
        mass, symmetry = model_mass_kda(st), "C1"
    origin = centring_origin(st, spec.box, spec.pixel_size)
    st = st.clone()
    st[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(*(-origin))))
    edge = spec.box * spec.pixel_size
    st.cell = gemmi.UnitCell(edge, edge, edge, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    xyz = model_coordinates(st)
    centre = (spec.box // 2) * spec.pixel_size
    diameter = float(2.0 * np.max(np.linalg.norm(xyz - centre, axis=1)) + 4.0)
    resolution = max(spec.map_resolution or 0.0, 2.0 * spec.pixel_size)
    micelle_spec = micelle_for(entry, spec.micelle) if is_atomic(spec.structure) else None
    micelle = None
    if micelle_spec is not None:
        micelle = micelle_map(st, spec.box, spec.pixel_size, resolution, micelle_spec)
        # the micelle is part of the particle: it must fit the box too
        diameter = max(diameter, _support_diameter_A(micelle, spec.pixel_size))
    if diameter > edge:
        where = source if source is not None else (None if spec.structure == "pseudo" else spec.structure)
        raise InputError(where, f"particle diameter {diameter:.0f} Å exceeds the box ({spec.box} px x "
                                f"{spec.pixel_size} Å/px = {edge:.0f} Å): raise box or pixel_size")
    if diameter > 0.85 * edge:
        log.warning("particle diameter %.0f Å fills %.0f%% of the box; CTF fringes will be cut",
                    diameter, 100 * diameter / edge)
    volume = model_map(st, spec.box, spec.pixel_size, resolution=resolution)
    if micelle is not None:
        volume = volume + micelle
    return TrueStructure(st, volume, spec.pixel_size, resolution, diameter, mass, symmetry, groups, names, micelle)


def _support_diameter_A(volume: np.ndarray, pixel_size: float, fraction: float = 0.05) -> float:
    """Twice the largest distance from the box centre of a voxel above ``fraction`` of the map's maximum, Å."""
    box = volume.shape[-1]
    idx = np.argwhere(volume > fraction * float(volume.max()))
    if len(idx) == 0:
        return 0.0
    return float(2.0 * np.max(np.linalg.norm(idx - box // 2, axis=1)) * pixel_size)


def partial_volumes(truth: TrueStructure, n_variants: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Maps of the particle with one domain (chain, or region) missing.

    Returns
    -------
    list of (name, volume)
        Up to ``n_variants`` entries; volumes float32 (box, box, box), [z, y, x].
    """
    n_groups = len(truth.group_names)
    if n_groups < 2:
        return []
    chosen = rng.choice(n_groups, size=min(n_variants, n_groups), replace=False)
    out = []
    for g in sorted(int(c) for c in chosen):
        st = without_group(truth.structure, truth.residue_groups, g)
        vol = model_map(st, truth.box, truth.pixel_size, resolution=truth.resolution)
        if truth.micelle is not None:
            vol = vol + truth.micelle
        out.append((f"without {truth.group_names[g]}", vol))
    return out


def write_model(path: str | Path, structure: gemmi.Structure) -> None:
    """Write the model as mmCIF, atomically."""
    doc = structure.make_mmcif_document()
    with atomic_path(path) as tmp:
        doc.write_file(str(tmp))


def atomic_density(entry: AtomicEntry | str, box: int, pixel_size: float, resolution: float | None = None,
                   micelle: bool | None = None) -> np.ndarray:
    """Map of an entry's assembly, centred in the box, optionally in a micelle.

    The same map the simulator projects for ``structure: pdb:ID`` (it is made by
    :func:`load_true_structure`).

    Parameters
    ----------
    entry : AtomicEntry or str
        The entry or its PDB id.
    box : int
        Map side, px (even).
    pixel_size : float
        Å/px.
    resolution : float, optional
        Gaussian low-pass, Å (B = 4 d²); at least, and by default, 2 x pixel size.
    micelle : bool, optional
        Add a micelle; None adds one to membrane proteins only.

    Returns
    -------
    np.ndarray
        float32, shape (box, box, box), indexed [z, y, x]; the assembly's mean atom
        position on voxel box // 2.

    Raises
    ------
    InputError
        Unknown entry, or a particle that does not fit the box.
    """
    e = get_entry(entry) if isinstance(entry, str) else entry
    spec = SimulationSpec(structure=PREFIX + e.id, box=box, pixel_size=pixel_size, map_resolution=resolution,
                          micelle=micelle)
    spec.validate()
    return load_true_structure(spec).volume
