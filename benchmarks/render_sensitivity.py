"""How a scoring model's scores move when the same class averages are boxed and masked as RELION jobs are.

Usage::

    python benchmarks/render_sensitivity.py [MODEL_STAR] [--model default] [--good 2.6]

MODEL_STAR: a 2D classification iteration (default: the demo's final classification,
``results/demo/classify/demo/final/run_it012_model.star``, made by ``make demo``). Its class
averages are scored as they are and after each rendering, all with the job's own features:

- ``mask 0.84`` / ``mask 0.90``: a soft circular mask (3 px edge) of 0.84 / 0.90 box, zero
  beyond it, the mean within it subtracted (RELION's class averages: flat outside the mask,
  solvent next to the particle darker, as CTF-corrected averages carry little of the lowest
  frequencies);
- ``box 0.72``: the central 0.72 of the box (a tighter box around the same particle).

Prints the mean score of the classes the model scores <= ``--good`` as they are, and of the
others, per rendering: as ``cryosift score`` scores them (the solvent step of masked averages
levelled first, :mod:`cryosift.scoring.solvent`) and without that levelling, as releases
before it scored them. Nothing here is graded: the class averages are the same particles'
averages, so a model that read the particle would score them alike.
"""

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from cryosift.io.classes import read_class_averages
from cryosift.scoring import score_classes
from cryosift.scoring.job import resolve_model
from cryosift.scoring.training.render import relion_mask_weights

DEFAULT = Path(__file__).resolve().parents[1] / "results/demo/classify/demo/final/run_it012_model.star"


def masked(images: np.ndarray, diameter_fraction: float, edge_px: float = 3.0) -> np.ndarray:
    """Zero beyond a soft circle of ``diameter_fraction`` box, mean within it subtracted."""
    box = images.shape[-1]
    inside = 1.0 - relion_mask_weights(box, diameter_fraction * box / 2.0, edge_px)
    x = images.astype(np.float64)
    mean = (x * inside).sum(axis=(1, 2)) / inside.sum()
    return ((x - mean[:, None, None]) * inside).astype(np.float32)


def cut(images: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of the box (even size)."""
    box = images.shape[-1]
    size = int(round(box * fraction / 2.0)) * 2
    start = (box - size) // 2
    return np.ascontiguousarray(images[:, start:start + size, start:start + size])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_star", nargs="?", default=str(DEFAULT))
    ap.add_argument("--model", default="default")
    ap.add_argument("--good", type=float, default=2.6, help="classes scored at or below this as they are")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = resolve_model(args.model)
    unlevelled = dataclasses.replace(model, config=dataclasses.replace(
        model.config, preprocessing=dataclasses.replace(model.config.preprocessing, level_solvent=False)))
    classes = read_class_averages(args.model_star)

    def scores(images: np.ndarray, scorer=model) -> np.ndarray:
        return score_classes(dataclasses.replace(classes, images=images), scorer)["score"].to_numpy()

    base = scores(classes.images)
    good = base <= args.good
    print(f"# {args.model_star}: {len(base)} classes, {int(good.sum())} scored <= {args.good} as they are "
          f"(model {args.model})")
    print("| rendering | mean score, those classes | the others | those classes, unlevelled | the others, unlevelled |")
    print("|---|---|---|---|---|")
    renderings = {"as they are": classes.images, "mask 0.84": masked(classes.images, 0.84),
                  "mask 0.90": masked(classes.images, 0.90), "box 0.72": cut(classes.images, 0.72)}
    for name, images in renderings.items():
        s, u = scores(images), scores(images, unlevelled)
        print(f"| {name} | {s[good].mean():.2f} | {s[~good].mean():.2f} | {u[good].mean():.2f} | {u[~good].mean():.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
