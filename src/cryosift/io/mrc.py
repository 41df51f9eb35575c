"""MRC images, stacks and maps through mrcfile, with pixel sizes in Å.

Stacks are opened memory-mapped, so a stack larger than memory is read one slice
at a time. Arrays follow mrcfile's order: a stack is (n, y, x), a map (z, y, x).
"""

from __future__ import annotations

import math
import mmap
import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from cryosift.errors import InputError, require_file
from cryosift.io.atomic import atomic_path, temp_name

_FLOAT_DTYPES = (np.float32, np.float16, np.int8, np.int16, np.uint8, np.uint16)


def _open(path: str | Path, mode: str = "r"):
    p = require_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mrcfile.mmap(p, mode=mode, permissive=True)
    except (ValueError, OSError) as exc:
        raise InputError(p, f"not a readable MRC file ({exc})") from None


def header_pixel_size(mrc) -> float:
    """Pixel size in Å/px from an open mrcfile object's voxel_size (x)."""
    return float(mrc.voxel_size.x)


def _missing_data(path: Path, mrc) -> str:
    """Why an MRC file opened without data: truncated (with the sizes) or not an MRC file."""
    try:
        from mrcfile.utils import data_dtype_from_header

        h = mrc.header
        nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
        dtype = data_dtype_from_header(h)
        declared = mrc.header.nbytes + int(h.nsymbt) + nx * ny * nz * dtype.itemsize
    except (ValueError, AttributeError, TypeError):
        return "MRC file holds no data (not an MRC file)"
    size = path.stat().st_size
    what = "images" if path.suffix.lower() == ".mrcs" or int(h.ispg) == 0 else "sections"
    if size < declared:
        return (f"truncated: its header declares {nz} {what} of {nx} x {ny} px ({dtype.name}, {declared:,} bytes "
                f"with the header) but the file has {size:,} bytes; copy or write it again")
    return "MRC file holds no data (not an MRC file)"


def _check_data(path: Path, data, mrc=None) -> None:
    if data is None:
        raise InputError(path, _missing_data(path, mrc) if mrc is not None else "MRC file holds no data (truncated or "
                                                                               "not an MRC file)")
    if data.dtype.type not in _FLOAT_DTYPES and data.dtype.kind != "f":
        raise InputError(path, f"unsupported MRC data type {data.dtype}")


def stack_info(path: str | Path) -> dict:
    """Summarise an MRC file without reading its data.

    Returns
    -------
    dict
        ``n`` (images or sections), ``shape`` (as stored, z/n first), ``dtype``,
        ``pixel_size`` (Å/px, 0 when unset), ``is_stack`` (mrcfile's image-stack flag).
    """
    with _open(path) as mrc:
        _check_data(Path(path), mrc.data, mrc)
        shape = tuple(int(s) for s in mrc.data.shape)
        return {
            "n": 1 if len(shape) == 2 else shape[0],
            "shape": shape,
            "dtype": str(mrc.data.dtype),
            "pixel_size": header_pixel_size(mrc),
            "is_stack": bool(mrc.is_image_stack()),
        }


class ImageStack:
    """A memory-mapped stack of square 2D images.

    Parameters
    ----------
    path : str or Path
        An ``.mrcs`` (or ``.mrc``) file holding one image or a stack of images.

    Attributes
    ----------
    n : int
        Number of images.
    box : int
        Image side in px.
    pixel_size : float
        Å/px from the header (0.0 when the header does not say).

    Raises
    ------
    InputError
        Missing or unreadable file, non-square images, unsupported dtype.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._mrc = _open(self.path)
        data = self._mrc.data
        _check_data(self.path, data, self._mrc)
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3:
            raise InputError(self.path, f"expected a stack of 2D images, found {data.ndim}D data")
        if self._mrc.is_volume() and self.path.suffix.lower() != ".mrcs" and len(set(data.shape)) == 1:
            raise InputError(self.path, f"holds a 3D map ({data.shape[0]}^3 voxels, space group 1), "
                                        "not a stack of 2D images")
        if data.shape[1] != data.shape[2]:
            raise InputError(self.path, f"images are not square ({data.shape[2]} x {data.shape[1]} px)")
        self._data = data
        self.n = int(data.shape[0])
        self.box = int(data.shape[1])
        self.pixel_size = header_pixel_size(self._mrc)

    def __len__(self) -> int:
        return self.n

    def read(self, indices=None) -> np.ndarray:
        """Images as float32, shape (m, box, box); ``indices`` are 0-based (default: all)."""
        if indices is None:
            return np.asarray(self._data, dtype=np.float32)
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise InputError(self.path, f"image index {bad + 1} (1-based) is beyond the stack of {self.n} images")
        # Sorted unique reads keep the mmap sequential; then restore the caller's order.
        uniq, inverse = np.unique(idx, return_inverse=True)
        if len(uniq) and uniq[-1] - uniq[0] + 1 == len(uniq):
            # A run of consecutive images (the usual chunk of a stack): one slice, many times faster than a gather.
            block = np.asarray(self._data[uniq[0]:uniq[-1] + 1], dtype=np.float32)
        else:
            block = np.asarray(self._data[uniq], dtype=np.float32)
        if len(uniq) == len(idx) and np.array_equal(uniq, idx):
            return block
        return block[inverse]

    def close(self) -> None:
        self._mrc.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_stack(path: str | Path, indices=None) -> tuple[np.ndarray, float]:
    """Read images from a stack.

    Returns
    -------
    images : np.ndarray
        float32, shape (m, box, box).
    pixel_size : float
        Å/px from the header.
    """
    with ImageStack(path) as stack:
        return stack.read(indices), stack.pixel_size


def read_map(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a cubic 3D map.

    Returns
    -------
    volume : np.ndarray
        float32, shape (n, n, n), indexed [z, y, x].
    pixel_size : float
        Voxel size in Å.
    """
    p = Path(path)
    with _open(p) as mrc:
        _check_data(p, mrc.data, mrc)
        data = mrc.data
        # Some programs (RELION among them) write maps with the image-stack space group;
        # only an .mrcs name marks a stack for sure.
        if data.ndim != 3 or (mrc.is_image_stack() and p.suffix.lower() == ".mrcs"):
            raise InputError(p, f"expected a 3D map, found {'an image stack' if data.ndim == 3 else f'{data.ndim}D data'}")
        if len(set(data.shape)) != 1:
            raise InputError(p, f"map is not cubic (shape {tuple(data.shape)})")
        return np.array(data, dtype=np.float32), header_pixel_size(mrc)


