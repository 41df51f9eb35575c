"""Pseudo-proteins: atomic models of a target mass built from ideal helices and strands.

A subunit is one chain of folded domains (see :mod:`cryosift.simulate.fold`) arranged
as a compact globule, a rod, or separated lobes (multi-domain). Oligomers place
identical subunits with Cn or Dn point-group symmetry (axis along z, 2-folds of Dn
along x), packed until their CA atoms are about 4 Å apart. Every random choice
comes from one seed, so a seed always gives the same model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import gemmi
import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from cryosift.simulate.fold import Segment, build_domain, join, make_loop
from cryosift.simulate.residues import RESIDUE_MASS, WATER_MASS, mean_residue_mass, residue_frames, side_chain_template

SHAPES = ("globular", "elongated", "multidomain")
_CHAIN_IDS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
CLASH_A = 4.0  # closest CA-CA distance allowed between subunits


@dataclass
class PseudoProtein:
    """A generated model and what is known about it by construction.

    Attributes
    ----------
    structure : gemmi.Structure
        The model, one chain per subunit, centred on its centre of mass (Å).
    residue_domains : np.ndarray
        Domain number (0-based, unique over the assembly) of every residue in the
        structure's chain/residue order, int64, shape (n_residues,).
    domain_names : list of str
        Readable name per domain number, e.g. ``"chain B domain 2"``.
    helix_axes : np.ndarray
        Start and end of every helix axis in Å, shape (n_helices, 2, 3).
    mass_kda : float
        Mass of the protein (residues plus one water per chain), kDa.
    symmetry : str
        Point group, e.g. ``"C1"``, ``"C4"``, ``"D2"``.
    """

    structure: gemmi.Structure
    residue_domains: np.ndarray
    domain_names: list
    helix_axes: np.ndarray
    mass_kda: float
    symmetry: str


def parse_symmetry(symmetry: str) -> tuple[str, int]:
    """Split a point group such as ``"C3"`` or ``"d2"`` into (kind, order); raises ValueError."""
    m = re.fullmatch(r"\s*([CcDd])\s*(\d+)\s*", str(symmetry))
    if not m or int(m[2]) < 1 or (m[1].upper() == "D" and int(m[2]) < 2):
        raise ValueError(f"symmetry must be Cn (n >= 1) or Dn (n >= 2), not {symmetry!r}")
    return m[1].upper(), int(m[2])


def chain_id(k: int) -> str:
    """Chain name of subunit k (A..Z, a..z, 0..9, then two letters)."""
    if k < len(_CHAIN_IDS):
        return _CHAIN_IDS[k]
    return _CHAIN_IDS[k // len(_CHAIN_IDS) - 1] + _CHAIN_IDS[k % len(_CHAIN_IDS)]


def _sized_domain(n_res: int, fold: str, index: int, rng, elongated: bool) -> Segment:
    """A domain within 6 % of ``n_res`` residues when three tries allow, else the closest try."""
    best, target = None, n_res
    for _ in range(3):
        seg = build_domain(max(20, target), fold, index, rng, elongated)
        if best is None or abs(len(seg) - n_res) < abs(len(best) - n_res):
            best = seg
        if abs(len(seg) - n_res) <= 0.06 * n_res:
            break
        target = int(round(target * n_res / len(seg)))
    return best


def _radius(seg: Segment) -> float:
    ca = seg.backbone[:, 1]
    return float(np.sqrt(5.0 / 3.0 * np.mean(np.sum((ca - ca.mean(0)) ** 2, axis=1))))


def _first_free(origin: np.ndarray, u: np.ndarray, centres: np.ndarray, need: np.ndarray) -> float:
    """Smallest t >= 0 with origin + t u at least ``need`` from every centre (ray against spheres)."""
    rel = origin - centres
    b = rel @ u
    disc = b**2 - (np.sum(rel**2, axis=1) - need**2)
    hit = disc > 0
    t1, t2 = (-b - np.sqrt(np.where(hit, disc, 0)))[hit], (-b + np.sqrt(np.where(hit, disc, 0)))[hit]
    t = 0.0
    while True:
        inside = (t1 < t) & (t < t2)
        if not inside.any():
            return t
        t = float(t2[inside].max()) + 1e-6


def _globular_centres(radii, rng) -> np.ndarray:
    """Domain centres packed compactly, each new one as close to the cluster as it fits; shape (k, 3)."""
    centres = [np.zeros(3)]
    for k in range(1, len(radii)):
        c = np.array(centres)
        cen = c.mean(axis=0)
        need = 0.75 * (radii[k] + np.asarray(radii[:k]))
        dirs = rng.normal(size=(24, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        cands = [cen + _first_free(cen, u, c, need) * u for u in dirs]
        score = [np.linalg.norm(p - cen) + 0.3 * np.linalg.norm(p - centres[-1]) for p in cands]
        centres.append(cands[int(np.argmin(score))])
    return np.array(centres)


def _walk(radii, rng, gap=(3.0, 6.0)) -> np.ndarray:
    """Centres of separated lobes along a bent path, consecutive ones ``gap`` Å apart; shape (k, 3)."""
    centres, direction = [np.zeros(3)], np.array([0.0, 0.0, 1.0])
    for k in range(1, len(radii)):
        for _ in range(50):
            turn = Rotation.from_rotvec(rng.normal(size=3) * rng.uniform(0.5, 1.5)).as_matrix()
            u = turn @ direction
            pos = centres[-1] + (radii[k - 1] + radii[k] + rng.uniform(*gap)) * u
            if all(np.linalg.norm(pos - c) >= radii[k] + radii[j] for j, c in enumerate(centres[:-1])):
                break
        centres.append(pos)
        direction = u
    return np.array(centres)


def _rod_centres(radii, rng) -> np.ndarray:
    """Domains stacked in layers along z, about three times longer than wide; shape (k, 3)."""
    n = len(radii)
    layers = min(n, max(1, int(round((9.0 * n) ** (1.0 / 3.0)))))
    per = int(np.ceil(n / layers))
    r = float(np.mean(radii))
    ring = 0.0 if per == 1 else 0.9 * r / np.sin(np.pi / per)
    out = []
    for k in range(n):
        layer, j = divmod(k, per)
        phase = 2 * np.pi * j / per + layer * np.pi / per
        out.append([ring * np.cos(phase), ring * np.sin(phase), 1.8 * r * layer + rng.uniform(-1.0, 1.0)])
    return np.array(out)


def _multidomain_centres(radii, rng) -> np.ndarray:
    """Two to five compact lobes (domains split in chain order) separated by gaps; shape (k, 3)."""
    n = len(radii)
    lobes = np.array_split(np.arange(n), min(n, int(rng.integers(2, 6))))
    local = [_globular_centres([radii[i] for i in idx], rng) for idx in lobes]
    extent = [float(np.max(np.linalg.norm(c - c.mean(0), axis=1) + np.asarray([radii[i] for i in idx])))
              for c, idx in zip(local, lobes)]
    where = _walk(extent, rng, gap=(4.0, 10.0))
    return np.concatenate([c - c.mean(0) + w for c, w in zip(local, where)])


def build_subunit(n_res: int, shape: str, rng: np.random.Generator) -> Segment:
    """One chain of about ``n_res`` residues in the given shape, centred on its CA centroid."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    elongated = shape == "elongated"
    size = 130.0 if elongated else rng.uniform(100.0, 160.0)
    n_dom = max(2 if shape == "multidomain" and n_res >= 80 else 1, int(round(n_res / size)))
    sizes = rng.dirichlet(np.full(n_dom, 8.0)) * (n_res - 8 * (n_dom - 1))
    domains = []
    for d, s in enumerate(np.maximum(sizes, 30.0)):
        fold = "alpha" if elongated or s < 60 else str(rng.choice(["alpha", "beta", "alpha_beta"], p=[0.4, 0.2, 0.4]))
        domains.append(_sized_domain(int(round(s)), fold, d, rng, elongated))
    radii = [_radius(seg) for seg in domains]
    place = {"globular": _globular_centres, "elongated": _rod_centres, "multidomain": _multidomain_centres}[shape]
    centres = place(radii, rng)
    placed = []
    for seg, c in zip(domains, centres):
        if elongated:
            rot = Rotation.from_rotvec([0.0, 0.0, rng.uniform(0, 2 * np.pi)]).as_matrix()
        else:
            rot = Rotation.random(random_state=rng).as_matrix()
        placed.append(seg.moved(rot, c))
    middle = centres.mean(axis=0)
    chain = [placed[0]]
    for d, nxt in enumerate(placed[1:], start=1):
        chain.append(make_loop(chain[-1].backbone, nxt.backbone, middle, d, rng))
        chain.append(nxt)
    sub = join(chain)
    return sub.moved(np.eye(3), -sub.backbone[:, 1].mean(axis=0))


