"""Particle selection of the whole workflow against the simulator's ground truth, per score cutoff.

Usage: python benchmarks/selection_quality.py [--out results/benchmarks/selection_quality]
                                              [--datasets 4] [--cores 2] [--json out.json]

Simulates datasets like the demo's (3,000 images, 64 px at 2.5 Å/px, SNR 0.3, 32 % junk of all
six kinds) but of other pseudo-proteins and orientation distributions, runs the workflow's
selection on each (the classify -> score -> select loop, the pooled classification and the
split at every cutoff; no re-extraction or reconstruction), and prints for every cutoff the
complete particles kept and the junk removed, pooled over datasets (targets at 3.5: >= 95 %
and >= 90 %), and at 3.5 what is kept of each ground-truth label. Particles with a domain
missing count as neither; their kept fraction is printed apart.

The peer, in the same run: one classification scored once and split at the same cutoff (the
loop's first round), which is how the scoring model's own figures are measured
(benchmarks/score_quality.py). A rerun with the same --out reuses finished steps.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = {"n_particles": 3000, "box": 64, "pixel_size": 2.5, "snr": 0.3, "defocus_range": [8000.0, 25000.0],
        "shift_sd_A": 4.0, "particles_per_micrograph": 100,
        "junk": {"empty_ice": 0.08, "carbon_edge": 0.04, "ice_blob": 0.05, "aggregate": 0.05,
                 "off_centre": 0.05, "partial": 0.05}}
#: Dataset variations: structure (seed, mass) and orientation distribution.
VARIANTS = [
    {"seed": 101, "mass_kda": 120.0, "orientations": "views", "n_views": 12},
    {"seed": 102, "mass_kda": 150.0, "orientations": "uniform"},
    {"seed": 103, "mass_kda": 100.0, "orientations": "preferred", "preferred_strength": 4.0},
    {"seed": 104, "mass_kda": 200.0, "orientations": "views", "n_views": 8},
    {"seed": 105, "mass_kda": 90.0, "orientations": "uniform"},
    {"seed": 106, "mass_kda": 130.0, "orientations": "preferred", "preferred_strength": 2.0},
]
#: The demo's classification settings (config/demo.yaml).
SETTINGS = {"results": "results", "datasets": "config/datasets.tsv", "seed": 2025, "device": "auto",
            "classify": {"classes": 16, "final_classes": 32, "iterations": 12}}


def make_project(out: Path, n: int, classify: dict | None = None) -> list[str]:
    """Write the datasets sheet, simulation specs and config of ``n`` datasets; their names.

    ``classify`` overrides keys of the demo's classification settings (e.g. ``final_classes``).
    """
    (out / "config").mkdir(parents=True, exist_ok=True)
    names, rows = [], ["dataset\ttype\tsource\tengine\tdiameter\tmodel\tpixel_size\trounds"]
    for v in VARIANTS[:n]:
        name = f"sel{v['seed']}"
        spec = {"name": name, **BASE, **v}
        (out / "config" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        rows.append(f"{name}\tsimulated\tconfig/{name}.yaml\t\t\t\t\t")
        names.append(name)
    (out / "config" / "datasets.tsv").write_text("\n".join(rows) + "\n")
    settings = {**SETTINGS, "classify": {**SETTINGS["classify"], **(classify or {})}}
    (out / "config" / "benchmark.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return names


def run_selection(out: Path, names: list[str], cores: int) -> float:
    targets = [f"results/select/{n}/final/selection.json" for n in names]
    targets += [f"results/select/{n}/round1/selection.json" for n in names]
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(out), "--configfile", str(REPO / "config" / "config.yaml"),
           str(out / "config" / "benchmark.yaml"), "--cores", str(cores), "--", *targets]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"workflow failed:\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t0


def stack_indices(star: Path, classes=None) -> np.ndarray:
    """0-based indices in the simulated stack of a STAR file's particles (only those in ``classes``)."""
    from cryosift.io import read_particles_star
    from cryosift.io.models import split_image_names

    particles = read_particles_star(star).particles
    index, _ = split_image_names(particles["rlnImageName"])
    if classes is not None:
        index = index[particles["rlnClassNumber"].astype(int).isin(classes).to_numpy()]
    return index


def figures(truth: pd.DataFrame, kept_index: np.ndarray) -> dict:
    """Counts of complete, partial and other junk images in the whole dataset and among the kept."""
    label = truth.set_index("index")["label"]
    kept = label.loc[kept_index]
    out = {}
    for kind, test in (("complete", lambda s: s == "true"), ("partial", lambda s: s == "partial"),
                       ("junk", lambda s: (s != "true") & (s != "partial"))):
        out[kind] = int(test(label).sum())
        out[f"{kind}_kept"] = int(test(kept).sum())
    return out


