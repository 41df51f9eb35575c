"""Ideal residue geometry for pseudo-proteins: backbone screws, side chains, residue masses.

Backbone atoms of secondary structure elements come from ideal screws: an alpha-helix
rises 1.5 Å and turns 100 degrees per residue (3.6 residues per turn, CA radius 2.3 Å);
a beta-strand follows phi/psi = -120/130 degrees (about 3.4 Å per residue). Side chains
are built from standard bond lengths, angles and chi angles, L-amino acids only.
Coordinates are in Å.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial.transform import Rotation

#: Ideal helix: rise (Å) and twist (degrees) per residue.
HELIX_RISE, HELIX_TWIST = 1.5, 100.0
#: phi/psi (degrees) that seed the helix and strand templates.
HELIX_PHI_PSI = (-57.8, -47.0)
STRAND_PHI_PSI = (-120.0, 130.0)

#: Residue masses in a chain (Da, average isotopes, water of condensation removed).
RESIDUE_MASS = {
    "GLY": 57.0519, "ALA": 71.0788, "SER": 87.0782, "VAL": 99.1326, "THR": 101.1051,
    "LEU": 113.1594, "ILE": 113.1594, "ASN": 114.1038, "ASP": 115.0886, "GLN": 128.1307,
    "LYS": 128.1741, "GLU": 129.1155, "ARG": 156.1875, "PHE": 147.1766,
}
WATER_MASS = 18.0153

#: Composition of SSE residues (natural abundance, rarer types folded into similar ones).
SSE_COMPOSITION = {
    "LEU": 12.1, "ALA": 13.0, "GLY": 4.0, "VAL": 6.9, "GLU": 6.8, "SER": 8.0, "ILE": 6.0, "LYS": 5.8,
    "ARG": 5.5, "ASP": 5.5, "THR": 5.3, "ASN": 6.4, "GLN": 3.9, "PHE": 7.9,
}
#: Composition of loop residues (small and polar).
LOOP_COMPOSITION = {"GLY": 25.0, "SER": 20.0, "ASN": 15.0, "ASP": 15.0, "THR": 10.0, "LYS": 15.0}

# Side-chain atoms after CB: (name, element, reference atoms a-b-c, bond Å, angle b-c-new deg,
# (chi index or None, torsion offset deg)); the new atom's torsion is a-b-c-new.
_SIDE = {
    "GLY": [], "ALA": [],
    "SER": [("OG", "O", ("N", "CA", "CB"), 1.417, 110.8, (0, 0.0))],
    "VAL": [("CG1", "C", ("N", "CA", "CB"), 1.527, 110.7, (0, 0.0)),
            ("CG2", "C", ("N", "CA", "CB"), 1.527, 110.4, (0, 120.0))],
    "THR": [("OG1", "O", ("N", "CA", "CB"), 1.433, 109.2, (0, 0.0)),
            ("CG2", "C", ("N", "CA", "CB"), 1.521, 111.1, (0, -120.0))],
    "LEU": [("CG", "C", ("N", "CA", "CB"), 1.530, 116.1, (0, 0.0)),
            ("CD1", "C", ("CA", "CB", "CG"), 1.524, 110.3, (1, 0.0)),
            ("CD2", "C", ("CA", "CB", "CG"), 1.525, 110.6, (1, 120.0))],
    "ILE": [("CG1", "C", ("N", "CA", "CB"), 1.532, 110.4, (0, 0.0)),
            ("CG2", "C", ("N", "CA", "CB"), 1.527, 110.5, (0, -120.0)),
            ("CD1", "C", ("CA", "CB", "CG1"), 1.516, 114.0, (1, 0.0))],
    "ASP": [("CG", "C", ("N", "CA", "CB"), 1.520, 113.0, (0, 0.0)),
            ("OD1", "O", ("CA", "CB", "CG"), 1.250, 119.2, (1, 0.0)),
            ("OD2", "O", ("CA", "CB", "CG"), 1.250, 118.2, (1, 180.0))],
    "ASN": [("CG", "C", ("N", "CA", "CB"), 1.520, 112.6, (0, 0.0)),
            ("OD1", "O", ("CA", "CB", "CG"), 1.230, 120.8, (1, 0.0)),
            ("ND2", "N", ("CA", "CB", "CG"), 1.330, 116.4, (1, 180.0))],
    "GLU": [("CG", "C", ("N", "CA", "CB"), 1.520, 114.0, (0, 0.0)),
            ("CD", "C", ("CA", "CB", "CG"), 1.520, 113.0, (1, 0.0)),
            ("OE1", "O", ("CB", "CG", "CD"), 1.250, 119.0, (2, 0.0)),
            ("OE2", "O", ("CB", "CG", "CD"), 1.250, 118.0, (2, 180.0))],
    "GLN": [("CG", "C", ("N", "CA", "CB"), 1.520, 114.0, (0, 0.0)),
            ("CD", "C", ("CA", "CB", "CG"), 1.520, 112.8, (1, 0.0)),
            ("OE1", "O", ("CB", "CG", "CD"), 1.230, 120.9, (2, 0.0)),
            ("NE2", "N", ("CB", "CG", "CD"), 1.330, 116.5, (2, 180.0))],
    "LYS": [("CG", "C", ("N", "CA", "CB"), 1.520, 114.0, (0, 0.0)),
            ("CD", "C", ("CA", "CB", "CG"), 1.520, 111.5, (1, 0.0)),
            ("CE", "C", ("CB", "CG", "CD"), 1.520, 111.5, (2, 0.0)),
            ("NZ", "N", ("CG", "CD", "CE"), 1.490, 111.7, (3, 0.0))],
    "ARG": [("CG", "C", ("N", "CA", "CB"), 1.520, 114.0, (0, 0.0)),
            ("CD", "C", ("CA", "CB", "CG"), 1.520, 111.5, (1, 0.0)),
            ("NE", "N", ("CB", "CG", "CD"), 1.460, 112.0, (2, 0.0)),
            ("CZ", "C", ("CG", "CD", "NE"), 1.330, 124.5, (3, 0.0)),
            ("NH1", "N", ("CD", "NE", "CZ"), 1.330, 120.0, (None, 0.0)),
            ("NH2", "N", ("CD", "NE", "CZ"), 1.330, 120.0, (None, 180.0))],
    "PHE": [("CG", "C", ("N", "CA", "CB"), 1.500, 113.8, (0, 0.0)),
            ("CD1", "C", ("CA", "CB", "CG"), 1.390, 120.8, (1, 0.0)),
            ("CD2", "C", ("CA", "CB", "CG"), 1.390, 120.8, (1, 180.0)),
            ("CE1", "C", ("CB", "CG", "CD1"), 1.390, 120.7, (None, 180.0)),
            ("CE2", "C", ("CB", "CG", "CD2"), 1.390, 120.7, (None, 180.0)),
            ("CZ", "C", ("CG", "CD1", "CE1"), 1.390, 120.0, (None, 0.0))],
}
#: chi1 rotamers (degrees) and their frequencies; further chis are staggered (180) or planar.
CHI1_CHOICES = np.array([-65.0, 180.0, 60.0])
CHI1_WEIGHTS = np.array([0.55, 0.33, 0.12])
_CHI_REST = {"PHE": (90.0,), "ASP": (0.0,), "ASN": (0.0,), "GLU": (180.0, 0.0), "GLN": (180.0, 0.0)}


def place_atom(a, b, c, bond: float, angle: float, torsion) -> np.ndarray:
    """Position of atom d from a-b-c with |cd| = bond (Å), angle b-c-d and torsion a-b-c-d (degrees).

    Parameters
    ----------
    a, b, c : np.ndarray
        Shape (..., 3), Å.
    torsion : float or np.ndarray
        Degrees, broadcastable to (...,).

    Returns
    -------
    np.ndarray
        Shape (..., 3), Å.
    """
    bc = c - b
    bc = bc / np.linalg.norm(bc, axis=-1, keepdims=True)
    n = np.cross(b - a, bc)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    m = np.cross(n, bc)
    ang, tor = np.radians(angle), np.radians(np.asarray(torsion, dtype=float))[..., None]
    return (c - bond * np.cos(ang) * bc + bond * np.sin(ang) * np.cos(tor) * m
            + bond * np.sin(ang) * np.sin(tor) * n)


def ideal_cb(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> np.ndarray:
    """CB of L-amino acids from backbone N, CA, C (each shape (..., 3), Å)."""
    b = ca - n
    cc = c - ca
    a = np.cross(b, cc)
    return -0.58273431 * a + 0.56802827 * b - 0.54067466 * cc + ca


def _chain_backbone(phi: float, psi: float, length: int) -> np.ndarray:
    """Backbone N, CA, C, O of a chain with constant phi/psi, trans peptides; shape (length, 4, 3)."""
    n0 = np.array([0.0, 1.458, 0.0])
    ca0 = np.zeros(3)
    ang = np.radians(111.2)
    c0 = np.array([1.525 * np.sin(ang), 1.525 * np.cos(ang), 0.0])
    atoms = [n0, ca0, c0]
    for _ in range(length):
        n = place_atom(atoms[-3], atoms[-2], atoms[-1], 1.329, 116.2, psi)
        ca = place_atom(atoms[-2], atoms[-1], n, 1.458, 121.7, 180.0)
        c = place_atom(atoms[-1], n, ca, 1.525, 111.2, phi)
        atoms += [n, ca, c]
    bb = np.array(atoms).reshape(length + 1, 3, 3)
    # O lies in the peptide plane, trans to the next N.
    o = place_atom(bb[1:, 0], bb[:-1, 1], bb[:-1, 2], 1.231, 120.5, 180.0)
    return np.concatenate([bb[:-1], o[:, None]], axis=1)


def residue_frames(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Local frame per residue: columns e1 (CA->C), e2, e3 (normal); shape (..., 3, 3)."""
    e1 = c - ca
    e1 = e1 / np.linalg.norm(e1, axis=-1, keepdims=True)
    e3 = np.cross(e1, n - ca)
    e3 = e3 / np.linalg.norm(e3, axis=-1, keepdims=True)
    e2 = np.cross(e3, e1)
    return np.stack([e1, e2, e3], axis=-1)


