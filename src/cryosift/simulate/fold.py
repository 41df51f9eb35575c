"""Folded domains for pseudo-proteins: ideal helices and strands packed in layers, joined by loops.

A domain is a set of straight secondary structure elements (SSEs) running up and down
the z axis, packed as real proteins pack them: helices 10 Å apart (all-alpha bundles),
strands 4.8 Å apart in sheets 10 Å apart (beta sandwiches), or a parallel sheet flanked
by helix layers 10 Å away (alpha/beta, Rossmann-like). Loops are smooth CA traces
(3.8 Å steps) bulging away from the domain centre. Coordinates are in Å.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from cryosift.simulate.residues import draw_chi1, draw_residues, ideal_cb, sse_backbone

HELIX_SPACING = 10.0  # Å between packed helix axes
STRAND_SPACING = 4.8  # Å between strands of a sheet
LAYER_SPACING = 10.0  # Å between sheet and helix layers
CA_STEP = 3.8  # Å between consecutive CAs


@dataclass
class Segment:
    """A stretch of chain with its backbone, residue names and labels.

    Attributes
    ----------
    backbone : np.ndarray
        N, CA, C, O positions in Å, shape (L, 4, 3).
    resnames : np.ndarray
        Object array, shape (L,).
    chi1 : np.ndarray
        Degrees, shape (L,).
    sse : np.ndarray
        'H' helix, 'E' strand, 'L' loop; shape (L,).
    domain : np.ndarray
        Domain index per residue, int64, shape (L,).
    helix_axes : np.ndarray
        End points of each helix axis, Å, shape (k, 2, 3).
    """

    backbone: np.ndarray
    resnames: np.ndarray
    chi1: np.ndarray
    sse: np.ndarray
    domain: np.ndarray
    helix_axes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3)))

    def __len__(self) -> int:
        return len(self.resnames)

    def moved(self, rotation: np.ndarray, shift) -> "Segment":
        """The segment rotated by ``rotation`` (3, 3) about the origin, then shifted by ``shift`` (Å)."""
        shift = np.asarray(shift, dtype=float)
        return Segment(self.backbone @ rotation.T + shift, self.resnames, self.chi1, self.sse, self.domain,
                       self.helix_axes @ rotation.T + shift)


def join(segments: list[Segment]) -> Segment:
    """Concatenate segments in chain order."""
    return Segment(
        np.concatenate([s.backbone for s in segments]), np.concatenate([s.resnames for s in segments]),
        np.concatenate([s.chi1 for s in segments]), np.concatenate([s.sse for s in segments]),
        np.concatenate([s.domain for s in segments]), np.concatenate([s.helix_axes for s in segments]),
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _perpendicular(v: np.ndarray) -> np.ndarray:
    trial = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    return _unit(np.cross(v, trial))


def _bezier_arc(start, end, control) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 1.0, 65)[:, None]
    curve = (1 - t) ** 2 * start + 2 * t * (1 - t) * control + t**2 * end
    return curve, np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])


def loop_trace(start: np.ndarray, end: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """CA positions strictly between two CAs along a curve bulging towards ``outward``.

    The bulge is chosen so that consecutive CAs are 3.8 Å apart.

    Returns
    -------
    np.ndarray
        Shape (m, 3), Å, m >= 1.
    """
    gap = float(np.linalg.norm(end - start))
    m = max(1, int(np.ceil(gap / CA_STEP)) - 1)
    want = (m + 1) * CA_STEP
    mid = 0.5 * (start + end)
    lo, hi = 0.0, want
    for _ in range(30):  # arc length grows with the bulge: bisect for the wanted length
        bulge = 0.5 * (lo + hi)
        _, arc = _bezier_arc(start, end, mid + bulge * outward)
        lo, hi = (bulge, hi) if arc[-1] < want else (lo, bulge)
    curve, arc = _bezier_arc(start, end, mid + bulge * outward)
    targets = arc[-1] * np.arange(1, m + 1) / (m + 1)
    return np.stack([np.interp(targets, arc, curve[:, k]) for k in range(3)], axis=1)


def loop_backbone(ca: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Approximate N, C, O around loop CAs (shape (m, 3)) from their neighbours' CAs.

    Returns
    -------
    np.ndarray
        Shape (m, 4, 3): N, CA, C, O in Å.
    """
    trace = np.concatenate([before[None], ca, after[None]])
    u_prev = _unit(trace[1:-1] - trace[:-2])
    u_next = _unit(trace[2:] - trace[1:-1])
    bend = u_prev - u_next
    norm = np.linalg.norm(bend, axis=1, keepdims=True)
    n_hat = bend / np.maximum(norm, 1e-9)
    for i in np.flatnonzero(norm[:, 0] <= 0.1):  # straight trace: any perpendicular will do
        n_hat[i] = _perpendicular(u_next[i])
    n = ca - 1.40 * u_prev + 0.45 * n_hat
    c = ca + 1.45 * u_next + 0.45 * n_hat
    o_dir = _unit(n_hat - (n_hat * u_next).sum(1, keepdims=True) * u_next)
    o = c + 1.23 * o_dir
    return np.stack([n, ca, c, o], axis=1)


def make_loop(prev_bb: np.ndarray, next_bb: np.ndarray, centre: np.ndarray, domain: int,
              rng: np.random.Generator) -> Segment:
    """A loop joining the last residue of ``prev_bb`` to the first of ``next_bb`` (backbones (L, 4, 3))."""
    start, end = prev_bb[-1, 1], next_bb[0, 1]
    mid = 0.5 * (start + end)
    out = mid - centre
    out = _unit(out) if np.linalg.norm(out) > 1e-6 else _perpendicular(_unit(end - start))
    ca = loop_trace(start, end, out)
    bb = loop_backbone(ca, start, end)
    m = len(ca)
    return Segment(bb, draw_residues(rng, m, loop=True), draw_chi1(rng, m), np.full(m, "L", dtype=object),
                   np.full(m, domain, dtype=np.int64))