def one_pass(results: Path, name: str, cutoff: float) -> np.ndarray:
    """Indices kept when round 1's classes are split once at ``cutoff``."""
    scores = pd.read_csv(results / "score" / name / "round1" / "scores.csv")
    good = set(scores.loc[scores["score"] <= cutoff, "class"].astype(int))
    data = sorted((results / "classify" / name / "round1").glob("run_it*_data.star"))[-1]
    return stack_indices(data, good)


def kept_by_label(truth: pd.DataFrame, kept_index: np.ndarray) -> dict:
    """Images per ground-truth label (``true``, each junk type) in the dataset and among the kept."""
    label = truth.set_index("index")["label"]
    kept = label.loc[kept_index].value_counts()
    return {k: [int(n), int(kept.get(k, 0))] for k, n in label.value_counts().items()}


def rates(f: dict) -> dict:
    return {"complete_kept": f["complete_kept"] / max(f["complete"], 1),
            "junk_removed": 1 - f["junk_kept"] / max(f["junk"], 1),
            "partial_kept": f["partial_kept"] / f["partial"] if f["partial"] else float("nan")}


def pooled(rows: list[dict]) -> dict:
    keys = ("complete", "complete_kept", "partial", "partial_kept", "junk", "junk_kept")
    return rates({k: sum(r[k] for r in rows) for k in keys})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/benchmarks/selection_quality")
    ap.add_argument("--datasets", type=int, default=4, help=f"1-{len(VARIANTS)}")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--classes", type=int, help="K per loop round (default: the demo's, 16)")
    ap.add_argument("--final-classes", type=int, help="K of the pooled classification (default: the demo's, 32)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    if not 1 <= args.datasets <= len(VARIANTS):
        ap.error(f"--datasets must be 1-{len(VARIANTS)}")
    out = Path(args.out).resolve()
    classify = {k: v for k, v in (("classes", args.classes), ("final_classes", args.final_classes)) if v}
    names = make_project(out, args.datasets, classify)
    seconds = run_selection(out, names, args.cores)
    results = out / "results"
    cutoffs = [float(c) for c in yaml.safe_load((REPO / "config" / "config.yaml").read_text())["selection"]["cutoffs"]]
    report = {"datasets": names, "seconds": round(seconds, 1), "workflow": {}, "one_pass": {}, "per_dataset": {},
              "by_label": {}}
    for cutoff in cutoffs:
        rows, peer = [], []
        for name in names:
            truth = pd.read_csv(results / "simulate" / name / "ground_truth.csv")
            star = results / "select" / name / "final" / f"score_le_{cutoff:g}.star"
            kept = stack_indices(star)
            rows.append(figures(truth, kept))
            peer.append(figures(truth, one_pass(results, name, cutoff)))
            report["per_dataset"].setdefault(name, {})[f"{cutoff:g}"] = {"workflow": rates(rows[-1]),
                                                                         "one_pass": rates(peer[-1])}
            by = report["by_label"].setdefault(f"{cutoff:g}", {})
            for label, (n, n_kept) in kept_by_label(truth, kept).items():
                total = by.setdefault(label, [0, 0])
                total[0], total[1] = total[0] + n, total[1] + n_kept
        report["workflow"][f"{cutoff:g}"], report["one_pass"][f"{cutoff:g}"] = pooled(rows), pooled(peer)
    total = {k: sum(r[k] for r in rows) for k in ("complete", "partial", "junk")}  # any cutoff's rows
    print(f"{len(names)} simulated datasets ({total['complete']:,} complete particles, {total['junk']:,} junk "
          f"images, {total['partial']:,} with a domain missing); selection in {seconds:.0f} s")
    print("cutoff  workflow: complete kept  junk removed  partial kept | one classification: complete kept  "
          "junk removed | workflow/one-pass complete kept")
    for c in report["workflow"]:
        w, p = report["workflow"][c], report["one_pass"][c]
        ratio = w["complete_kept"] / p["complete_kept"] if p["complete_kept"] else float("nan")
        print(f"{c:>6}  {w['complete_kept']:>22.1%}  {w['junk_removed']:>12.1%}  {w['partial_kept']:>12.1%} | "
              f"{p['complete_kept']:>32.1%}  {p['junk_removed']:>12.1%} | {ratio:.2f}")
    for name, per in report["per_dataset"].items():
        w = per.get("3.5", {}).get("workflow")
        if w:
            print(f"  {name} at 3.5: complete kept {w['complete_kept']:.1%}, junk removed {w['junk_removed']:.1%}")
    by = report["by_label"].get("3.5", {})
    if by:
        print("  kept at 3.5 by ground-truth label, pooled: " + ", ".join(
            f"{label} {kept / n:.0%} of {n:,}" for label, (n, kept) in sorted(by.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=lambda v: None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
