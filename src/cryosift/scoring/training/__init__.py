"""Training the scoring model on simulated, ground-truth-graded class averages (docs/training.md).

Modules: ``grades`` (ground-truth measures -> rubric grade), ``truth`` (purity, alignment and
FRC of each class against the simulation), ``generate`` (simulate, classify, grade one training
dataset), ``data`` (examples as tensors, splits by structure, augmentation), ``train`` (the
resumable training loop), ``labels`` (user grades and RELION selections for fine-tuning),
``evaluate`` (quality metrics against the ground truth).
"""

from cryosift.scoring.training.grades import class_grade, grade_letter, letter_grade

__all__ = ["class_grade", "grade_letter", "letter_grade"]