@lru_cache(maxsize=None)
def _screw(kind: str) -> tuple[np.ndarray, float, float]:
    """Cylindrical template (r, phi rad, z Å) of N, CA, C, O and the screw twist (rad) and rise (Å)."""
    phi, psi = HELIX_PHI_PSI if kind == "helix" else STRAND_PHI_PSI
    bb = _chain_backbone(phi, psi, 8)
    f0, f1 = residue_frames(bb[3, 0], bb[3, 1], bb[3, 2]), residue_frames(bb[4, 0], bb[4, 1], bb[4, 2])
    rot = f1 @ f0.T
    t = bb[4, 1] - rot @ bb[3, 1]
    rv = Rotation.from_matrix(rot).as_rotvec()
    twist = float(np.linalg.norm(rv))
    axis = rv / twist
    rise = float(t @ axis)
    if rise < 0:
        axis, twist, rise = -axis, -twist, -rise
    # A point on the screw axis: (I - R) p = t - rise * axis (least squares).
    p = np.linalg.lstsq(np.eye(3) - rot, t - rise * axis, rcond=None)[0]
    # Frame with z along the axis and x through residue 3's CA.
    rel = bb[3] - p
    x = rel[1] - (rel[1] @ axis) * axis
    x /= np.linalg.norm(x)
    frame = np.stack([x, np.cross(axis, x), axis])
    local = rel @ frame.T
    cyl = np.stack([np.hypot(local[:, 0], local[:, 1]), np.arctan2(local[:, 1], local[:, 0]), local[:, 2]], axis=1)
    if kind == "helix":
        twist, rise = np.radians(HELIX_TWIST), HELIX_RISE
    return cyl, twist, rise


