"""Score 2D class averages with a CryoSift model (1.0 best ... 5.0 unusable).

Writes scores.star (RELION: sort on rlnParticleFigureOfMerit in relion_display; rlnClassScore
0..1 beside it), scores.csv (score, estimated mass, all features) and scores.png (gallery,
best first). Scores are never clamped; a class with no particles scores no better than 5.0. When
the scores look unlike those of the simulated jobs the model was validated on (no class <= 3.5,
all classes within one grade, most particles in classes >= 4.5), one WARNING line says so and
points to the gallery and to fine-tuning (docs/scoring.md, "Out-of-domain warning"). Without --model (or with --model default) the model
shipped with cryosift scores (see src/cryosift/models/MODEL_CARD.md); --model takes any
other checkpoint: one trained or fine-tuned with `cryosift train`, or published CryoSift
weights (e.g. final_model_cont.pth).

Examples::

    cryosift score Class2D/job012 -o results/score/scores.star
    cryosift score J42/J42_020_class_averages.cs -o scored/
    cryosift score classes.mrcs --features classes.csv --pixel-size 2.1 --model mine.pt -o scored/
"""

import logging

from cryosift.device import set_threads
from cryosift.pipeline.manifest import score_classification
from cryosift.scoring.inference import DEFAULT_BATCH_SIZE

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("classes", help="RELION Class2D job folder or run_itNNN_model.star; a workflow "
                                        "classification.json; cryoSPARC 2D job "
                                        "folder or *_class_averages.cs/.mrc; or an MRC stack with --features")
    parser.add_argument("--model", default="default",
                        help="checkpoint to score with (ours or a published CryoSift .pth); "
                             "'default' is the model shipped with cryosift (default: %(default)s)")
    parser.add_argument("-o", "--out", default="scores.star",
                        help="scores.star path or output folder; .csv and .png are written beside it (default: %(default)s)")
    parser.add_argument("--particles", help="cryoSPARC *_particles.cs when not beside the class averages")
    parser.add_argument("--features", help="CSV feature table for a plain stack (resolution_A, distribution or particles)")
    parser.add_argument("--pixel-size", type=float, help="Å/px of a plain stack (default: table or header)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="class averages per forward pass (default: %(default)s)")
    parser.add_argument("--device", help="cuda, cuda:1 or cpu (default: GPU if present)")
    parser.add_argument("-j", "--threads", type=int, help="CPU threads (default: the allocation or all cores)")
    parser.add_argument("--no-gallery", action="store_true", help="do not write the PNG gallery")
    parser.add_argument("--gallery-columns", type=int, default=10, help="gallery panels per row (default: %(default)s)")


def main(args):
    set_threads(args.threads)
    result = score_classification(args.classes, args.model, args.out, particles=args.particles,
                                  features=args.features, pixel_size=args.pixel_size, batch_size=args.batch_size,
                                  device=args.device, gallery=not args.no_gallery,
                                  gallery_columns=args.gallery_columns)
    t = result.table
    log.info("%d classes scored: %d <= 2.5, %d <= 3.5, %d <= 4.5; wrote %s, %s%s", len(t), (t.score <= 2.5).sum(),
             (t.score <= 3.5).sum(), (t.score <= 4.5).sum(), result.star, result.csv,
             f", {result.gallery}" if result.gallery else "")
