"""Real proteins for the simulator: a shipped set of PDB entries, their assemblies, maps and micelles.

The set (``cryosift/data/structures``) holds trimmed copies of public PDB entries (wwPDB, CC0):
polymer atoms of the deposited model, no hydrogens, waters or ligands, coordinates to 0.1 Å.
``manifest.json`` beside them lists for each entry its PDB id, where the file came from (a
pinned PyPI source distribution or a public repository at a commit, with checksums), its
licence, the biological assembly used, point group, whether it is a membrane protein, and
the masses measured by ``scripts/build_structure_set.py``, which rebuilds the set.

A simulation names an entry as ``structure: pdb:4V1W`` (see docs/simulate.md). Membrane
proteins are simulated in a detergent micelle by default: a low-density ellipsoidal belt
around the transmembrane region (:func:`micelle_map`).

Typical use::

    from cryosift.simulate.atomic_models import list_structures
    from cryosift.simulate.structure import atomic_density
    [e.id for e in list_structures()]
    vol = atomic_density("6MSM", box=128, pixel_size=1.5)      # CFTR in a micelle, (128, 128, 128)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import gemmi
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from cryosift.density import model_map
from cryosift.errors import InputError
from cryosift.simulate.residues import WATER_MASS

#: Prefix that names a shipped entry in the simulator's ``structure`` setting.
PREFIX = "pdb:"

#: Å³ per Da of protein (partial specific volume 0.74 cm³/g; 1.35 g/cm³).
VOLUME_PER_DA = 1.21

#: Residues counted as hydrophobic when looking for the transmembrane belt.
HYDROPHOBIC = frozenset({"ALA", "VAL", "LEU", "ILE", "PHE", "MET", "TRP", "CYS"})
#: Residues counted as polar (charged residues count twice) when looking for the belt.
POLAR = frozenset({"ASP", "GLU", "LYS", "ARG", "ASN", "GLN", "HIS", "SER", "THR", "TYR", "GLY", "PRO"})
CHARGED = frozenset({"ASP", "GLU", "LYS", "ARG"})


@dataclass(frozen=True)
class AtomicEntry:
    """One structure of the shipped set (a row of manifest.json).

    Attributes
    ----------
    id : str
        PDB id, upper case (``4V1W``).
    name : str
        What the molecule is.
    file : str
        File name in the set's folder (gzipped mmCIF).
    source : str
        Key of the source in the manifest's ``sources`` (where the file was taken from).
    member : str
        Path of the original file inside that source.
    member_sha256 : str
        Checksum of the original file.
    file_sha256 : str
        Checksum of the shipped file.
    method : str
        Experimental method of the entry (``ELECTRON MICROSCOPY``, ``X-RAY DIFFRACTION``).
    assembly : str or None
        Name of the biological assembly applied on loading; None keeps the deposited model.
    symmetry : str
        Point group of the assembly (``C1``, ``C6``, ``D7``, ``O``, ``I``).
    membrane : bool
        A membrane protein: simulated in a micelle unless told otherwise.
    atoms : int
        Atoms of the assembly (after trimming).
    mass_kda : float
        Mass of the assembly's modelled atoms, kDa (residue weights, as the simulator counts it).
    sequence_mass_kda : float
        Mass of the deposited sequences of the same chains (the entry's ``entity_poly``/SEQRES),
        kDa: what the molecule weighs with the parts the model leaves out (None when the
        file carries no sequences).
    note : str
        Anything a user should know (subunits, what is left out).
    """

    id: str
    name: str
    file: str
    source: str
    member: str
    member_sha256: str
    file_sha256: str
    method: str
    assembly: str | None
    symmetry: str
    membrane: bool
    atoms: int
    mass_kda: float
    sequence_mass_kda: float | None
    note: str = ""


@dataclass(frozen=True)
class MicelleSpec:
    """Shape and density of a detergent micelle around a membrane protein.

    The micelle is an ellipsoid centred on the transmembrane region: in the membrane
    plane its semi-axes are the region's extent along its two principal directions plus
    ``shell_A``; along the membrane normal its semi-axis is ``half_thickness_A``. Voxels
    inside the protein are left out, so the micelle is a belt, and its edges are softened.

    Attributes
    ----------
    slab_half_width_A : float
        Half the thickness of the hydrophobic core searched for, Å (a bilayer's is ~15 Å).
    shell_A : float
        How far the detergent reaches beyond the protein in the membrane plane, Å.
    half_thickness_A : float
        Semi-axis of the micelle along the membrane normal, Å.
    density : float
        Micelle density as a fraction of the protein's mean density (detergent scatters
        much less against ice than protein; micelles show at low thresholds).
    edge_A : float
        Gaussian softening of the micelle's edge, Å (standard deviation).
    """

    slab_half_width_A: float = 15.0
    shell_A: float = 14.0
    half_thickness_A: float = 22.0
    density: float = 0.25
    edge_A: float = 2.0


@dataclass
class MembraneBelt:
    """Where the membrane (or micelle) sits on a model.

    Attributes
    ----------
    normal : np.ndarray
        Unit membrane normal, (3,) as (x, y, z).
    centre_A : np.ndarray
        Centre of the transmembrane region, Å, (3,) in the model's frame.
    axes : np.ndarray
        Two unit in-plane directions, (2, 3), the region's principal directions.
    extent_A : np.ndarray
        Largest distance of a transmembrane atom from the centre along each in-plane axis, Å, (2,).
    score : float
        Exposed hydrophobic minus exposed polar residues in the slab (higher is more membrane-like).
    """

    normal: np.ndarray
    centre_A: np.ndarray
    axes: np.ndarray
    extent_A: np.ndarray
    score: float = field(default=0.0)


def structures_dir() -> Path:
    """Folder of the shipped set (holds manifest.json and the gzipped mmCIF files)."""
    return Path(str(resources.files("cryosift") / "data" / "structures"))


@lru_cache(maxsize=1)
def read_manifest() -> dict:
    """The set's manifest.json as a dict (``sources``, ``entries``, ``licence``)."""
    return json.loads((structures_dir() / "manifest.json").read_text())


def list_structures() -> list[AtomicEntry]:
    """Every entry of the shipped set, lightest first."""
    entries = [AtomicEntry(**e) for e in read_manifest()["entries"]]
    return sorted(entries, key=lambda e: e.mass_kda)


def is_atomic(structure: str) -> bool:
    """Whether a ``structure`` setting names a shipped entry (``pdb:ID``)."""
    return isinstance(structure, str) and structure.lower().startswith(PREFIX)


def get_entry(name: str, source=None) -> AtomicEntry:
    """The entry named by a PDB id or a ``pdb:ID`` setting (case does not matter).

    Raises
    ------
    InputError
        No such entry in the set (the message lists the known ids); ``source`` is the file named.
    """
    key = name[len(PREFIX):] if is_atomic(name) else name
    for entry in list_structures():
        if entry.id == key.strip().upper():
            return entry
    known = ", ".join(e.id for e in list_structures())
    raise InputError(source, f"no structure {key!r} in the shipped set (known: {known})")


def _present_subchains(st: gemmi.Structure) -> set:
    return {sc.subchain_id() for ch in st[0] for sc in ch.subchains()}


def load_structure(entry: AtomicEntry | str, assembly: bool = True) -> gemmi.Structure:
    """Read an entry with gemmi and build its biological assembly.

    Parameters
    ----------
    entry : AtomicEntry or str
        The entry or its id.
    assembly : bool
        Apply the entry's assembly (``entry.assembly``); False keeps the deposited model.

    Returns
    -------
    gemmi.Structure
        One model, polymer atoms only, in the entry's own frame (Å); copied chains are
        named with a number added (``A``, ``A2``, ...).
    """
    e = get_entry(entry) if isinstance(entry, str) else entry
    return load_structure_file(structures_dir() / e.file, e.assembly if assembly else None)


def load_structure_file(path: str | Path, assembly: str | None) -> gemmi.Structure:
    """Read a model file and apply the named assembly (None: the model as deposited)."""
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    if assembly is not None:
        present = _present_subchains(st)
        for asm in st.assemblies:
            for gen in asm.generators:
                # generators may name subchains of removed ligands and waters
                gen.subchains = [s for s in gen.subchains if s in present]
        st.transform_to_assembly(assembly, gemmi.HowToNameCopiedChain.AddNumber)
    st.remove_empty_chains()
    return st


def model_mass_kda(structure: gemmi.Structure) -> float:
    """Mass of the first model in kDa: tabulated residue weights in chains, atom weights otherwise."""
    total = 0.0
    for chain in structure[0]:
        for res in chain:
            info = gemmi.find_tabulated_residue(res.name)
            if info is not None and info.found() and info.is_amino_acid():
                total += info.weight - WATER_MASS
            else:
                total += sum(a.element.weight * a.occ for a in res)
        total += WATER_MASS
    return total / 1000.0


def polymer_mass_kda(st: gemmi.Structure) -> float:
    """Mass of the first model's atoms in kDa (the simulator's count: residue weights)."""
    return model_mass_kda(st)


def _residue_table(st: gemmi.Structure) -> tuple[np.ndarray, np.ndarray]:
    """CA positions (n, 3) in Å and residue names (n,) of the amino acids of the first model."""
    xyz, names = [], []
    for ch in st[0]:
        for res in ch:
            ca = res.find_atom("CA", "*")
            if ca is not None and gemmi.find_tabulated_residue(res.name) is not None \
                    and gemmi.find_tabulated_residue(res.name).is_amino_acid():
                xyz.append((ca.pos.x, ca.pos.y, ca.pos.z))
                names.append(res.name)
    return np.asarray(xyz, dtype=np.float64).reshape(-1, 3), np.asarray(names, dtype=object)


def _sphere_directions(n: int) -> np.ndarray:
    """``n`` well spread unit vectors on the upper hemisphere (Fibonacci lattice), (n, 3)."""
    k = np.arange(n) + 0.5
    z = k / n
    phi = np.pi * (1.0 + 5.0 ** 0.5) * k
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def find_membrane_belt(st: gemmi.Structure, half_width_A: float = 15.0, n_directions: int = 600,
                       step_A: float = 1.0) -> MembraneBelt:
    """Locate the transmembrane region: the slab richest in exposed hydrophobic residues.

    For each of ``n_directions`` normals and each slab position (``step_A`` apart), the
    score is the number of exposed hydrophobic residues in the slab minus the exposed
    polar ones (charged ones twice), as a membrane buries hydrophobic surface and
    excludes charge. A residue is exposed when fewer than 16 CA atoms lie within 10 Å of
    its CA. Deterministic.

    Parameters
    ----------
    st : gemmi.Structure
        The model (first model used).
    half_width_A : float
        Half the slab's thickness, Å.
    n_directions : int
        Normals tried (spread over a hemisphere: a normal and its opposite are one slab).
    step_A : float
        Spacing of slab positions along each normal, Å.

    Returns
    -------
    MembraneBelt
    """
    xyz, names = _residue_table(st)
    if len(xyz) < 10:
        raise ValueError("too few amino acids to locate a membrane")
    neighbours = np.array([len(n) - 1 for n in cKDTree(xyz).query_ball_point(xyz, 10.0)])
    exposed = neighbours < 16
    weight = np.zeros(len(xyz))
    weight[exposed & np.isin(names, list(HYDROPHOBIC))] = 1.0
    weight[exposed & np.isin(names, list(POLAR))] = -1.0
    weight[exposed & np.isin(names, list(CHARGED))] = -2.0
    centre0 = xyz.mean(axis=0)
    rel = xyz - centre0
    best = (-np.inf, None, 0.0)
    for d in _sphere_directions(n_directions):
        p = rel @ d
        offsets = np.arange(p.min() + half_width_A, p.max() - half_width_A + step_A, step_A)
        if len(offsets) == 0:
            offsets = np.array([0.5 * (p.min() + p.max())])
        order = np.argsort(p)
        ps, ws = p[order], np.concatenate([[0.0], np.cumsum(weight[order])])
        lo = np.searchsorted(ps, offsets - half_width_A, side="left")
        hi = np.searchsorted(ps, offsets + half_width_A, side="right")
        scores = ws[hi] - ws[lo]
        i = int(np.argmax(scores))
        if scores[i] > best[0] + 1e-9:
            best = (float(scores[i]), d, float(offsets[i]))
    score, normal, offset = best
    along = rel @ normal
    inside = np.abs(along - offset) <= half_width_A
    inplane = rel[inside] - np.outer(along[inside], normal)
    centre = centre0 + normal * offset + inplane.mean(axis=0)
    spread = inplane - inplane.mean(axis=0)
    # principal in-plane directions of the transmembrane residues
    _, _, vt = np.linalg.svd(spread, full_matrices=False)
    a1 = vt[0] - (vt[0] @ normal) * normal
    a1 /= np.linalg.norm(a1)
    a2 = np.cross(normal, a1)
    extent = np.array([np.abs(spread @ a1).max(), np.abs(spread @ a2).max()])
    return MembraneBelt(normal=normal, centre_A=centre, axes=np.stack([a1, a2]), extent_A=extent, score=score)


def micelle_map(st: gemmi.Structure, box: int, pixel_size: float, resolution: float | None = None,
                micelle: MicelleSpec | None = None, belt: MembraneBelt | None = None) -> np.ndarray:
    """Density of a detergent micelle around a membrane protein, on the protein's map grid.

    Parameters
    ----------
    st : gemmi.Structure
        The model in the map's frame: voxel (z, y, x) lies at (x, y, z) x pixel size Å.
    box : int
        Map side, px.
    pixel_size : float
        Å/px.
    resolution : float, optional
        Gaussian low-pass of the protein map, Å; the micelle gets the same (and at least
        ``micelle.edge_A`` of softening).
    micelle : MicelleSpec, optional
        Shape and density (defaults of :class:`MicelleSpec`).
    belt : MembraneBelt, optional
        Where the membrane is; found with :func:`find_membrane_belt` when not given.

    Returns
    -------
    np.ndarray
        float32, shape (box, box, box), indexed [z, y, x]; zero inside the protein and
        outside the micelle. Its mean over the micelle is ``micelle.density`` times the
        protein's mean density (the map's integral over 1.21 Å³ per Da).
    """
    m = micelle or MicelleSpec()
    b = belt or find_membrane_belt(st, half_width_A=m.slab_half_width_A)
    grid = (np.arange(box) * pixel_size)
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    rel = np.stack([x - b.centre_A[0], y - b.centre_A[1], z - b.centre_A[2]], axis=-1)
    a1, a2 = b.extent_A + m.shell_A
    q = ((rel @ b.axes[0]) / a1) ** 2 + ((rel @ b.axes[1]) / a2) ** 2 + ((rel @ b.normal) / m.half_thickness_A) ** 2
    inside = q <= 1.0
    # the protein's envelope at low resolution: detergent fills the space around it, not in it
    mass_da = polymer_mass_kda(st) * 1000.0
    coarse = model_map(st, box, pixel_size, resolution=max(8.0, resolution or 0.0))
    mean_protein = float(coarse.sum()) / (mass_da * VOLUME_PER_DA / pixel_size ** 3)
    envelope = coarse > 0.5 * mean_protein
    shell = (inside & ~envelope).astype(np.float32)
    blur_A = max(m.edge_A, _gaussian_sd_A(resolution))
    out = gaussian_filter(shell, blur_A / pixel_size, mode="constant") * np.float32(m.density * mean_protein)
    return out.astype(np.float32)


def _gaussian_sd_A(resolution: float | None) -> float:
    """Real-space standard deviation (Å) of the Gaussian low-pass B = 4 d² that the maps get."""
    # exp(-B s^2 / 4) = exp(-2 pi^2 sd^2 s^2)  ->  sd = d / (pi sqrt 2)
    return float(resolution / (np.pi * np.sqrt(2.0))) if resolution else 0.0


def micelle_for(entry: AtomicEntry, micelle: bool | MicelleSpec | None) -> MicelleSpec | None:
    """The micelle to add to an entry: None for soluble proteins unless asked for."""
    if isinstance(micelle, MicelleSpec):
        return micelle
    if micelle is None:
        micelle = entry.membrane
    return MicelleSpec() if micelle else None
