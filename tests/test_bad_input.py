"""Bad input stops a step with one line (exit 2) naming the file and what is wrong, and leaves
nothing behind: a truncated stack, NaN or infinite pixels, one set with two pixel sizes, and a
CryoSPARC server that goes away in the middle of a run (the real cryosparc-tools client)."""

from __future__ import annotations

import json
import re

import mrcfile
import numpy as np
import pandas as pd
import pytest

from cryosift.cli import main
from cryosift.io.star import write_particles_star
from tests.conftest import make_particle_set

STAMPED = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d (DEBUG|INFO|WARNING) "


def error_line(err: str, command: str) -> str:
    """The one error line of a failed command: every other stderr line is a time-stamped log line."""
    lines = err.splitlines()
    errors = [line for line in lines if not re.match(STAMPED, line)]
    assert len(errors) == 1, err
    assert errors[0] == lines[-1] and errors[0].startswith(f"cryosift {command}: error: ")
    assert "Traceback" not in err
    return errors[0][len(f"cryosift {command}: error: "):]


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def ingest(tmp_path, star, capsys):
    out = tmp_path / "results" / "ingest" / "ds"
    code = main(["ingest", "--dataset", "ds", "--type", "relion", "--source", str(star), "-o", str(out)])
    return code, error_line(capsys.readouterr().err, "ingest") if code else None, out


def test_good_set_ingests(tmp_path, capsys):
    write_particles_star(tmp_path / "particles.star", make_particle_set(tmp_path, n=20))
    code, _, out = ingest(tmp_path, tmp_path / "particles.star", capsys)
    assert code == 0 and files_under(out) == ["dataset.json", "particles.star"]
    assert json.loads((out / "dataset.json").read_text())["pixel_size"] == 2.5


def test_truncated_stack(tmp_path, capsys):
    write_particles_star(tmp_path / "particles.star", make_particle_set(tmp_path, n=20, box=16))
    stack = tmp_path / "stack.mrcs"
    size = stack.stat().st_size
    with open(stack, "r+b") as fh:  # a copy that stopped 3.5 images before the end
        fh.truncate(size - int(3.5 * 16 * 16 * 4))
    code, message, out = ingest(tmp_path, tmp_path / "particles.star", capsys)
    assert code == 2
    assert message == (f"{tmp_path / 'particles.star'}: image stack {stack}: truncated: its header declares 20 images "
                       f"of 16 x 16 px (float32, {size:,} bytes with the header) but the file has "
                       f"{size - 3584:,} bytes; copy or write it again")
    assert files_under(out) == []
    # The builtin 2D classification given the STAR directly says the same, and writes no iteration.
    assert main(["classify2d", str(tmp_path / "particles.star"), "-o", str(tmp_path / "Class2D"), "-K", "2",
                 "--iterations", "1", "--device", "cpu"]) == 2
    assert "truncated: its header declares 20 images" in error_line(capsys.readouterr().err, "classify2d")
    assert not [f for f in files_under(tmp_path / "Class2D") if f.startswith("run_")]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_pixels(tmp_path, capsys, value):
    pset = make_particle_set(tmp_path, n=20, box=16)
    write_particles_star(tmp_path / "particles.star", pset)
    stack = tmp_path / "stack.mrcs"
    with mrcfile.open(stack, "r+") as mrc:  # two bad pixels in images 7 and 12, as a broken export leaves them
        mrc.data[6, 3, 4] = value
        mrc.data[11, 0, 0] = value
    code, message, out = ingest(tmp_path, tmp_path / "particles.star", capsys)
    assert code == 2
    assert message == (f"{tmp_path / 'particles.star'}: image stack {stack}: image 7 (1-based) has NaN or infinite "
                       "pixels (2 such image(s) among those read)")
    assert files_under(out) == []
    assert main(["classify2d", str(tmp_path / "particles.star"), "-o", str(tmp_path / "Class2D"), "-K", "2",
                 "--iterations", "1", "--device", "cpu"]) == 2
    assert "image 7 (1-based) has NaN or infinite pixels" in error_line(capsys.readouterr().err, "classify2d")
    assert not [f for f in files_under(tmp_path / "Class2D") if f.startswith("run_")]


