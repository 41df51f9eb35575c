"""Train or fine-tune the class-average scoring model; make its simulated training data.

Three uses (docs/training.md):

- make one graded training dataset (simulate, 2D-classify with the builtin engine, grade
  every class average against the ground truth), in two stages or at once;
- train a model from training datasets (MSE, Adam 1e-4, weight decay 1e-4, batch 32,
  rotation/mirror augmentation, validation on held-out structures); rerunning resumes;
- fine-tune a model (``--init default`` = the shipped one) on your own grades: a CSV with
  a grade column (1-5 or A-F) and an image (NNNNNN@stack) or class column, or a RELION
  Select job's backup_selection.star (selected -> grade 2, others -> 4.5).

Examples::

    cryosift train --generate train/ds0003 --index 3 --seed 2025
    cryosift train --data train/ -o model.pt --epochs 40 --seed 0
    cryosift train --init default --labels grades.csv --classes Class2D/job012 -o mine.pt
    cryosift train --init default --labels Select/job013/backup_selection.star --classes Class2D/job012 -o mine.pt
"""

import json
import logging

import yaml

from cryosift.device import pick_device, set_threads
from cryosift.errors import InputError, require_file
from cryosift.io.atomic import write_text_atomic

log = logging.getLogger(__name__)


def add_args(parser):
    g = parser.add_argument_group("training data (simulated)")
    g.add_argument("--generate", metavar="DIR", help="make one training dataset in DIR")
    g.add_argument("--index", type=int, default=0, help="dataset number: draws its settings (default: %(default)s)")
    g.add_argument("--stage", choices=("all", "simulate", "grade"), default="all",
                   help="simulate+classify, grade, or both (default: %(default)s)")
    g.add_argument("--settings", help="generation ranges (GenerationSettings fields): a YAML file or an inline "
                                      "mapping such as '{snr: [0.05, 1.0]}'")
    g.add_argument("--keep", action="store_true", help="keep the particles and classification job")
    t = parser.add_argument_group("training")
    t.add_argument("--data", nargs="+", metavar="DIR", help="training datasets, or folders holding them")
    t.add_argument("--labels", nargs="+", metavar="FILE",
                   help="grade CSV(s) or RELION backup_selection.star file(s) to train/fine-tune on")
    t.add_argument("--classes", help="class averages the labels refer to (Class2D job, model.star or .cs)")
    t.add_argument("--selected-grade", type=float, default=2.0, help="grade of selected classes (default: %(default)s)")
    t.add_argument("--rejected-grade", type=float, default=4.5, help="grade of unselected classes (default: %(default)s)")
    t.add_argument("--init", help="start from this model: 'default' (the shipped one) or a checkpoint")
    t.add_argument("-o", "--out", help="model file to write (.pt); its resumable state goes beside it")
    t.add_argument("--epochs", type=int, help="epochs (default: 40, or 10 when fine-tuning)")
    t.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    t.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default: %(default)s)")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="default: %(default)s")
    t.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate: constant, or cosine decay to zero over the epochs (default: %(default)s)")
    t.add_argument("--no-augment", action="store_true", help="no random rotations and mirrors")
    t.add_argument("--render", type=float, default=0.0,
                   help="chance per example of re-boxing and RELION-masking it (training datasets only; "
                        "default: 0, none)")
    t.add_argument("--ema", type=float, default=0.998,
                   help="decay of the moving average of the weights that is validated and saved; 0: none "
                        "(default: %(default)s)")
    t.add_argument("--dropout", type=float, default=0.0,
                   help="dropout in training (the published network used 0.25; default: %(default)s)")
    t.add_argument("--val-fraction", type=float,
                   help="fraction of structures held out for validation (default: 0.1, or 0 when fine-tuning)")
    t.add_argument("--iterations", default="all",
                   help="graded iterations to train on: all, final, or numbers like 9,12 (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    t.add_argument("--metrics", help="also write the training history and metrics as JSON here")
    parser.add_argument("--device", help="cuda, cuda:1 or cpu (default: GPU if present)")
    parser.add_argument("-j", "--threads", type=int, help="CPU threads (default: the allocation or all cores)")


def _generate(args):
    from cryosift.scoring.training.generate import (GenerationSettings, grade_dataset, make_training_dataset,
                                                    simulate_and_classify)

    settings = None
    if args.settings:
        inline = args.settings.lstrip().startswith("{")
        p = "--settings" if inline else require_file(args.settings)
        try:
            values = yaml.safe_load(args.settings if inline else p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(p, f"not valid YAML ({exc})") from None
        if not isinstance(values, dict):
            raise InputError(p, "generation settings must be a mapping of name: value")
        try:
            settings = GenerationSettings.from_dict(values)
        except InputError as exc:
            raise InputError(p, exc.problem) from None
    device = "cuda" if args.device is None and pick_device().type == "cuda" else (args.device or "cpu")
    if args.stage == "simulate":
        simulate_and_classify(args.generate, args.index, args.seed, settings, device=device, threads=args.threads)
    elif args.stage == "grade":
        grade_dataset(args.generate, keep=args.keep)
    else:
        make_training_dataset(args.generate, args.index, args.seed, settings, device=device, threads=args.threads,
                              keep=args.keep)


def _train(args):
    from cryosift.scoring.job import resolve_model
    from cryosift.scoring.training.data import Examples, load_generated, split_by_structure
    from cryosift.scoring.training.labels import read_labels
    from cryosift.scoring.training.train import TrainSettings, train

    if not args.out:
        raise InputError(None, "give the model file to write with -o/--out")
    if args.classes and not args.labels:
        raise InputError(args.classes, "--classes only applies to --labels")
    init = resolve_model(args.init) if args.init else None
    fine = init is not None
    kw = {"preprocessing": init.config.preprocessing, "features": init.config.features} if fine else {}
    parts = []
    if args.data:
        parts.append(load_generated(args.data, args.iterations, **kw))
    for label_file in args.labels or []:
        parts.append(read_labels(label_file, args.classes, args.selected_grade, args.rejected_grade, **kw))
    if not parts:
        raise InputError(None, "nothing to train on: give --data (training datasets) and/or --labels")
    examples = Examples.concat(parts)
    fraction = args.val_fraction if args.val_fraction is not None else (0.0 if fine else 0.1)
    train_idx, val_idx = split_by_structure(examples.groups, fraction, args.seed)
    settings = TrainSettings(epochs=args.epochs or (10 if fine else 40), batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, augment=not args.no_augment, seed=args.seed,
                             dropout=args.dropout, ema=args.ema, schedule=args.schedule,
                             render=args.render)
    sources = [str(d) for d in (args.data or [])] + [str(f) for f in (args.labels or [])]
    result = train(examples.subset(train_idx), args.out, settings,
                   validation=examples.subset(val_idx) if len(val_idx) else None, init=init, device=args.device,
                   provenance={"data": ", ".join(sources),
                               "validation_structures": sorted(set(examples.groups[val_idx].tolist()))})
    log.info("trained on %d class averages (%d held out); best epoch %d, validation MSE %s; wrote %s",
             len(train_idx), len(val_idx), result["best_epoch"],
             "n/a" if result["val_mse"] is None else f"{result['val_mse']:.4f}", args.out)
    if args.metrics:
        write_text_atomic(args.metrics, json.dumps(result, indent=2) + "\n")


def main(args):
    set_threads(args.threads)
    if args.generate:
        if args.data or args.labels:
            raise InputError(None, "--generate makes training data; train with a separate run (--data)")
        return _generate(args)
    return _train(args)
