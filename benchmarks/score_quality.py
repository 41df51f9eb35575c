"""Quality of a scoring model on held-out simulated structures: rank correlation, AUC, MSE, selection.

Usage: python benchmarks/score_quality.py --data DIR [DIR ...] [--model default] [--cutoff 3.5]
                                          [--iterations all] [--json out.json] [--csv out.csv]

DIR: graded training datasets (``cryosift train --generate``) or folders holding them, of
structures the model never saw (the shipped model was trained on datasets 0-159 of seed 2025;
datasets 160-183 of that seed are held out). Prints, against the ground-truth grades:

- Spearman rank correlation of score and grade (target >= 0.85);
- AUC of junk classes (purity < 0.5) against good ones (grade <= 3.5) (target >= 0.95);
- MSE of the network output on the [0, 1] target 0.2 (5 - grade) (target <= 0.0055, the
  published validation figure);
- selection at the cutoff on each dataset's last iteration: complete particles kept (target
  >= 95 %) and junk removed (target >= 90 %), with the oracle that selects on the true grades;
  particles with a domain missing count as neither (their kept fraction is printed apart);
- the same per orientation distribution and per classification iteration;
- the error of clean classes (aligned purity >= 0.85, grade < 4) in eight equal-count bands of
  background texture (``background_texture``: blotches inside the mask, away from the particle).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import torch

from cryosift.errors import InputError
from cryosift.scoring.job import resolve_model
from cryosift.scoring.training.data import find_training_datasets, load_generated
from cryosift.scoring.training.evaluate import dataset_textures, quality, score_examples, texture_bands

TARGETS = {"spearman": (">=", 0.85), "auc": (">=", 0.95), "mse": ("<=", 0.0055)}


def verdict(name, value):
    op, target = TARGETS[name]
    ok = value >= target if op == ">=" else value <= target
    return f"{'met' if ok else 'MISSED'} (target {op} {target})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True, help="held-out graded training datasets")
    ap.add_argument("--model", default="default", help="checkpoint, or 'default' for the shipped model")
    ap.add_argument("--cutoff", type=float, default=3.5)
    ap.add_argument("--iterations", default="all", help="all, final or numbers like 9,12")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unlevelled", action="store_true",
                    help="score without levelling the solvent step of masked averages (as releases before it)")
    ap.add_argument("--json", help="write the metrics here")
    ap.add_argument("--csv", help="write the per-class scores here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = resolve_model(args.model)
    # as cryosift score runs the model: with the solvent levelling its preprocessing asks for
    level = bool(model.config.preprocessing.level_solvent) and not args.unlevelled
    examples = load_generated(args.data, args.iterations, model.config.preprocessing, model.config.features, level)
    table = score_examples(model, examples)
    textures = pd.concat([dataset_textures(f) for f in find_training_datasets(args.data)], ignore_index=True)
    table = table.merge(textures, on=["dataset", "iteration", "class"], how="left", validate="one_to_one")
    metrics = {"model": str(model.source), "overall": quality(table, args.cutoff)}
    metrics["by_orientations"] = {k: quality(g, args.cutoff) for k, g in table.groupby("orientations")}
    metrics["by_iteration"] = {int(k): quality(g, args.cutoff) for k, g in table.groupby("iteration")}
    bands = texture_bands(table)
    metrics["by_background_texture"] = bands.to_dict(orient="records")
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    o = metrics["overall"]
    print(f"model {metrics['model']}: {o['classes']} class averages from {table['dataset'].nunique()} datasets "
          f"({table['structure'].nunique()} structures), {metrics['seconds']} s")
    print(f"Spearman(score, grade)  {o['spearman']:.3f}  {verdict('spearman', o['spearman'])}")
    print(f"AUC junk vs good        {o['auc']:.3f}  {verdict('auc', o['auc'])}  "
          f"({o['junk_classes']} junk, {o['good_classes']} good classes)")
    print(f"MSE on [0, 1] target    {o['mse']:.4f} {verdict('mse', o['mse'])}  (mean |score - grade| {o['mae_grade']:.2f})")
    s, r = o["selection"], o["oracle_selection"]
    print(f"selection at {args.cutoff:g} (last iteration, pooled): true kept {s['true_kept']:.1%} (target >= 95%), "
          f"junk removed {s['junk_removed']:.1%} (target >= 90%); oracle on true grades: {r['true_kept']:.1%} / "
          f"{r['junk_removed']:.1%}; datasets meeting both: {o.get('datasets_meeting_selection', 0)}/{o.get('datasets', 0)}")
    if np.isfinite(s["partial_kept"]):
        print(f"  particles with a domain missing (neither particle nor junk above): {s['partial_kept']:.1%} kept")
    for name, group in (("orientations", metrics["by_orientations"]), ("iteration", metrics["by_iteration"])):
        for k, q in group.items():
            print(f"  {name} {k}: {q['classes']} classes, Spearman {q['spearman']:.3f}, AUC {q['auc']:.3f}, MSE {q['mse']:.4f}")
    if len(bands):
        print("  clean classes (aligned purity >= 0.85, grade < 4) by background texture, cleanest first:")
        for _, b in bands.iterrows():
            print(f"    texture <= {b['texture']:.3f}: {int(b['classes'])} classes, score - grade {b['bias']:+.2f} "
                  f"(SD {b['sd']:.2f}), MSE {b['mse']:.4f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(metrics, fh, indent=2, default=lambda v: None if isinstance(v, float) and np.isnan(v) else v)
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as exc:  # a bad dataset folder: one line naming it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
