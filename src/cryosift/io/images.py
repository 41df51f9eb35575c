"""Load the images of a particle set from its stacks, in chunks of bounded size."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from cryosift.errors import InputError
from cryosift.io.models import ParticleSet
from cryosift.io.mrc import ImageStack
from cryosift.logs import ProgressLog

log = logging.getLogger(__name__)


def check_image_locations(pset: ParticleSet) -> None:
    """Raise InputError if a particle's stack is missing or its index lies beyond the stack."""
    index, paths = pset.image_locations()
    for path in np.unique(paths.astype(str)):
        rows = paths.astype(str) == path
        try:
            stack = ImageStack(path)
        except InputError as exc:
            raise InputError(pset.source, f"image stack {path}: {exc.problem}") from None
        with stack:
            top = int(index[rows].max())
            if top >= stack.n:
                raise InputError(pset.source, f"refers to image {top + 1} of {path}, which holds {stack.n} images")


def read_particle_images(pset: ParticleSet, rows=None) -> np.ndarray:
    """Images of the given particles (all by default), float32, shape (m, box, box)."""
    index, paths = pset.image_locations()
    rows = np.arange(len(pset)) if rows is None else np.asarray(rows)
    index, paths = index[rows], paths[rows].astype(str)
    out = None
    for path in np.unique(paths):
        sel = np.flatnonzero(paths == path)
        try:
            with ImageStack(path) as stack:
                block = stack.read(index[sel])
        except InputError as exc:
            raise InputError(pset.source, f"image stack {path}: {exc.problem}") from None
        bad = ~np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if bad.any():  # one NaN spreads through every transform, class average and map it touches
            first = int(index[sel][np.flatnonzero(bad)[0]])
            raise InputError(pset.source, f"image stack {path}: image {first + 1} (1-based) has NaN or infinite "
                                          f"pixels ({int(bad.sum())} such image(s) among those read)")
        if out is None:
            out = np.empty((len(rows),) + block.shape[1:], dtype=np.float32)
        elif block.shape[1:] != out.shape[1:]:
            raise InputError(pset.source, f"{path} has {block.shape[-1]} px images, others {out.shape[-1]} px")
        out[sel] = block
    return out if out is not None else np.empty((0, 0, 0), np.float32)


def check_particle_images(pset: ParticleSet, chunk: int = 4096) -> None:
    """Read every particle image once: InputError for a missing, truncated or unreadable stack,
    an index beyond its stack, or an image with NaN or infinite pixels.

    Each stack is opened once and read in index order, in runs of at most ``chunk`` images;
    progress is logged every 30 s (a large set is read at the storage's speed).
    """
    index, paths = pset.image_locations()
    paths = paths.astype(str)
    order = np.lexsort((index, paths))  # grouped by stack, ascending index within each
    starts = np.flatnonzero(np.r_[True, paths[order][1:] != paths[order][:-1]]) if len(order) else []
    progress = ProgressLog(log, "checking particle images", len(pset), every=30.0)
    for a, b in zip(starts, [*starts[1:], len(order)]):
        path, idx = paths[order[a]], np.unique(index[order[a:b]])
        try:
            stack = ImageStack(path)
        except InputError as exc:
            raise InputError(pset.source, f"image stack {path}: {exc.problem}") from None
        with stack:
            if idx[-1] >= stack.n:
                raise InputError(pset.source, f"refers to image {idx[-1] + 1} of {path}, which holds {stack.n} images")
            for c in range(0, len(idx), chunk):
                part = idx[c:c + chunk]
                bad = ~np.isfinite(stack.read(part)).reshape(len(part), -1).all(axis=1)
                if bad.any():
                    raise InputError(pset.source, f"image stack {path}: image {part[bad][0] + 1} (1-based) has NaN "
                                                  f"or infinite pixels ({int(bad.sum())} such image(s) among those "
                                                  "read)")
        progress.step(n=b - a)


def iter_particle_images(pset: ParticleSet, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (row positions, images) in chunks of at most ``chunk`` particles, in order."""
    for start in range(0, len(pset), chunk):
        rows = np.arange(start, min(start + chunk, len(pset)))
        yield rows, read_particle_images(pset, rows)
