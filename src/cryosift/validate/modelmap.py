"""Maps and models on a reconstruction's grid: header origins, model maps, moved models."""

from __future__ import annotations

import warnings
from pathlib import Path

import gemmi
import mrcfile
import numpy as np

from cryosift.density import centring_origin, model_coordinates, model_map
from cryosift.io.atomic import atomic_path
from cryosift.io.mrc import read_map

#: The paper's model maps are low-passed to 8 Å (Gaussian, blur B = 4 d^2).
MODEL_MAP_RESOLUTION_A = 8.0


def read_map_with_origin(path: str | Path) -> tuple[np.ndarray, float, np.ndarray]:
    """Read a cubic map with its voxel size and header origin.

    The origin is the MRC header's ``origin`` (Å); when that is zero and the start
    indices (nxstart, nystart, nzstart) are not, the origin is start x voxel size, as
    ChimeraX reads such files.

    Returns
    -------
    volume : np.ndarray
        float32, shape (n, n, n), indexed [z, y, x].
    pixel_size : float
        Voxel size in Å.
    origin_A : np.ndarray
        float64, (x, y, z) position in Å of voxel (0, 0, 0).
    """
    volume, pixel_size = read_map(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            h = mrc.header
            origin = np.array([float(h.origin.x), float(h.origin.y), float(h.origin.z)])
            start = np.array([float(h.nxstart), float(h.nystart), float(h.nzstart)])
    if not origin.any() and start.any():
        origin = start * pixel_size
    return volume, pixel_size, origin


def model_map_on_grid(structure: gemmi.Structure, box: int, pixel_size: float, origin_A,
                      resolution: float | None = MODEL_MAP_RESOLUTION_A) -> np.ndarray:
    """Model map on exactly a reconstruction's box, voxel size and origin.

    Parameters
    ----------
    structure : gemmi.Structure
        Model in the reconstruction's frame.
    box : int
        Map side in voxels.
    pixel_size : float
        Voxel size in Å.
    origin_A : sequence of 3 floats
        The reconstruction's header origin (x, y, z) in Å.
    resolution : float or None
        Gaussian low-pass in Å (default 8 Å, as the paper); None for none.

    Returns
    -------
    np.ndarray
        float32, shape (box, box, box), indexed [z, y, x].
    """
    return model_map(structure, box, pixel_size, resolution=resolution, origin_A=tuple(float(v) for v in origin_A))


def centred_model_map(structure: gemmi.Structure, box: int, pixel_size: float,
                      resolution: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Model map with the model's centre at voxel box // 2 (a reference for alignment).

    Returns
    -------
    volume : np.ndarray
        float32, shape (box, box, box).
    origin_A : np.ndarray
        The origin (x, y, z) in Å that places the model so.
    """
    origin = np.asarray(centring_origin(structure, box, pixel_size), dtype=np.float64)
    return model_map(structure, box, pixel_size, resolution=resolution, origin_A=tuple(origin)), origin


def with_coordinates(structure: gemmi.Structure, xyz_A: np.ndarray) -> gemmi.Structure:
    """A copy of a model (first model only) with new atom positions.

    Parameters
    ----------
    structure : gemmi.Structure
        The model.
    xyz_A : np.ndarray
        New positions (x, y, z) in Å, shape (n_atoms, 3), in the order of
        :func:`cryosift.density.model_coordinates`.
    """
    out = structure.clone()
    while len(out) > 1:
        del out[len(out) - 1]
    xyz = np.asarray(xyz_A, dtype=np.float64)
    if len(xyz) != len(model_coordinates(out)):
        raise ValueError(f"{len(xyz)} positions for a model of {len(model_coordinates(out))} atoms")
    atoms = (a for ch in out[0] for r in ch for a in r)
    for atom, pos in zip(atoms, xyz):
        atom.pos = gemmi.Position(*pos)
    return out


def write_model(path: str | Path, structure: gemmi.Structure) -> None:
    """Write a model atomically as mmCIF (``.cif``) or PDB (other suffixes)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".cif", ".mmcif"):
            structure.make_mmcif_document().write_file(str(tmp))
        else:
            structure.write_pdb(str(tmp))