def _ring(kind: str, n: int, radius: float, height: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rotation, shift) per subunit: x -> rot @ x + shift, for subunits centred on the origin."""
    ops = []
    flips = [np.eye(3)] if kind == "C" else [np.eye(3), np.diag([1.0, -1.0, -1.0])]
    for flip in flips:
        for k in range(n):
            rz = Rotation.from_rotvec([0.0, 0.0, 2 * np.pi * k / n]).as_matrix()
            ops.append((flip @ rz, flip @ rz @ np.array([radius, 0.0, height])))
    return ops


def _clashes(ca: np.ndarray, ops) -> bool:
    first = cKDTree(ca @ ops[0][0].T + ops[0][1])
    others = np.concatenate([ca @ r.T + s for r, s in ops[1:]])
    return bool(first.query_ball_point(others, CLASH_A, return_length=True).sum())


def symmetry_operators(ca: np.ndarray, kind: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rotation, shift) per subunit packing copies with Cn or Dn symmetry as tightly as CA contacts allow.

    Parameters
    ----------
    ca : np.ndarray
        CA positions of the subunit, centred on the origin, Å, shape (m, 3).
    kind : {"C", "D"}
    n : int
        Order of the symmetry axis.
    """
    if kind == "C" and n == 1:
        return [(np.eye(3), np.zeros(3))]
    reach = float(np.max(np.linalg.norm(ca, axis=1)))
    radius = 0.0
    if n > 1:
        radius = reach / np.sin(np.pi / n) + CLASH_A
        while radius > 0 and not _clashes(ca, _ring("C", n, radius - 1.0, 0.0)):
            radius -= 1.0
    height = 0.0
    if kind == "D":
        height = reach + CLASH_A
        while height > 0 and not _clashes(ca, _ring("D", n, radius, height - 1.0)):
            height -= 1.0
    return _ring(kind, n, radius, height)


