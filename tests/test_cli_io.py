import json
import subprocess
import sys

import numpy as np
import pytest

from cryosift.cli import main
from cryosift.errors import InputError
from cryosift.io.star import read_particles_star, write_particles_star
from tests.conftest import make_particle_set


def test_info_particles_json(tmp_path, capsys):
    pset = make_particle_set(tmp_path, n=30)
    write_particles_star(tmp_path / "particles.star", pset)
    assert main(["info", str(tmp_path / "particles.star"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "particles" and info["n"] == 30 and info["box"] == [16] and info["pixel_size"] == [2.5]
    assert "rlnDefocusU" in info["blocks"]["particles"]["columns"]


def test_info_text_for_stack_and_cs(tmp_path, capsys):
    pset = make_particle_set(tmp_path, n=12)
    write_particles_star(tmp_path / "particles.star", pset)
    assert main(["convert", "star2cs", str(tmp_path / "particles.star"), str(tmp_path / "particles.cs")]) == 0
    assert main(["info", str(tmp_path / "stack.mrcs"), str(tmp_path / "particles.cs")]) == 0
    out = capsys.readouterr().out
    assert "image stack" in out and "n              12" in out and "cryoSPARC particles" in out and "alignments3D/pose" in out


def test_info_check_finds_index_beyond_stack(tmp_path, capsys):
    pset = make_particle_set(tmp_path, n=4)
    pset.particles.loc[0, "rlnImageName"] = "000010@stack.mrcs"
    write_particles_star(tmp_path / "particles.star", pset)
    assert main(["info", "--check", str(tmp_path / "particles.star")]) == 2
    assert "refers to image 10 of" in capsys.readouterr().err


def test_convert_round_trip_cli(tmp_path):
    pset = make_particle_set(tmp_path, n=40)
    write_particles_star(tmp_path / "a.star", pset)
    assert main(["convert", "star2cs", str(tmp_path / "a.star"), str(tmp_path / "a.cs"), "--double"]) == 0
    assert main(["convert", "cs2star", str(tmp_path / "a.cs"), str(tmp_path / "b.star")]) == 0
    b = read_particles_star(tmp_path / "b.star")
    np.testing.assert_array_equal(b.particles["rlnDefocusU"], pset.particles["rlnDefocusU"])
    assert b.particles["rlnClassNumber"].tolist() == pset.particles["rlnClassNumber"].tolist()


def test_bad_input_is_one_line_with_exit_code_2(tmp_path):
    missing = tmp_path / "missing.cs"
    proc = subprocess.run([sys.executable, "-m", "cryosift", "convert", "cs2star", str(missing), str(tmp_path / "o.star")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"cryosift convert: error: {missing}: file not found"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.star").exists()
    debug = subprocess.run([sys.executable, "-m", "cryosift", "--debug", "info", str(missing)], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "InputError" in debug.stderr


def test_failed_conversion_leaves_no_partial_output(tmp_path):
    pset = make_particle_set(tmp_path, n=5)
    pset.particles = pset.particles.drop(columns=["rlnDefocusU"])
    write_particles_star(tmp_path / "a.star", pset)
    (tmp_path / "keep.cs").write_bytes(b"earlier result")
    assert main(["convert", "star2cs", str(tmp_path / "a.star"), str(tmp_path / "keep.cs")]) == 2
    assert (tmp_path / "keep.cs").read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.star", "keep.cs", "stack.mrcs"]


def test_debug_flag_reraises(tmp_path):
    with pytest.raises(InputError):
        main(["--debug", "info", str(tmp_path / "nope.star")])
