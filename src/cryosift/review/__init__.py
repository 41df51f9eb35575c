"""Review scores in the browser: sort and grade class averages, fine-tune the scorer from the grades.

:func:`create_app` builds the web app (Flask) over a workflow results folder or one scores.star;
``cryosift review`` serves it on 127.0.0.1. The catalog (:mod:`.catalog`) finds the scored steps
and reads each one with the readers of the scoring outputs, :mod:`.grades` keeps the grades CSV
that ``cryosift train --labels`` reads, and :mod:`.finetune` runs ``cryosift train`` and
``cryosift score`` in the background.
"""

from cryosift.review.app import create_app, default_grades_path
from cryosift.review.catalog import Step, StepTable, find_steps, load_step
from cryosift.review.grades import GradeBook, GradeKey, normalise_grade

__all__ = ["create_app", "default_grades_path", "find_steps", "load_step", "Step", "StepTable", "GradeBook",
           "GradeKey", "normalise_grade"]