def sse_backbone(kind: str, length: int) -> np.ndarray:
    """Backbone of an ideal helix or strand along +z, centred on the origin.

    Parameters
    ----------
    kind : {"helix", "strand"}
    length : int
        Residues.

    Returns
    -------
    np.ndarray
        N, CA, C, O positions in Å, float64, shape (length, 4, 3).
    """
    cyl, twist, rise = _screw(kind)
    i = np.arange(length)[:, None]
    ang = cyl[None, :, 1] + i * twist
    z = cyl[None, :, 2] + i * rise
    out = np.stack([cyl[None, :, 0] * np.cos(ang), cyl[None, :, 0] * np.sin(ang), z], axis=-1)
    out[..., 2] -= (length - 1) * rise / 2
    return out


@lru_cache(maxsize=None)
def side_chain_template(resname: str, chi1: float) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """Side-chain atoms (CB onward) in the residue frame of :func:`residue_frames`.

    Returns
    -------
    names, elements : tuple of str
    local : np.ndarray
        Shape (m, 3), Å, relative to CA in the (e1, e2, e3) frame.
    """
    if resname == "GLY":
        return (), (), np.zeros((0, 3))
    bb = _chain_backbone(*HELIX_PHI_PSI, 1)[0]
    atoms = {"N": bb[0], "CA": bb[1], "C": bb[2], "CB": ideal_cb(bb[0], bb[1], bb[2])}
    names, elements = ["CB"], ["C"]
    chis = (chi1, 180.0, 180.0, 180.0)
    rest = _CHI_REST.get(resname, ())
    chis = (chi1, *rest, *chis[1 + len(rest):])
    for name, element, (a, b, c), bond, angle, (chi, offset) in _SIDE[resname]:
        torsion = (chis[chi] if chi is not None else 0.0) + offset
        atoms[name] = place_atom(atoms[a], atoms[b], atoms[c], bond, angle, torsion)
        names.append(name)
        elements.append(element)
    frame = residue_frames(atoms["N"], atoms["CA"], atoms["C"])
    local = (np.array([atoms[n] for n in names]) - atoms["CA"]) @ frame
    return tuple(names), tuple(elements), local


def draw_residues(rng: np.random.Generator, n: int, loop: bool = False) -> np.ndarray:
    """Residue names drawn from the SSE or loop composition, object array shape (n,)."""
    comp = LOOP_COMPOSITION if loop else SSE_COMPOSITION
    names = np.array(list(comp), dtype=object)
    p = np.array(list(comp.values()))
    return names[rng.choice(len(names), size=n, p=p / p.sum())]


def draw_chi1(rng: np.random.Generator, n: int) -> np.ndarray:
    """chi1 angles (degrees) from the rotamer frequencies, shape (n,)."""
    return CHI1_CHOICES[rng.choice(3, size=n, p=CHI1_WEIGHTS)]


def mean_residue_mass(loop: bool = False) -> float:
    """Expected residue mass (Da) of the SSE or loop composition."""
    comp = LOOP_COMPOSITION if loop else SSE_COMPOSITION
    total = sum(comp.values())
    return sum(RESIDUE_MASS[k] * w for k, w in comp.items()) / total
