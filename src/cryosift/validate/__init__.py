"""Validation of reconstructions: model maps, map alignment, FSC, Q-score and ResLog.

Typical use::

    from cryosift.validate import align_maps, fsc_curve, resolution_at
    al = align_maps(true_map, abinitio_map, pixel_size)          # rotation, shift, hand
    d = resolution_at(fsc_curve(true_map, al.aligned, pixel_size), 0.5)
"""

from cryosift.validate.align import MapAlignment, align_maps
from cryosift.validate.fsc import (
    HALF_MAP_THRESHOLD,
    MODEL_THRESHOLD,
    corrected_fsc,
    fsc_curve,
    resolution_at,
)
from cryosift.validate.grids import fourier_crop_volume, mirror_map, resample_map, rotation_grid
from cryosift.validate.masks import model_mask, soft_sphere_mask, threshold_mask
from cryosift.validate.modelmap import (
    MODEL_MAP_RESOLUTION_A,
    centred_model_map,
    model_map_on_grid,
    read_map_with_origin,
    with_coordinates,
)
from cryosift.validate.qscore import QScores, expected_qscore, qscores
from cryosift.validate.reslog import ResLogFit, ResLogResult, fit_reslog, reslog, reslog_sizes
from cryosift.validate.run import validate_map

__all__ = [
    "HALF_MAP_THRESHOLD", "MODEL_MAP_RESOLUTION_A", "MODEL_THRESHOLD", "MapAlignment", "QScores", "ResLogFit",
    "ResLogResult", "align_maps", "centred_model_map", "corrected_fsc", "expected_qscore", "fit_reslog",
    "fourier_crop_volume", "fsc_curve", "mirror_map", "model_map_on_grid", "model_mask", "qscores",
    "read_map_with_origin", "resample_map", "reslog", "reslog_sizes", "resolution_at", "rotation_grid",
    "soft_sphere_mask", "threshold_mask", "validate_map", "with_coordinates",
]
