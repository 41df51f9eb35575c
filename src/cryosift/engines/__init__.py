"""Classification and reconstruction engines behind one protocol (builtin, RELION, cryoSPARC)."""

from cryosift.engines.base import (
    OPERATIONS,
    AbinitResult,
    Class2DResult,
    Engine,
    EngineBase,
    ExtractionResult,
    ReconstructionResult,
    Resume,
    UnsupportedOperation,
    available_engines,
    get_engine,
    makes_abinit_half_maps,
    register_engine,
)

__all__ = [
    "OPERATIONS", "AbinitResult", "Class2DResult", "Engine", "EngineBase", "ExtractionResult", "ReconstructionResult",
    "Resume", "UnsupportedOperation", "available_engines",
    "get_engine", "makes_abinit_half_maps", "register_engine",
]
