"""The review web app (Flask): JSON API over the catalog, grades and fine-tuning, and one page.

Routes
------
``GET /``                      the page (templates/review.html, static/review.js, review.css)
``GET /api/steps``             datasets and steps found, the grades file, the fine-tuning status
``GET /api/classes?step=K``    one step's classes: scores, features, band, grade, particles kept per cutoff
``GET /api/image?step=K&class=N``  one class average as PNG
``POST /api/grade``            ``{"step": K, "class": N, "grade": "B"}`` (``null`` removes it)
``GET|POST /api/finetune``     the fine-tuning run's status / start one

Bad input answers 400 (or 404 for an unknown step or class) with ``{"error": "<file>: <problem>"}``
and writes nothing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from flask import Flask, abort, jsonify, render_template, request

from cryosift.errors import InputError
from cryosift.review.catalog import Step, StepTable, find_steps, load_step
from cryosift.review.finetune import FineTuner
from cryosift.review.grades import GradeBook, GradeKey
from cryosift.review.images import class_image, png_bytes
from cryosift.scoring.gallery import BANDS

#: Columns shown as features in the detail view, with their labels (others follow as they are).
FEATURES = {"score": "score", "class_score": "class score (0-1)", "mass_kDa": "mass (kDa)",
            "resolution_A": "resolution (Å)", "distribution": "distribution", "particles": "particles",
            "pixel_size_A": "pixel size (Å/px)", "mass_dmean_kDa": "mass - job mean (kDa)",
            "mass_dmedian_kDa": "mass - job median (kDa)", "mass_dmode_kDa": "mass - job mode (kDa)",
            "network_output": "network output"}


def default_grades_path(path: str | Path) -> Path:
    """``<folder>/review/grades.csv`` for a results folder, beside a lone scores.star otherwise."""
    p = Path(path)
    return (p.parent if p.is_file() else p) / "review" / "grades.csv"


def band_colours(cutoffs) -> list[dict]:
    """Colour of each score band: <= first cutoff ... above the last (the gallery's colours for three)."""
    colours = [c for _, c in BANDS]
    if len(cutoffs) + 1 != len(colours):
        import matplotlib

        cmap = matplotlib.colormaps["RdYlGn_r"]
        colours = [matplotlib.colors.to_hex(cmap(x)) for x in np.linspace(0.05, 0.95, len(cutoffs) + 1)]
    return [{"upto": float(c), "colour": colours[i]} for i, c in enumerate(cutoffs)] + \
           [{"upto": None, "colour": colours[-1]}]


def band_of(score: float, cutoffs) -> int:
    """Index of the band a score falls in (0: <= first cutoff)."""
    for i, c in enumerate(cutoffs):
        if score <= c:
            return i
    return len(cutoffs)


def _number(value):
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not np.isfinite(x):
        return None
    return int(x) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else x


class Review:
    """What one review server holds: the steps under its path, their tables, grades and fine-tuning."""

    def __init__(self, path: str | Path, grades: str | Path | None = None, init: str = "default", train_args=(),
                 score_args=()):
        self.path = Path(path)
        self.grades = GradeBook(grades if grades is not None else default_grades_path(self.path))
        self.steps = self._find()
        self.finetune = FineTuner(self.grades.path.parent / "finetune", self.grades, self.scores_of, init=init,
                                  train_args=train_args, score_args=score_args)
        self._tables: dict = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Look again for steps (the workflow may have scored more since the server started)."""
        try:
            self.steps = self._find()
        except InputError:
            pass

    def _find(self) -> dict:
        """Steps under the path, less the rescoring of fine-tuning runs (kept beside the grades)."""
        runs = (self.grades.path.parent / "finetune").resolve()
        steps = {s.key: s for s in find_steps(self.path) if not s.scores.resolve().is_relative_to(runs)}
        if not steps:
            raise InputError(self.path, "no scores.star below this folder other than fine-tuning runs")
        return steps

    def step(self, key: str) -> Step:
        if key not in self.steps:
            self.refresh()
        if key not in self.steps:
            abort(404, description=f"no step {key!r} in {self.path}")
        return self.steps[key]

    def table(self, key: str) -> StepTable:
        """The step's table, read again when any of its files changed."""
        step = self.step(key)
        files = [step.scores, step.csv, step.selection]
        stamp = tuple(p.stat().st_mtime_ns if p is not None and p.exists() else None for p in files)
        with self._lock:
            cached = self._tables.get(key)
            if cached is None or cached[0] != stamp:
                cached = (stamp, load_step(step))
                self._tables[key] = cached
            return cached[1]

    def scores_of(self, dataset: str, step: str) -> dict:
        for s in self.steps.values():
            if s.dataset == dataset and s.step == step:
                t = self.table(s.key).classes
                return dict(zip(t["class"].astype(int), t["score"].astype(float)))
        return {}

    def grade_key(self, table: StepTable, cls: int = 0) -> GradeKey:
        job = "" if table.job is None else os.path.relpath(table.job, self.grades.path.parent.resolve())
        return GradeKey(table.step.dataset, table.step.step, job, int(cls))

    def classes_json(self, key: str) -> dict:
        t = self.table(key)
        grades = self.grades.grades_of(self.grade_key(t))
        rows = []
        for row in t.classes.to_dict("records"):  # per-column types: counts stay whole numbers
            cls = int(row["class"])
            features = {c: _number(row[c]) for c in t.classes.columns if c != "class"}
            rows.append({"class": cls, "score": float(row["score"]), "band": band_of(float(row["score"]), t.cutoffs),
                         "distribution": features.get("distribution"), "resolution_A": features.get("resolution_A"),
                         "mass_kDa": features.get("mass_kDa"), "particles": features.get("particles"),
                         "features": features, "grade": grades.get(cls),
                         "kept": {f"{c:g}": int(t.kept.loc[cls, f"le_{c:g}"]) for c in t.cutoffs},
                         "round_status": t.round_status.get(cls),
                         "image": f"/api/image?step={key}&class={cls}"})
        totals = {f"{c:g}": int(t.kept[f"le_{c:g}"].sum()) for c in t.cutoffs}
        return {"step": key, "dataset": t.step.dataset, "name": t.step.step, "scores": str(t.step.scores),
                "job": None if t.job is None else str(t.job), "cutoffs": list(t.cutoffs),
                "bands": band_colours(t.cutoffs), "kept_source": t.kept_source, "kept_total": totals,
                "feature_labels": FEATURES, "classes": rows}


def create_app(path: str | Path, grades: str | Path | None = None, init: str = "default", train_args=(),
               score_args=()) -> Flask:
    """The review app over a results folder or one scores.star.

    Parameters
    ----------
    path : str or Path
        Workflow results folder (or a folder above several) or one ``scores.star``.
    grades : str or Path, optional
        Grades CSV (default: ``review/grades.csv`` in the folder, or beside the scores.star).
    init : str
        Model that fine-tuning starts from (``default``: the shipped one).
    train_args, score_args : sequence of str
        More ``cryosift train`` options for fine-tuning (e.g. ``--epochs 10``) and ``cryosift
        score`` options for rescoring with the fine-tuned model (e.g. ``--device cpu``).

    Raises
    ------
    InputError
        ``path`` holds no scores (or a lone scores.star is unreadable).
    """
    review = Review(path, grades, init, train_args, score_args)
    if Path(path).is_file():
        load_step(next(iter(review.steps.values())))  # a lone damaged file is refused at the start
    here = Path(__file__).parent
    app = Flask(__name__, static_folder=str(here / "static"), template_folder=str(here / "templates"))
    app.config["review"] = review

    @app.errorhandler(InputError)
    def bad_input(exc):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(404)
    def not_found(exc):
        return jsonify(error=exc.description), 404

    @app.errorhandler(400)
    def bad_request(exc):
        return jsonify(error=exc.description), 400

    @app.get("/")
    def index():
        return render_template("review.html", path=str(review.path.resolve()))

    @app.get("/api/steps")
    def steps():
        review.refresh()
        return jsonify(path=str(review.path.resolve()), grades=str(review.grades.path.resolve()),
                       steps=[{"key": s.key, "dataset": s.dataset, "step": s.step, "scores": str(s.scores)}
                              for s in review.steps.values()],
                       finetune=review.finetune.status())

    @app.get("/api/classes")
    def classes():
        return jsonify(review.classes_json(_arg("step")))

    @app.get("/api/image")
    def image():
        t = review.table(_arg("step"))
        cls = _class_arg(request.args.get("class"))
        rows = np.flatnonzero(t.classes["class"].to_numpy() == cls)
        if len(rows) == 0:
            abort(404, description=f"no class {cls} in {t.step.scores}")
        data = png_bytes(class_image(t.step, t.image_names[rows[0]]))
        return app.response_class(data, mimetype="image/png", headers={"Cache-Control": "max-age=60"})

    @app.post("/api/grade")
    def grade():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "step" not in body or "class" not in body or "grade" not in body:
            abort(400, description='expected JSON {"step": ..., "class": ..., "grade": ...}')
        t = review.table(str(body["step"]))
        cls = _class_arg(body["class"])
        if cls not in set(t.classes["class"].astype(int)):
            abort(404, description=f"no class {cls} in {t.step.scores}")
        stored = review.grades.set(review.grade_key(t, cls), body["grade"])
        return jsonify(step=t.step.key, **{"class": cls}, grade=stored, grades=str(review.grades.path))

    @app.get("/api/finetune")
    def finetune_status():
        return jsonify(review.finetune.status())

    @app.post("/api/finetune")
    def finetune_start():
        return jsonify(review.finetune.start()), 202

    return app


def _arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        abort(400, description=f"missing ?{name}=")
    return value


def _class_arg(value) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        abort(400, description=f"class {value!r} is not a class number")
    return number
