"""Files shipped inside the package, named without importing torch (the workflow reads them)."""

from __future__ import annotations

from pathlib import Path

#: The model shipped with the package (models/default.pt; see MODEL_CARD.md there).
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "default.pt"
#: Name that selects the shipped model wherever a model is asked for.
DEFAULT_MODEL_NAME = "default"


def model_file(model: str | Path | None) -> Path:
    """The checkpoint file of a model setting: None or ``"default"`` -> :data:`SHIPPED_MODEL`."""
    if model is None or str(model) == DEFAULT_MODEL_NAME:
        return SHIPPED_MODEL
    return Path(model)
