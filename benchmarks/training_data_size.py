"""How the scoring model's held-out quality grows with the number of training structures.

Usage: python benchmarks/training_data_size.py --data results/train/data --heldout results/train/heldout
                                               [--sizes 80 120] [--full default] [--work DIR]
                                               [--extra results/train/extra --sizes 320]

Trains the recipe (``cryosift train``: seed 0, constant rate, a tenth of the structures for
validation and the choice of epoch) on the first N training datasets for each N in ``--sizes``,
with the recipe's number of optimiser steps: 40 epochs at the full size, 40 x full / N epochs at
N. ``--full`` names the model trained on all of them (default: the shipped model, which is the
recipe on datasets 0-159); ``--full train`` trains it here too. Sizes above the full set take the
datasets of ``--extra`` after those of ``--data`` (made with the same seed, numbered after the
held-out ones, as ``snakemake train`` makes them with ``heldout_first``), again at the same
steps. Every model is then scored on the held-out structures (Spearman, AUC, MSE, as
``score_quality.py``) and, unless ``--no-own``, on its own training datasets. Last, the power
law fitted to the held-out MSE over all sizes (least squares in log-log): its exponent, and the
number of structures at which a pure power law would reach the target 0.0055 (optimistic: a
floor that the data cannot lower makes the curve flatten).

Training writes ``<work>/nNNN.pt`` and its resumable state; a rerun reuses finished models.
A size takes about as long as the recipe's training, validation included (an hour or more on 2 cores).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from cryosift.errors import InputError
from cryosift.scoring.job import resolve_model
from cryosift.scoring.training.data import find_training_datasets, load_generated
from cryosift.scoring.training.evaluate import quality, score_examples

RECIPE_EPOCHS = 40
TARGET_MSE = 0.0055


def train_subset(folders, out: Path, epochs: int, threads: int) -> dict:
    """Train the recipe on ``folders`` (resuming a finished or broken run); return its metrics."""
    metrics = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "cryosift", "train", "--data", *map(str, folders), "-o", str(out),
           "--epochs", str(epochs), "--seed", "0", "-j", str(threads), "--metrics", str(metrics)]
    if subprocess.run(cmd).returncode != 0:
        raise InputError(out, "training failed (its messages are above)")
    return json.loads(metrics.read_text())


def evaluate(model, folders) -> dict:
    """Spearman / AUC / MSE of ``model`` on the graded datasets in ``folders`` (all iterations)."""
    examples = load_generated(folders, "all", model.config.preprocessing, model.config.features)
    table = score_examples(model, examples)
    q = quality(table)
    by_it = {int(k): quality(g)["mse"] for k, g in table.groupby("iteration")}
    return {"classes": q["classes"], "spearman": q["spearman"], "auc": q["auc"], "mse": q["mse"],
            "mse_by_iteration": by_it}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of the training datasets (ds0000 ...)")
    ap.add_argument("--heldout", nargs="+", required=True, help="held-out graded datasets")
    ap.add_argument("--extra", nargs="+", default=[], help="more training datasets, for sizes above --data's")
    ap.add_argument("--sizes", type=int, nargs="+", default=[80, 120], help="training structures per run")
    ap.add_argument("--full", default="default", help="model trained on all datasets, or 'train'")
    ap.add_argument("--work", default="results/train/exp/size", help="folder for the models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-own", action="store_true", help="skip scoring each model's own training datasets (minutes)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    folders = find_training_datasets([args.data])
    full = len(folders)
    pool = folders + (find_training_datasets(args.extra) if args.extra else [])
    too_many = [n for n in args.sizes if n > len(pool)]
    if too_many:
        raise InputError(None, f"--sizes {too_many[0]}: only {len(pool)} training datasets "
                               f"({full} in {args.data}{', the rest in --extra' if args.extra else ''})")
    work = Path(args.work)
    rows = []
    sizes = sorted({n for n in args.sizes if 0 < n} | {full})
    for n in sizes:
        t0 = time.perf_counter()
        epochs = round(RECIPE_EPOCHS * full / n)
        info = {"structures": n, "epochs": epochs}
        if n == full and args.full != "train":
            model = resolve_model(args.full)
            info.update(model=str(model.source), best_epoch=model.config.provenance.get("epoch"),
                        val_mse=model.config.provenance.get("validation_mse"))
        else:
            out = work / f"n{n:03d}.pt"
            result = train_subset(pool[:n], out, epochs, args.threads)
            model = resolve_model(str(out))
            info.update(model=str(out), best_epoch=result["best_epoch"], val_mse=result["val_mse"],
                        train_examples=result["examples"])
        info["heldout"] = evaluate(model, args.heldout)
        info["own"] = None if args.no_own else evaluate(model, pool[:n])
        info["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(info)
        h, o = info["heldout"], info["own"]
        its = " / ".join(f"{v:.4f}" for _, v in sorted(h["mse_by_iteration"].items()))
        print(f"{n:4d} structures ({epochs} epochs, best {info['best_epoch']}): held-out Spearman {h['spearman']:.3f} "
              f"AUC {h['auc']:.3f} MSE {h['mse']:.4f} (by iteration {its})"
              + (f"; own training datasets MSE {o['mse']:.4f}" if o else "") + f"; {info['seconds']} s", flush=True)
    fit = None
    if len(rows) >= 2:
        n = np.log([r["structures"] for r in rows])
        mse = np.log([r["heldout"]["mse"] for r in rows])
        slope, icept = np.polyfit(n, mse, 1)
        need = math.exp((math.log(TARGET_MSE) - icept) / slope) if slope < 0 else math.inf
        ratio = rows[-1]["heldout"]["mse"] / rows[0]["heldout"]["mse"]
        print(f"held-out MSE x{ratio:.3f} from {rows[0]['structures']} to {rows[-1]['structures']} structures; "
              f"power-law exponent "
              f"{slope:.2f}; a pure power law would reach {TARGET_MSE} at about {need:.0f} structures "
              f"({need / full:.1f}x the full set)")
        fit = {"power_law_exponent": float(slope), "structures_for_target": need}
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": rows, "fit": fit}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as exc:  # a bad dataset folder or model: one line naming it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
