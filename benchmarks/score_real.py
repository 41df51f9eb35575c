"""How scoring models rank real class averages graded by eye, beside RELION's class ranker.

Usage::

    python benchmarks/score_real.py [FOLDER ...] [--model default] [--model B.pt] [--model git:REV]
                                    [--peer git:a0046ee] [--resolution 10] [--pixel-size SET=APIX]
                                    [--cutoff 3.5] [--threads 1] [--without-empty-rule] [--csv per_class.csv]

FOLDER (default: ``../shared/realdata`` beside the repository) is searched recursively for real
sets: ``NAME_classes.mrcs`` with ``NAME_grades.csv`` beside it, one row per class in stack order:
``class`` (1-based), ``distribution`` (fraction of the job's particles), ``grade`` (the rubric by
eye, 1 = A best ... 5 = F) and optionally ``ranker_kept`` (1 for the classes RELION's class ranker
kept). These sets are for measuring only: never train, calibrate or pick thresholds on them.

Each set is scored as a user would score a plain stack (``cryosift score NAME_classes.mrcs
--features F.csv``): F.csv holds the class, the set's ``distribution`` and one resolution for all
classes (``--resolution``, 10 Å by default: real per-class estimates are not available). The
pixel size comes from ``--pixel-size SET=APIX`` (SET: the set's name as printed), else a
``pixel_size_A`` column of the grades CSV, else the stack's MRC header (voxel size); a set with
none of them is an error naming the file.

Models (``--model``, repeatable; default: the shipped model): ``default`` (the working tree's
``src/cryosift/models/default.pt``), a checkpoint path, or ``git:REV`` (``default.pt`` as
committed at git revision REV) or ``git:REV:PATH`` (any checkpoint committed at REV); a spec
ending in ``+unlevelled`` scores without the solvent levelling of masked class averages
(:mod:`cryosift.scoring.solvent`), as releases before it did. The peer (``--peer``, default
:data:`PEER`) is the shipped model future models are compared against, pinned by the commit
that shipped it, so it stays the same when ``default.pt`` is replaced, and scored unlevelled,
as that release scored; ``--peer none`` leaves it out.

Printed per set and scorer: classes, Spearman(score, grade), AUC of grade >= 4 against the rest
(1 = every bad class scores worse than every other), classes graded <= 2.5 kept at the cutoff
(score <= 3.5) and graded >= 4 kept, the score range, and the mean score of the good (<= 2.5)
and bad (>= 4) classes; RELION's class ranker where ``ranker_kept`` exists (its kept/not-kept
decision: its AUC counts a dropped bad class above a kept one, ties half), and which
out-of-domain criteria (``cryosift.scoring.domain``) the job's scores meet. Scores follow the
library's rule that a class with no particles scores no better than 5.0 (distribution 0 here;
``cryosift.scoring.empty``); ``--without-empty-rule`` scores such classes as the network does.
"""

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from cryosift.errors import InputError
from cryosift.io import read_stack
from cryosift.scoring import decode, load_classes, score_classes
from cryosift.scoring.domain import check_scores_domain
from cryosift.scoring.job import resolve_model
from cryosift.scoring.training.evaluate import roc_auc

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "realdata"
SHIPPED_PATH = "src/cryosift/models/default.pt"
#: The shipped model that new models are compared against: default.pt as of this commit.
PEER = "git:a0046ee"
GOOD_GRADE = 2.5
BAD_GRADE = 4.0


@dataclass
class RealSet:
    """One graded real job: its stack, grades and pixel size (Å/px)."""

    name: str
    stack: Path
    grades: pd.DataFrame
    grades_path: Path
    pixel_size: float


