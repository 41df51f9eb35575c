"""cryosift: score cryo-EM 2D class averages, select particles, validate the selection per cutoff."""

from cryosift.errors import InputError

__version__ = "0.1.0"

__all__ = ["InputError", "__version__"]