def _atoms(sub: Segment) -> dict:
    """All atoms of a subunit: positions (a, 3) Å, names, elements, residue index, B-factors."""
    frames = residue_frames(sub.backbone[:, 0], sub.backbone[:, 1], sub.backbone[:, 2])
    pos, names, elements, res, bfac = [], [], [], [], []
    for i, (resname, chi1) in enumerate(zip(sub.resnames, sub.chi1)):
        sc_names, sc_el, local = side_chain_template(resname, float(chi1))
        loop = sub.sse[i] == "L"
        pos.append(sub.backbone[i])
        pos.append(sub.backbone[i, 1] + local @ frames[i].T)
        names += ["N", "CA", "C", "O", *sc_names]
        elements += ["N", "C", "C", "O", *sc_el]
        res += [i] * (4 + len(sc_names))
        bfac += [35.0 if loop else 20.0] * 4 + [45.0 if loop else 30.0] * len(sc_names)
    return {"pos": np.concatenate(pos), "names": names, "elements": elements,
            "res": np.array(res), "b": np.array(bfac)}


def _structure(sub: Segment, atoms: dict, ops) -> gemmi.Structure:
    model = gemmi.Model("1")
    elements = {e: gemmi.Element(e) for e in set(atoms["elements"])}
    starts = np.searchsorted(atoms["res"], np.arange(len(sub) + 1))
    for k, (rot, shift) in enumerate(ops):
        chain = gemmi.Chain(chain_id(k))
        xyz = atoms["pos"] @ rot.T + shift
        for i in range(len(sub)):
            residue = gemmi.Residue()
            residue.name = sub.resnames[i]
            residue.seqid = gemmi.SeqId(i + 1, " ")
            residue.entity_type = gemmi.EntityType.Polymer
            for a in range(starts[i], starts[i + 1]):
                atom = gemmi.Atom()
                atom.name = atoms["names"][a]
                atom.element = elements[atoms["elements"][a]]
                atom.pos = gemmi.Position(*xyz[a])
                atom.b_iso = atoms["b"][a]
                atom.occ = 1.0
                residue.add_atom(atom)
            chain.add_residue(residue)
        model.add_chain(chain)
    st = gemmi.Structure()
    st.name = "pseudoprotein"
    st.add_model(model)
    st.setup_entities()
    return st


def build_pseudoprotein(mass_kda: float, shape: str = "globular", symmetry: str = "C1", seed: int = 0) -> PseudoProtein:
    """Build a pseudo-protein atomic model of about the given mass.

    Parameters
    ----------
    mass_kda : float
        Target mass of the whole particle in kDa (20 kDa to several MDa).
    shape : {"globular", "elongated", "multidomain"}
        Arrangement of the domains of each subunit.
    symmetry : str
        ``"C1"`` (monomer), ``"Cn"`` rings or ``"Dn"`` double rings of identical subunits.
    seed : int
        Seed of every random choice.

    Returns
    -------
    PseudoProtein
    """
    kind, n = parse_symmetry(symmetry)
    copies = n * (2 if kind == "D" else 1)
    if not 1.0 <= mass_kda / copies:
        raise ValueError(f"{mass_kda} kDa is too small for {copies} subunits")
    rng = np.random.default_rng(seed)
    residue_mass = 0.8 * mean_residue_mass() + 0.2 * mean_residue_mass(loop=True)  # about a fifth is loops
    n_res = max(20, int(round(mass_kda * 1000.0 / copies / residue_mass)))
    sub = build_subunit(n_res, shape, rng)
    sub = sub.moved(Rotation.random(random_state=rng).as_matrix() if copies > 1 else np.eye(3), np.zeros(3))
    atoms = _atoms(sub)
    ops = symmetry_operators(sub.backbone[:, 1], kind, n)
    st = _structure(sub, atoms, ops)
    com = st[0].calculate_center_of_mass()
    st[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(-com.x, -com.y, -com.z)))
    offset = np.array([com.x, com.y, com.z])
    n_dom = int(sub.domain.max()) + 1
    domains = np.concatenate([sub.domain + k * n_dom for k in range(len(ops))])
    names = [f"chain {chain_id(k)} domain {d + 1}" for k in range(len(ops)) for d in range(n_dom)]
    axes = (np.concatenate([sub.helix_axes @ r.T + s - offset for r, s in ops]) if len(sub.helix_axes)
            else np.zeros((0, 2, 3)))
    mass = len(ops) * (sum(RESIDUE_MASS[r] for r in sub.resnames) + WATER_MASS) / 1000.0
    return PseudoProtein(st, domains, names, axes, float(mass), f"{kind}{n}")