def find_sets(folders, pixel_sizes: dict) -> list[RealSet]:
    """Real sets below ``folders`` (see the module description), sorted by name."""
    sets = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise InputError(folder, "not a folder of real sets")
        for stack in sorted(folder.rglob("*_classes.mrcs")):
            stem = stack.name[: -len("_classes.mrcs")]
            grades_path = stack.with_name(f"{stem}_grades.csv")
            if not grades_path.exists():
                print(f"skipping {stack}: no {grades_path.name} beside it", file=sys.stderr)
                continue
            rel = stack.parent.relative_to(folder)
            name = f"{rel}/{stem}" if str(rel) != "." else stem
            grades = pd.read_csv(grades_path)
            for col in ("class", "distribution", "grade"):
                if col not in grades:
                    raise InputError(grades_path, f"no {col} column (needs class, distribution, grade)")
            apix = pixel_sizes.get(name, pixel_sizes.get(stem))
            if apix is None and "pixel_size_A" in grades:
                apix = float(grades["pixel_size_A"].iloc[0])
            if apix is None:
                apix = read_stack(stack, indices=[0])[1]
            if not apix or apix <= 0:
                raise InputError(stack, f"no pixel size: the header has none; give it with --pixel-size {name}=APIX")
            sets.append(RealSet(name, stack, grades, grades_path, float(apix)))
    if not sets:
        raise InputError(None, f"no real sets (NAME_classes.mrcs + NAME_grades.csv) in {', '.join(map(str, folders))}")
    return sorted(sets, key=lambda s: s.name)


UNLEVELLED = "+unlevelled"


def load_model(spec: str, workdir: Path):
    """The scoring model of a spec (see the module description), on the CPU."""
    base = spec.removesuffix(UNLEVELLED)
    model = resolve_model(model_checkpoint(base, workdir), device="cpu")
    if spec.endswith(UNLEVELLED):
        model.config = dataclasses.replace(
            model.config, preprocessing=dataclasses.replace(model.config.preprocessing, level_solvent=False))
    return model


def model_checkpoint(spec: str, workdir: Path) -> str:
    """A checkpoint path for a model spec: ``default``, a path, ``git:REV`` or ``git:REV:PATH``."""
    if not spec.startswith("git:"):
        return spec
    rev, _, path = spec[4:].partition(":")
    path = path or SHIPPED_PATH
    out = workdir / (re.sub(r"[^A-Za-z0-9._-]", "_", f"{rev}_{path}"))
    try:
        blob = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], check=True,
                              capture_output=True).stdout
    except subprocess.CalledProcessError as exc:
        raise InputError(None, f"cannot read {path} at git revision {rev}: {exc.stderr.decode().strip()}") from None
    out.write_bytes(blob)
    return str(out)


def score_set(real: RealSet, model, resolution: float, workdir: Path, empty_rule: bool = True) -> pd.DataFrame:
    """Score table of one set's classes, in stack order, through the plain-stack path of ``cryosift score``.

    Without ``empty_rule`` the ``score`` column is the decoded network output, as before classes
    with no particles were held to 5.0 (:mod:`cryosift.scoring.empty`).
    """
    features = workdir / f"{real.name.replace('/', '_')}_features.csv"
    pd.DataFrame({"class": real.grades["class"], "distribution": real.grades["distribution"],
                  "resolution_A": resolution}).to_csv(features, index=False)
    classes = load_classes(real.stack, features=features, pixel_size=real.pixel_size)
    table = score_classes(classes, model)
    if not empty_rule:
        table["score"] = decode(table["network_output"].to_numpy(), model.config.decode,
                                table["resolution_A"].to_numpy(), model.config.features.resolution_fill)
    return table


def metrics(score: np.ndarray, grade: np.ndarray, cutoff: float) -> dict:
    """The per-set figures of one scorer (lower score = better, as the grades)."""
    good, bad = grade <= GOOD_GRADE, grade >= BAD_GRADE
    kept = score <= cutoff
    return {
        "classes": len(score),
        "spearman": float(spearmanr(score, grade)[0]),
        "auc": roc_auc(score[bad], score[~bad]),
        "good_kept": f"{int(kept[good].sum())} / {int(good.sum())}",
        "bad_kept": f"{int(kept[bad].sum())} / {int(bad.sum())}",
        "scores": f"{score.min():.2f}-{score.max():.2f}",
        "mean_good": float(score[good].mean()) if good.any() else float("nan"),
        "mean_bad": float(score[bad].mean()) if bad.any() else float("nan"),
    }


def ranker_metrics(kept: np.ndarray, grade: np.ndarray) -> dict:
    """The class ranker's kept/dropped decision as a two-valued score (dropped = worse)."""
    good, bad = grade <= GOOD_GRADE, grade >= BAD_GRADE
    dropped = (~kept).astype(np.float64)
    return {"classes": len(kept), "spearman": float("nan"), "auc": roc_auc(dropped[bad], dropped[~bad]),
            "good_kept": f"{int(kept[good].sum())} / {int(good.sum())}",
            "bad_kept": f"{int(kept[bad].sum())} / {int(bad.sum())}",
            "scores": "kept / dropped", "mean_good": float("nan"), "mean_bad": float("nan")}


