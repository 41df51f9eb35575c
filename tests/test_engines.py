"""The engine protocol and registry."""

import pytest

from cryosift.engines import Engine, EngineBase, UnsupportedOperation, available_engines, base, get_engine, register_engine
from cryosift.engines.builtin import BuiltinEngine


@pytest.fixture
def registry(monkeypatch):
    """Registrations made in a test are undone afterwards."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_builtin_engine_is_registered_and_follows_the_protocol():
    engine = get_engine("builtin", device="cpu", threads=1)
    assert isinstance(engine, BuiltinEngine)
    assert isinstance(engine, Engine)
    assert engine.supports("classify2d") and engine.supports("reconstruct") and engine.supports("abinit")
    assert not engine.supports("extract")
    assert {"builtin", "relion", "cryosparc"} <= set(available_engines())


@pytest.mark.parametrize("operation", ["extract"])
def test_operations_outside_capabilities_raise_instead_of_faking(operation, tmp_path):
    engine = get_engine("builtin")
    with pytest.raises(UnsupportedOperation, match=f"builtin engine does not provide {operation}"):
        getattr(engine, operation)("particles.star", tmp_path)


def test_unknown_engine_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown engine 'frealign'.*builtin"):
        get_engine("frealign")


def test_registered_factories_are_built_with_their_arguments(registry):
    class Toy(EngineBase):
        name = "toy"
        capabilities = frozenset({"extract"})

        def __init__(self, scale=1):
            self.scale = scale

        def extract(self, particles, job_dir, **options):
            return self.scale * len(particles)

    register_engine("Toy", Toy)
    engine = get_engine("toy", scale=3)
    assert engine.extract([1, 2], "job") == 6
    with pytest.raises(UnsupportedOperation):
        engine.classify2d([1], "job")


def test_missing_engine_module_is_reported_as_unavailable(registry):
    register_engine("ghost", "cryosift.engines.no_such_module:Ghost")
    with pytest.raises(ValueError, match="engine 'ghost' is not available"):
        get_engine("ghost")
