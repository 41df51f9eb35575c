"""Score 2D class averages with the CryoSift network (1.0 best ... 5.0 unusable).

Typical use::

    from cryosift.scoring import load_checkpoint, score_classes
    from cryosift.io import read_class_averages

    model = load_checkpoint("model.pt")
    table = score_classes(read_class_averages("Class2D/job012"), model)

or :func:`score_job` to also write ``scores.star``, ``scores.csv`` and a gallery.
"""

from cryosift.scoring.checkpoint import (
    PUBLISHED_CONFIG,
    ModelConfig,
    ScoringModel,
    load_checkpoint,
    save_checkpoint,
)
from cryosift.scoring.decode import class_score, decode, encode, resolution_weight
from cryosift.scoring.features import (
    DEFAULT_FEATURES,
    FEATURE_NAMES,
    PUBLISHED_FEATURES,
    FeatureSpec,
    class_features,
    feature_matrix,
)
from cryosift.scoring.gallery import write_gallery
from cryosift.scoring.inference import predict, score_classes
from cryosift.scoring.inputs import class_image_names, load_classes, read_stack_classes
from cryosift.scoring.job import ScoreOutputs, score_job
from cryosift.scoring.mass import estimate_mass, mass_deviations
from cryosift.scoring.network import MIN_INPUT_SIZE, CryoSiftNet, build_network
from cryosift.scoring.outputs import CLASS_SCORE_LABEL, SCORE_LABEL, read_scores, write_scores_csv, write_scores_star
from cryosift.scoring.preprocess import DEFAULT_PREPROCESSING, PUBLISHED_PREPROCESSING, Preprocessing, preprocess

__all__ = [
    "CLASS_SCORE_LABEL", "DEFAULT_FEATURES", "DEFAULT_PREPROCESSING", "FEATURE_NAMES", "MIN_INPUT_SIZE",
    "PUBLISHED_CONFIG", "PUBLISHED_FEATURES", "PUBLISHED_PREPROCESSING", "SCORE_LABEL", "CryoSiftNet",
    "FeatureSpec", "ModelConfig", "Preprocessing", "ScoreOutputs", "ScoringModel", "build_network",
    "class_features", "class_image_names", "class_score", "decode", "encode", "estimate_mass",
    "feature_matrix", "load_checkpoint", "load_classes", "mass_deviations", "predict", "preprocess",
    "read_scores", "read_stack_classes", "resolution_weight", "save_checkpoint", "score_classes", "score_job",
    "write_gallery", "write_scores_csv", "write_scores_star",
]