def _hex_spiral(n: int, spacing: float) -> np.ndarray:
    """The n hexagonal-lattice points nearest the origin, ring by ring, in angular order; shape (n, 2)."""
    k = int(np.ceil(np.sqrt(n))) + 2
    i, j = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
    i, j = i.ravel(), j.ravel()
    ring = (np.abs(i) + np.abs(j) + np.abs(i + j)) // 2
    xy = np.stack([i + 0.5 * j, j * np.sqrt(3) / 2], axis=1) * spacing
    ang = np.mod(np.arctan2(xy[:, 1], xy[:, 0]), 2 * np.pi)
    order = np.lexsort((ang, ring))
    return xy[order[:n]]


def _plan_rods(fold: str, n_res: int, rng: np.random.Generator, elongated: bool) -> list[tuple]:
    """SSE plan of one domain: (kind, length, x, y, direction) in chain order."""
    rods: list[tuple] = []
    total = 0
    if fold == "alpha":
        lo, hi = (24, 40) if elongated else (12, 22)
        max_rods = 7 if elongated else 64
        spots = _hex_spiral(max_rods, HELIX_SPACING)
        while total < n_res and len(rods) < max_rods:
            length = int(rng.integers(lo, hi + 1))
            if rods and total + length + 4 - n_res > n_res - total:
                break  # one more helix would overshoot more than stopping undershoots
            x, y = spots[len(rods)]
            rods.append(("helix", length, x, y, 1 if len(rods) % 2 == 0 else -1))
            total += length + 4
    elif fold == "beta":
        # Sandwiches of sheets of at most six strands, 10 Å apart.
        length = int(rng.integers(6, 10))
        n_strands = max(4, int(round(n_res / (length + 1.6))))
        n_sheets = max(2, int(np.ceil(n_strands / 6)))
        per_sheet = int(np.ceil(n_strands / n_sheets))
        ys = (np.arange(per_sheet) - (per_sheet - 1) / 2) * STRAND_SPACING
        for s in range(n_strands):
            sheet, j = divmod(s, per_sheet)
            y = ys[j] if sheet % 2 == 0 else ys[per_sheet - 1 - j]
            rods.append(("strand", length + int(rng.integers(-1, 2)), LAYER_SPACING * (sheet - (n_sheets - 1) / 2), y,
                         1 if s % 2 == 0 else -1))
    else:  # alpha/beta: parallel strands in a central sheet, helices on both faces
        n_pairs = max(2, int(round(n_res / 26.0)))
        strand_slots = [0]
        for k in range(1, n_pairs):
            strand_slots.append((k + 1) // 2 * (1 if k % 2 else -1))
        taken: dict[int, set] = {1: set(), -1: set()}
        for k, slot in enumerate(strand_slots):
            ys = slot * STRAND_SPACING
            rods.append(("strand", int(rng.integers(5, 8)), 0.0, ys, 1))
            side = 1 if k % 2 == 0 else -1
            want = int(round(ys / HELIX_SPACING))
            free = min((c for c in range(want - 30, want + 31) if c not in taken[side]), key=lambda c: abs(c - want))
            taken[side].add(free)
            rods.append(("helix", int(rng.integers(11, 17)), side * LAYER_SPACING, free * HELIX_SPACING, -1))
    return rods


def build_domain(n_res: int, fold: str, domain: int, rng: np.random.Generator, elongated: bool = False) -> Segment:
    """One domain of about ``n_res`` residues, centred on the origin, SSEs along z.

    Parameters
    ----------
    n_res : int
        Target residues (SSEs and loops).
    fold : {"alpha", "beta", "alpha_beta"}
    domain : int
        Domain index stored on every residue.
    rng : np.random.Generator
    elongated : bool
        Few long helices (a rod-shaped helical bundle) instead of a compact domain.
    """
    rods = _plan_rods(fold, n_res, rng, elongated)
    pieces: list[Segment] = []
    for kind, length, x, y, direction in rods:
        bb = sse_backbone(kind, length)
        if kind == "strand":
            # Turn the pleat so side chains point out of the sheet (along x).
            cb = ideal_cb(bb[0, 0], bb[0, 1], bb[0, 2]) - bb[0, 1]
            spin = -np.arctan2(cb[1], cb[0])
        else:
            spin = rng.uniform(0, 2 * np.pi)
        rot = Rotation.from_rotvec([0.0, 0.0, spin]).as_matrix()
        if direction < 0:
            rot = Rotation.from_rotvec([np.pi, 0.0, 0.0]).as_matrix() @ rot
        shift = np.array([x, y, rng.uniform(-1.5, 1.5)])
        half = (length - 1) * (1.5 if kind == "helix" else 3.37) / 2
        axis = np.array([[0.0, 0.0, -half], [0.0, 0.0, half]])
        seg = Segment(bb, draw_residues(rng, length), draw_chi1(rng, length),
                      np.full(length, "H" if kind == "helix" else "E", dtype=object),
                      np.full(length, domain, dtype=np.int64),
                      axis[None] if kind == "helix" else np.zeros((0, 2, 3)))
        pieces.append(seg.moved(rot, shift))
    centre = np.mean([p.backbone[:, 1].mean(axis=0) for p in pieces], axis=0)
    chain: list[Segment] = [pieces[0]]
    for nxt in pieces[1:]:
        chain.append(make_loop(chain[-1].backbone, nxt.backbone, centre, domain, rng))
        chain.append(nxt)
    seg = join(chain)
    return seg.moved(np.eye(3), -seg.backbone[:, 1].mean(axis=0))
