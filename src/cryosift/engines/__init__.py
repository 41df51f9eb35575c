"""Classification and reconstruction engines behind one protocol (builtin, RELION, cryoSPARC)."""

from cryosift.engines.base import (
    OPERATIONS,
    Class2DResult,
    Engine,
    EngineBase,
    UnsupportedOperation,
    available_engines,
    get_engine,
    register_engine,
)

__all__ = [
    "OPERATIONS", "Class2DResult", "Engine", "EngineBase", "UnsupportedOperation", "available_engines",
    "get_engine", "register_engine",
]
