"""Class averages as PNG images for the browser, scaled to their own contrast like the gallery."""

from __future__ import annotations

import io
import threading
from functools import lru_cache
from pathlib import Path

import matplotlib.image
import numpy as np

from cryosift.errors import InputError
from cryosift.io.mrc import read_stack
from cryosift.io.models import split_image_names
from cryosift.review.catalog import Step, resolve_stack
from cryosift.scoring.gallery import contrast_stretch

_lock = threading.Lock()


@lru_cache(maxsize=32)
def _stack(path: str, mtime: float) -> np.ndarray:
    """All images of one stack, float32 (m, box, box); cached per file version."""
    return read_stack(path)[0]


def class_image(step: Step, image_name: str) -> np.ndarray:
    """One class average, float32 (box, box), from its ``NNNNNN@stack`` name in scores.star.

    Raises
    ------
    InputError
        The stack is missing or does not hold that image.
    """
    index, stacks = split_image_names(np.asarray([image_name]))
    path = resolve_stack(str(stacks[0]), step)
    if not path.is_file():
        raise InputError(step.scores, f"class-average stack {stacks[0]} not found (named in {step.scores.name})")
    with _lock:  # one reader fills the cache; mrcfile handles are not shared between threads
        images = _stack(str(path.resolve()), path.stat().st_mtime)
    i = int(index[0])
    if not 0 <= i < len(images):
        raise InputError(path, f"holds {len(images)} images, {image_name} asks for image {i + 1}")
    return images[i]


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grey PNG of an image scaled between its 0.5th and 99.5th percentiles."""
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, contrast_stretch(np.asarray(image, np.float64)), cmap="gray", vmin=0, vmax=1,
                            format="png")
    return buf.getvalue()


def stack_path(step: Step, image_name: str) -> Path:
    """The stack file an image name points to (for messages)."""
    _, stacks = split_image_names(np.asarray([image_name]))
    return resolve_stack(str(stacks[0]), step)