def fmt(value, digits=2) -> str:
    return "–" if isinstance(value, float) and not np.isfinite(value) else (
        f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", help=f"folders of real sets (default: {DEFAULT_FOLDER})")
    ap.add_argument("--model", action="append", help="default, a checkpoint, git:REV or git:REV:PATH (repeatable; "
                                                     "default: the shipped model)")
    ap.add_argument("--peer", default=PEER, help=f"the previous shipped model to compare with (default: {PEER}; "
                                                 "'none' leaves it out)")
    ap.add_argument("--resolution", type=float, default=10.0, help="Å, one for all classes (default: %(default)s)")
    ap.add_argument("--pixel-size", action="append", default=[], metavar="SET=APIX",
                    help="Å/px of a set (default: grades CSV pixel_size_A, else the MRC header)")
    ap.add_argument("--cutoff", type=float, default=3.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--without-empty-rule", action="store_true",
                    help="score classes with no particles as the network does (before the empty-class rule)")
    ap.add_argument("--csv", help="write the per-class scores of every model here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pixel_sizes = {}
    for item in args.pixel_size:
        name, _, value = item.rpartition("=")
        try:
            pixel_sizes[name] = float(value)
        except ValueError:
            ap.error(f"--pixel-size wants SET=APIX, got {item!r}")
    t0 = time.perf_counter()
    sets = find_sets(args.folders or [DEFAULT_FOLDER], pixel_sizes)
    specs = list(dict.fromkeys(args.model or ["default"]))
    peers = [] if args.peer == "none" else [args.peer if args.peer.endswith(UNLEVELLED) else args.peer + UNLEVELLED]
    rows, per_class = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {}
        for spec in specs + [p for p in peers if p not in specs]:
            models[spec] = load_model(spec, work)
        for real in sets:
            grade = real.grades["grade"].to_numpy(np.float64)
            for spec, model in models.items():
                table = score_set(real, model, args.resolution, work, not args.without_empty_rule)
                score = table["score"].to_numpy(np.float64)
                peer = spec in peers and spec not in specs
                warnings = check_scores_domain(score, table["distribution"], None if args.without_empty_rule
                                               else table["empty_class"], cutoff=args.cutoff)
                rows.append({"set": real.name, "scorer": f"{spec} (peer)" if peer else spec,
                             **metrics(score, grade, args.cutoff),
                             "out_of_domain": ", ".join(w.code for w in warnings) or "no"})
                per_class.append(pd.DataFrame({"set": real.name, "model": spec, "class": real.grades["class"],
                                               "distribution": real.grades["distribution"], "grade": grade,
                                               "score": score}))
            if "ranker_kept" in real.grades:
                kept = real.grades["ranker_kept"].to_numpy(np.int64) == 1
                rows.append({"set": real.name, "scorer": "RELION class ranker (peer)",
                             **ranker_metrics(kept, grade), "out_of_domain": "–"})
    print(f"# real class averages: {len(sets)} sets, resolution {args.resolution:g} Å for all classes, "
          f"cutoff {args.cutoff:g}; good = graded <= {GOOD_GRADE:g}, bad = graded >= {BAD_GRADE:g}; "
          f"empty-class rule {'off' if args.without_empty_rule else 'on'}")
    for real in sets:
        print(f"#   {real.name}: {real.stack} ({len(real.grades)} classes, {real.pixel_size:.4g} Å/px)")
    head = ["set", "scorer", "classes", f"Spearman(score, grade)", "AUC bad vs rest",
            f"good kept at {args.cutoff:g}", f"bad kept at {args.cutoff:g}", "scores", "mean good", "mean bad",
            "out-of-domain warning"]
    keys = ["set", "scorer", "classes", "spearman", "auc", "good_kept", "bad_kept", "scores", "mean_good",
            "mean_bad", "out_of_domain"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r[k], 3 if k == "auc" else 2) for k in keys) + " |")
    if args.csv:
        pd.concat(per_class, ignore_index=True).to_csv(args.csv, index=False, float_format="%.6g")
    print(f"# {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