def test_one_set_with_two_pixel_sizes(tmp_path, capsys):
    pset = make_particle_set(tmp_path, n=20, box=16, pixel_size=1.06)
    second = pset.optics.iloc[[0]].assign(rlnOpticsGroup=2, rlnOpticsGroupName="opticsGroup2", rlnImagePixelSize=1.2)
    pset.optics = pd.concat([pset.optics, second], ignore_index=True)
    pset.particles.loc[10:, "rlnOpticsGroup"] = 2
    star = tmp_path / "particles.star"
    write_particles_star(star, pset)
    code, message, out = ingest(tmp_path, star, capsys)
    assert code == 2
    assert message == (f"{star}: particles of one set have 2 pixel sizes (group 1 (opticsGroup1) 1.06 Å/px, "
                       "group 2 (opticsGroup2) 1.2 Å/px); rescale them to one (relion_image_handler "
                       "--rescale_angpix) or give each pixel size its own dataset")
    assert files_under(out) == []
    for command, args in (("classify2d", ["-K", "2", "--iterations", "1", "--device", "cpu"]),
                          ("abinit", ["--device", "cpu"])):
        target = tmp_path / command
        assert main([command, str(star), "-o", str(target), *args]) == 2
        assert "particles of one set have 2 pixel sizes" in error_line(capsys.readouterr().err, command)
        assert files_under(target) == []
    # Groups that differ only past the 6th decimal (float32 round trips) are one pixel size.
    pset.optics.loc[1, "rlnImagePixelSize"] = 1.06 + 4e-7
    write_particles_star(star, pset)
    code, _, out = ingest(tmp_path, star, capsys)
    assert code == 0 and json.loads((out / "dataset.json").read_text())["pixel_size"] == 1.06


def test_cryosparc_server_that_goes_away_during_a_run(tmp_path, capsys, monkeypatch):
    """The real cryosparc-tools client logs in to a localhost server, reads a job, and the server
    then closes its port: the export stops with one line naming the server, and writes nothing."""
    from cryosparc import __version__ as tools_version

    from tests.cryosparc_api import VanishingServer
    from tests.test_cryosparc_adapter import job_model

    job = job_model("J12", type="class_2D", title="starter 2D", status="completed").model_dump(mode="json")
    answers = {"login": {"access_token": "t0ken", "token_type": "bearer"}, "users.me": {"email": "me@example.org"},
               "config.get_version": "v" + tools_version, "jobs.find_one": job,
               "projects.find_one": {"uid": "P3", "title": "Apoferritin"}}
    responses = {"login": {"$ref": "#/components/schemas/Token"}, "jobs.find_one": {"$ref": "#/components/schemas/Job"}}
    out = tmp_path / "results" / "classify" / "ds" / "round1"
    with VanishingServer(answers, last="jobs.find_one", times=2, responses=responses) as server:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"cryosparc:\n  base_url: {server.url}\n  email: me@example.org\n  project: P3\n"
                       "  workspace: W2\n  timeout: 10\n")
        monkeypatch.setenv("CRYOSPARC_PASSWORD", "pw-never-printed")
        code = main(["cryosparc", "export", "J12", "-o", str(out), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2, err
    # Logged in, read the job (twice: found, then its model), and was loading its class averages.
    assert server.requests == ["openapi.json", "login", "users.me", "config.get_version", "config.get_version",
                               "jobs.find_one", "jobs.find_one"]
    assert re.fullmatch(
        re.escape(f"{server.url}: CryoSPARC did not answer while loading P3 J12.class_averages (ConnectError: ")
        + r"\[Errno \d+\] Connection refused" + re.escape("); jobs already queued go on running there: run again "
                                                           "when the server is back and the run takes them up"),
        error_line(err, "cryosparc"))
    # The client's three tries are log lines, one each.
    assert len([line for line in err.splitlines() if "Connection refused (attempt" in line]) == 3
    assert "pw-never-printed" not in err
    assert files_under(out) == []
