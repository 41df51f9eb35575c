"""The engine seam: commands call the protocol with no branching on an engine's name, and every
engine returns the same typed records, naming files in one layout."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import cryosift.commands
from cryosift.cli import main
from cryosift.engines import (
    AbinitResult,
    Class2DResult,
    EngineBase,
    ReconstructionResult,
    Resume,
    get_engine,
    register_engine,
)
from cryosift.engines.base import _REGISTRY, BUILTIN_TUNING_2D, known_options
from cryosift.io.mrc import read_map
from cryosift.io.star import read_particles_star, write_particles_star
from tests.conftest import make_particle_set

ENGINE_NAMES = {"builtin", "relion", "cryosparc"}
COMMANDS = Path(cryosift.commands.__file__).parent


def _mentions_engine(node: ast.AST) -> bool:
    """A string constant naming an engine, or a name/attribute called ``engine``."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.lower() in ENGINE_NAMES:
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in ("engine", "name"):
            return True
        if isinstance(sub, ast.Name) and sub.id == "engine":
            return True
    return False


def engine_branches(source: str) -> list[int]:
    """Lines of comparisons (==, !=, in, is, match) that involve an engine's name."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [o for o in operands if _mentions_engine(o)]
            constants = [o for o in operands if isinstance(o, (ast.Constant, ast.Tuple, ast.List, ast.Set))]
            if names and (constants or len(names) == len(operands)):
                lines.append(node.lineno)
        elif isinstance(node, ast.Match) and _mentions_engine(node.subject):
            lines.append(node.lineno)
    return lines


def test_the_branch_finder_finds_branches_on_engine_names():
    src = ("if args.engine == 'builtin':\n    pass\n"
           "x = 1 if engine.name in ('relion', 'cryosparc') else 2\n"
           "if 'cryosparc' != kind:\n    pass\n"
           "match args.engine:\n    case 'relion':\n        pass\n"
           "ok = args.classes == 3\n")
    assert sorted(engine_branches(src)) == [1, 3, 4, 6]


@pytest.mark.parametrize("path", sorted(COMMANDS.glob("*.py")), ids=lambda p: p.name)
def test_commands_never_branch_on_an_engine_name(path):
    assert engine_branches(path.read_text()) == [], f"{path.name} branches on an engine's name"


# --------------------------------------------------------------------------- a toy engine

class Recorder(EngineBase):
    """An engine that records what the commands ask of it and writes the common layout."""

    name = "recorder"
    capabilities = frozenset({"classify2d", "abinit"})
    calls: list = []

    def __init__(self, **constructor):
        Recorder.calls.append(("init", constructor))

    def classify2d(self, particles, job_dir, resume=Resume.AFRESH, **options) -> Class2DResult:
        Recorder.calls.append(("classify2d", Resume(resume), options))
        job = Path(job_dir)
        return Class2DResult(self.name, job, 3, job / "run_it003_model.star", job / "run_it003_data.star",
                             job / "run_it003_classes.mrcs")

    def abinit(self, particles, job_dir, **options) -> AbinitResult:
        Recorder.calls.append(("abinit", len(particles), options))
        job = Path(job_dir)
        return AbinitResult(self.name, job, job / "abinit.mrc", job / "abinit_particles.star")


@pytest.fixture
def recorder():
    saved = dict(_REGISTRY)
    Recorder.calls = []
    register_engine("recorder", Recorder)
    yield Recorder
    _REGISTRY.clear()
    _REGISTRY.update(saved)


@pytest.mark.parametrize("flags, expected", [([], Resume.AFRESH), (["--continue"], Resume.CONTINUE),
                                             (["--continue-if-same"], Resume.IF_SAME)])
def test_classify2d_command_passes_settings_and_resume_to_any_engine(recorder, tmp_path, flags, expected):
    star = tmp_path / "p.star"
    write_particles_star(star, make_particle_set(tmp_path, n=8))
    assert main(["classify2d", str(star), "-o", str(tmp_path / "job"), "--engine", "recorder", "-K", "7",
                 "--diameter", "120", "--seed", "9", *flags]) == 0
    (_, constructor), (op, resume, options) = recorder.calls
    assert op == "classify2d" and resume is expected
    assert constructor["mpi"] == 1 and constructor["gpu"] is False
    assert options["classes"] == 7 and options["particle_diameter"] == 120.0 and options["seed"] == 9
    assert set(BUILTIN_TUNING_2D) <= set(options)


def test_abinit_command_calls_the_engine_and_copies_nothing(recorder, tmp_path):
    star = tmp_path / "p.star"
    write_particles_star(star, make_particle_set(tmp_path, n=12, with_3d=False))
    out = tmp_path / "ab"
    assert main(["abinit", str(star), "-o", str(out), "--engine", "recorder", "--seed", "4", "--symmetry", "D2",
                 "--final-resolution", "9"]) == 0
    _, (op, n, options) = recorder.calls
    assert op == "abinit" and n == 12
    assert options["seed"] == 4 and options["symmetry"] == "D2" and options["final_resolution"] == 9.0
    assert not out.exists() or not any(out.iterdir())  # files are the engine's business


def test_unknown_options_name_the_engine():
    assert known_options("RELION", {"classes": 2, "box": 64}, {"classes"}, {"box"}) == {"classes": 2}
    with pytest.raises(ValueError, match="unknown RELION option\\(s\\): psi"):
        known_options("RELION", {"psi": 2}, {"classes"})


# --------------------------------------------------------------------------- the builtin engine

def test_builtin_reconstruction_is_a_typed_record_in_the_common_layout(tmp_path):
    pset = make_particle_set(tmp_path, n=40, box=16)
    result = get_engine("builtin", device="cpu", threads=1).reconstruct(pset, tmp_path / "job", symmetry="C1")
    assert isinstance(result, ReconstructionResult) and result.engine == "builtin"
    assert result.map == tmp_path / "job/reconstruction.mrc"
    assert result.half_maps == (tmp_path / "job/reconstruction_half1.mrc", tmp_path / "job/reconstruction_half2.mrc")
    full, apix = read_map(result.map)
    assert full.shape == (16, 16, 16) and apix == pytest.approx(2.5)
    assert all(read_map(h)[0].shape == full.shape for h in result.half_maps)
    only = get_engine("builtin", device="cpu").reconstruct(pset, tmp_path / "nohalf", half_maps=False)
    assert only.half_maps is None and not (tmp_path / "nohalf/reconstruction_half1.mrc").exists()


def test_builtin_abinit_is_a_typed_record_in_the_common_layout(tmp_path):
    pset = make_particle_set(tmp_path, n=40, box=16, with_3d=False)
    result = get_engine("builtin", device="cpu", threads=1).abinit(
        pset, tmp_path / "ab", seed=3, initial_resolution=20.0, final_resolution=10.0, initial_batch=20,
        final_batch=40, iterations=(1, 1, 1), starts=1, select_resolution=20.0)
    assert isinstance(result, AbinitResult) and result.engine == "builtin" and result.seed == 3
    assert result.map == tmp_path / "ab/abinit.mrc" and result.particles == tmp_path / "ab/abinit_particles.star"
    assert result.half_maps == (tmp_path / "ab/abinit_half1.mrc", tmp_path / "ab/abinit_half2.mrc")
    posed = read_particles_star(result.particles)
    assert len(posed) == 40 and {"rlnAngleRot", "rlnAngleTilt", "rlnRandomSubset"} <= set(posed.particles)
    volume, _ = read_map(result.map)
    assert volume.shape == (16, 16, 16) and np.isfinite(volume).all()


def test_builtin_resume_if_same_starts_afresh_when_settings_changed(tmp_path):
    star = tmp_path / "p.star"
    write_particles_star(star, make_particle_set(tmp_path, n=30, box=16, with_3d=False))
    engine = get_engine("builtin", device="cpu", threads=1)
    engine.classify2d(star, tmp_path / "job", classes=2, iterations=1, export=False)
    from cryosift.engines.builtin.classify import SettingsChanged

    with pytest.raises(SettingsChanged, match="cannot continue"):
        engine.classify2d(star, tmp_path / "job", Resume.CONTINUE, classes=3, iterations=2, export=False)
    result = engine.classify2d(star, tmp_path / "job", Resume.IF_SAME, classes=3, iterations=2, export=False)
    assert isinstance(result, Class2DResult) and result.iteration == 2
    assert len(result.class_averages().images) == 3


# --------------------------------------------------------------------------- RELION's translation

def test_relion_takes_the_common_abinit_options(tmp_path):
    from cryosift.engines.relion import _initial_model_options

    pset = make_particle_set(tmp_path, n=4, box=32, pixel_size=4.0, with_3d=False)
    got = _initial_model_options({"seed": 7, "symmetry": "C2", "initial_resolution": 30.0, "final_resolution": 5.0,
                                  "initial_batch": 50, "final_batch": 90, "iterations": (4, 5, 6),
                                  "mask_diameter": None}, pset)
    assert got == {"particle_diameter": pytest.approx(0.85 * 32 * 4.0), "sgd_ini_resol": 30.0, "sgd_ini_subset": 50,
                   "sgd_fin_subset": 90, "sgd_fin_resol": 8.0, "sgd_ini_iter": 4, "sgd_inbetween_iter": 5,
                   "sgd_fin_iter": 6, "seed": 7, "symmetry": "C2"}
    given = _initial_model_options({"mask_diameter": 100.0, "final_resolution": 12.0}, pset)
    assert given == {"particle_diameter": 100.0, "sgd_fin_resol": 12.0}


@pytest.mark.relion
def test_relion_takes_the_command_line_settings_and_ignores_the_builtin_search_ones(tmp_path, monkeypatch):
    import shutil

    if shutil.which("relion_refine") is None:
        pytest.skip("RELION binaries (relion_refine) not on PATH")
    import cryosift.engines.relion as relion

    ran = []

    def fake_run(cmd, job, what, **_):
        ran.append(cmd)
        raise RuntimeError("stop here")

    monkeypatch.setattr(relion, "run_relion", fake_run)
    star = tmp_path / "p.star"
    write_particles_star(star, make_particle_set(tmp_path, n=8, with_3d=False))
    options = dict(classes=7, iterations=3, particle_diameter=0.0, tau2_fudge=2.0, psi_step=6.0, offset_range=5.0,
                   offset_step=1.0, highres_limit=0.0, center_classes=True, seed=4,
                   **{k: 0 for k in BUILTIN_TUNING_2D})
    with pytest.raises(RuntimeError, match="stop here"):
        get_engine("relion", threads=1, mpi=1, prefix="", gpu=False).classify2d(star, tmp_path / "job", Resume.IF_SAME,
                                                                                **options)
    cmd = ran[0]
    assert cmd[cmd.index("--K") + 1] == "7" and cmd[cmd.index("--random_seed") + 1] == "4"
    # 0 = the engine's default mask: RELION's own 200 Å, not a 0 Å mask
    assert cmd[cmd.index("--particle_diameter") + 1] == "200"
    with pytest.raises(ValueError, match="unknown RELION option\\(s\\): psi"):
        get_engine("relion").classify2d(star, tmp_path / "job2", psi=3)
