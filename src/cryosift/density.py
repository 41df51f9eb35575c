"""Density maps from atomic models with gemmi's electron-scattering calculator.

Used by the simulator (true maps) and by validation (model maps on a reconstruction's grid).
"""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

from cryosift.errors import InputError, require_file


def read_model(path: str | Path) -> gemmi.Structure:
    """Read a PDB or mmCIF model (first model used downstream), hydrogens removed."""
    p = require_file(path)
    try:
        st = gemmi.read_structure(str(p))
    except (RuntimeError, ValueError) as exc:
        raise InputError(p, f"not a readable PDB/mmCIF model ({exc})") from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(p, "model has no atoms")
    st.remove_hydrogens()
    st.remove_empty_chains()
    return st


def model_coordinates(structure: gemmi.Structure) -> np.ndarray:
    """Atom positions of the first model in Å, float64, shape (n_atoms, 3) as (x, y, z)."""
    return np.array([[a.pos.x, a.pos.y, a.pos.z] for ch in structure[0] for r in ch for a in r])


def model_map(structure: gemmi.Structure, box: int, pixel_size: float, resolution: float | None = None,
              origin_A=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Electron-scattering density of a model sampled on a cubic grid.

    Voxel (z, y, x) sits at origin_A + (x, y, z) * pixel_size in the model's frame, so
    a map written with the same origin overlays the model.

    Parameters
    ----------
    structure : gemmi.Structure
        The model (first model used; hydrogens should be removed).
    box : int
        Grid side in voxels.
    pixel_size : float
        Voxel size in Å.
    resolution : float, optional
        Gaussian low-pass to this resolution in Å (blur B = 4 d^2, as molmap/e2pdb2mrc);
        none by default.
    origin_A : sequence of 3 floats
        Position (x, y, z) in Å of voxel (0, 0, 0).

    Returns
    -------
    np.ndarray
        float32, shape (box, box, box), indexed [z, y, x].
    """
    st = structure.clone()
    shift = gemmi.Position(*(-float(v) for v in origin_A))
    st[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(shift.x, shift.y, shift.z)))
    edge = box * pixel_size
    st.cell = gemmi.UnitCell(edge, edge, edge, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    dc = gemmi.DensityCalculatorE()
    dc.d_min = 0.0
    dc.grid.set_unit_cell(st.cell)
    dc.grid.spacegroup = gemmi.find_spacegroup_by_name("P 1")
    dc.grid.set_size(box, box, box)
    dc.blur = 4.0 * resolution**2 if resolution else 0.0
    dc.put_model_density_on_grid(st[0])
    return np.ascontiguousarray(np.array(dc.grid, copy=True).transpose(2, 1, 0), dtype=np.float32)


def centring_origin(structure: gemmi.Structure, box: int, pixel_size: float) -> np.ndarray:
    """Origin (x, y, z) in Å that puts the model's centre of mass at voxel box // 2."""
    com = model_coordinates(structure).mean(axis=0)
    return com - (box // 2) * pixel_size
