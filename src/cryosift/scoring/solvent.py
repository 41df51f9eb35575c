"""Undo the solvent step of masked class averages before scoring.

RELION (and cryoSPARC) store class averages masked by a soft circle a little wider than the
particle: flat beyond the mask, and, as the mean inside the mask is subtracted and
CTF-corrected averages carry little of the lowest frequencies, the solvent just inside the
mask sits darker than the flat outside. The scoring models are trained on the builtin
engine's averages, whose mask leaves the outside at the solvent level. Read as it is, the
dark ring around a good particle costs it about two grades (benchmarks/render_sensitivity.py:
the demo's best classes score 2.16 as they are, 4.40 masked as RELION masks them).

:func:`level_solvent` finds the flat outside of each class average from its ring statistics
and, where the solvent inside the mask sits below it by a clear step, sets everything beyond
the solvent ring to the solvent level. It only looks at shapes, never at absolute
values, so float MRC stacks and 8-bit previews are treated alike. Averages without a flat
outside (a box tighter than the mask) or without a step are returned unchanged.
"""

from __future__ import annotations

import numpy as np

from cryosift.masks import centred_radius

#: A ring whose SD is below this fraction of the image's range is flat: masked-out pixels are
#: constant up to storage precision (exactly in float stacks; 8-bit JPEG previews leave about
#: one level of 255), while the solvent of a class average is noisier than that.
FLAT_FRACTION = 0.01
#: The mask has to leave at least this many flat rings inside the box.
MIN_FLAT_RINGS = 2
#: Where the solvent level is read, as fractions of the mask radius: inside the mask, clear of
#: its soft edge.
SOLVENT_RING = (0.75, 0.90)
#: Steps down smaller than this fraction of the image SD are left alone. The builtin engine's
#: averages rarely step down at all: none of 264 held-out simulated averages, 2 few-member
#: classes of the demo's 32 final ones; RELION's masked averages step down by about half an SD.
MIN_STEP = 0.25


def mask_radius(image: np.ndarray) -> float | None:
    """Radius in px beyond which a class average is flat, or None when no flat outside fits the box.

    Rings of one px are read from the outside in; the first whose SD exceeds
    :data:`FLAT_FRACTION` of the image's range (within the inscribed circle) ends the flat part.

    Parameters
    ----------
    image : np.ndarray
        One class average, shape (box, box).
    """
    box = image.shape[-1]
    rings = np.floor(centred_radius(box, 2)).astype(np.int64)
    n_rings = box // 2
    inside = rings < n_rings
    idx, v = rings[inside], image.astype(np.float64)[inside]
    count = np.bincount(idx, minlength=n_rings)
    mean = np.bincount(idx, v, minlength=n_rings) / count
    sd = np.sqrt(np.maximum(np.bincount(idx, v * v, minlength=n_rings) / count - mean ** 2, 0.0))
    span = float(v.max() - v.min())
    textured = np.nonzero(sd > FLAT_FRACTION * span)[0]
    if not span > 0 or len(textured) == 0:
        return None
    radius = int(textured.max()) + 1
    return float(radius) if n_rings - radius >= MIN_FLAT_RINGS else None


def level_solvent(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class averages with the step between solvent and masked-out outside removed.

    Parameters
    ----------
    images : np.ndarray
        Class averages, shape (k, box, box), any float dtype.

    Returns
    -------
    images : np.ndarray
        float32, shape (k, box, box); beyond 0.9 of the mask radius set to the solvent level
        (the median within 0.75-0.9 of the mask radius) where the step is clear.
    levelled : np.ndarray
        bool, shape (k,): which class averages were changed.
    """
    out = np.array(images, dtype=np.float32, copy=True)
    levelled = np.zeros(len(out), dtype=bool)
    if out.ndim != 3 or out.shape[0] == 0:
        return out, levelled
    r = centred_radius(out.shape[-1], 2)
    for i, image in enumerate(out):
        radius = mask_radius(image)
        if radius is None:
            continue
        ring = (r >= SOLVENT_RING[0] * radius) & (r <= SOLVENT_RING[1] * radius)
        solvent = float(np.median(image[ring]))
        outside = float(image[r >= radius + 1].mean())
        # Subtracting the mean within the mask, particle included, always puts the solvent below the
        # outside; a ring brighter than the outside holds particle (a mask tight around it), not solvent.
        if outside - solvent <= MIN_STEP * float(image.std()):
            continue
        image[r > SOLVENT_RING[1] * radius] = solvent
        levelled[i] = True
    return out, levelled