def _label(mrc, label: str | None) -> None:
    """One fixed header label instead of mrcfile's creation time, so reruns give identical bytes."""
    from cryosift import __version__

    mrc.header.label[0] = (label or f"cryosift {__version__}")[:80]
    mrc.header.nlabl = 1


def _check_finite(path: Path, data: np.ndarray) -> None:
    if not np.all(np.isfinite(data)):
        raise InputError(path, "refusing to write NaN or infinite values")


def write_stack(path: str | Path, images: np.ndarray, pixel_size: float, label: str | None = None) -> None:
    """Write a stack of square images atomically (float32, MRC image-stack mode).

    Parameters
    ----------
    path : str or Path
        Output ``.mrcs`` path.
    images : np.ndarray
        Shape (n, box, box) or (box, box).
    pixel_size : float
        Å/px, stored in the header.
    label : str, optional
        Header label (default: the package name and version).
    """
    path = Path(path)
    data = np.asarray(images, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or data.shape[1] != data.shape[2]:
        raise InputError(path, f"expected (n, box, box) images, got shape {data.shape}")
    _check_finite(path, data)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.set_image_stack()
            mrc.voxel_size = pixel_size
            _label(mrc, label)


def write_map(path: str | Path, volume: np.ndarray, pixel_size: float, origin_A=None, label: str | None = None) -> None:
    """Write a 3D map atomically (float32).

    Parameters
    ----------
    volume : np.ndarray
        Shape (n, n, n), indexed [z, y, x].
    pixel_size : float
        Voxel size in Å.
    origin_A : sequence of 3 floats, optional
        Header origin (x, y, z) in Å; default 0.
    """
    path = Path(path)
    data = np.asarray(volume, dtype=np.float32)
    if data.ndim != 3:
        raise InputError(path, f"expected a 3D volume, got shape {data.shape}")
    _check_finite(path, data)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.set_volume()
            mrc.voxel_size = pixel_size
            if origin_A is not None:
                mrc.header.origin = tuple(float(v) for v in origin_A)
            _label(mrc, label)


class StackWriter:
    """Write a stack of known size chunk by chunk (bounded memory), atomically.

    Header statistics are accumulated per chunk (per-image sums added exactly at the end,
    so the header does not depend on the chunk size), and written pages are released after
    each chunk, so resident memory does not grow with the stack.

    Parameters
    ----------
    path : str or Path
        Output ``.mrcs`` path; the file appears only when ``close`` succeeds.
    n, box : int
        Number of images and image side in px.
    pixel_size : float
        Å/px.
    label : str, optional
        Header label (default: the package name and version).
    """

    def __init__(self, path: str | Path, n: int, box: int, pixel_size: float, label: str | None = None):
        self.path = Path(path)
        self._tmp = temp_name(self.path)
        self._mrc = mrcfile.new_mmap(self._tmp, shape=(n, box, box), mrc_mode=2, overwrite=True)
        self._mrc.set_image_stack()
        self._mrc.voxel_size = pixel_size
        _label(self._mrc, label)
        self._pos = 0
        self.n = n
        self._min, self._max = math.inf, -math.inf
        self._sums: list[float] = []
        self._squares: list[float] = []

    def write(self, images: np.ndarray) -> None:
        """Append images, shape (m, box, box)."""
        images = np.asarray(images, dtype=np.float32)
        _check_finite(self.path, images)
        m = images.shape[0]
        if self._pos + m > self.n:
            raise ValueError(f"{self.path}: more images than the {self.n} declared")
        self._mrc.data[self._pos:self._pos + m] = images
        self._pos += m
        if m:
            flat = images.reshape(m, -1).astype(np.float64)
            self._min = min(self._min, float(flat.min()))
            self._max = max(self._max, float(flat.max()))
            self._sums += flat.sum(axis=1).tolist()
            self._squares += np.einsum("ij,ij->i", flat, flat).tolist()
        region = getattr(self._mrc.data, "_mmap", None)
        if region is not None and hasattr(mmap, "MADV_DONTNEED"):
            region.madvise(mmap.MADV_DONTNEED)  # pages stay in the page cache; the kernel writes them back

    def close(self) -> None:
        """Finish the file (header statistics from the accumulated sums) and move it to its final name."""
        if self._pos != self.n:
            self.abort()
            raise ValueError(f"{self.path}: {self._pos} images written, {self.n} declared")
        h = self._mrc.header
        count = self.n * float(self._mrc.data.shape[-1] * self._mrc.data.shape[-2])
        if count:
            mean = math.fsum(self._sums) / count
            h.dmin, h.dmax, h.dmean = np.float32(self._min), np.float32(self._max), np.float32(mean)
            h.rms = np.float32(math.sqrt(max(math.fsum(self._squares) / count - mean * mean, 0.0)))
        else:
            self._mrc.reset_header_stats()
        self._mrc.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial output."""
        self._mrc.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
