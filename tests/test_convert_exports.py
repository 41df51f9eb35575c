"""cryoSPARC exports -> RELION STAR and back, on .cs files written by cryosparc-tools.

The files are shaped like real exports: ``>`` paths, location fields with a non-square
micrograph shape (height 4096, width 5760, so a swap of x and y shows), alignments refined
at twice the image pixel size, 2D and 3D half-set splits. Expected numbers are worked out
by hand in the comments.
"""

import json
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest
from cryosparc.dataset import CSDAT_FORMAT, Dataset

from cryosift.cli import main
from cryosift.errors import InputError
from cryosift.io import convert
from cryosift.io.convert import cs_to_star, read_particles_cs, star_to_cs
from cryosift.io.cs import read_cs, write_cs
from cryosift.io.info import summarize
from cryosift.io.mrc import write_stack
from cryosift.io.star import read_particles_star, write_particles_star

HEIGHT, WIDTH = 4096, 5760
BLOB_PSIZE, ALIGN_PSIZE = 1.1, 2.2
STACK = "J1/imported/012345_particles.mrcs"
MIC = "J1/imported/mic_0001.mrc"


def _exported_refinement(psize_align=ALIGN_PSIZE, split3d=(0, 1, 0), split2d=(1, 1, 1)):
    """Three particles of an exported 3D refinement (cryoSPARC's dtypes)."""
    ds = Dataset.allocate(3, [
        ("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)), ("blob/psize_A", "f4"),
        ("ctf/exp_group_id", "u4"), ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"), ("ctf/amp_contrast", "f4"),
        ("ctf/df1_A", "f4"), ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"),
        ("alignments3D/pose", "f4", (3,)), ("alignments3D/shift", "f4", (2,)), ("alignments3D/psize_A", "f4"),
        ("alignments3D/split", "u4"), ("alignments3D/class", "u4"), ("alignments3D/class_posterior", "f4"),
        ("alignments2D/pose", "f4"), ("alignments2D/shift", "f4", (2,)), ("alignments2D/psize_A", "f4"),
        ("alignments2D/split", "u4"), ("alignments2D/class", "u4"), ("alignments2D/class_posterior", "f4"),
        ("location/micrograph_path", "O"), ("location/micrograph_shape", "u4", (2,)),
        ("location/center_x_frac", "f4"), ("location/center_y_frac", "f4"),
    ])
    ds["blob/path"] = np.full(3, ">" + STACK, dtype=object)
    ds["blob/idx"] = [0, 1, 2]
    ds["blob/shape"] = 256
    ds["blob/psize_A"] = BLOB_PSIZE
    ds["ctf/accel_kv"], ds["ctf/cs_mm"], ds["ctf/amp_contrast"] = 300, 2.7, 0.1
    ds["ctf/df1_A"], ds["ctf/df2_A"] = 12000, 11500
    ds["alignments3D/pose"] = [[0, 0, np.pi / 2], [0, np.pi / 2, 0], [0, 0, 0]]
    ds["alignments3D/shift"] = [[1.5, -2.0], [0.25, 0.0], [0.0, 3.0]]
    ds["alignments3D/psize_A"] = psize_align
    ds["alignments3D/split"] = split3d
    ds["alignments2D/pose"] = [0.1, 0.2, 0.3]
    ds["alignments2D/shift"] = [[9.0, 9.0]] * 3
    ds["alignments2D/psize_A"] = psize_align
    ds["alignments2D/split"] = split2d
    ds["alignments2D/class"] = [4, 4, 2]
    ds["location/micrograph_path"] = np.full(3, ">" + MIC, dtype=object)
    ds["location/micrograph_shape"] = [HEIGHT, WIDTH]  # cryoSPARC's order: (height, width)
    ds["location/center_x_frac"] = [0.25, 0.5, 0.0001]
    ds["location/center_y_frac"] = [0.25, 0.1, 0.999]  # from the bottom edge
    return ds


def _exported_2d(split2d=(0, 1, 1, 0)):
    """Four particles of an exported 2D classification (no 3D alignments)."""
    ds = Dataset.allocate(4, [
        ("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)), ("blob/psize_A", "f4"),
        ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"), ("ctf/amp_contrast", "f4"),
        ("ctf/df1_A", "f4"), ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"),
        ("alignments2D/pose", "f4"), ("alignments2D/shift", "f4", (2,)), ("alignments2D/psize_A", "f4"),
        ("alignments2D/split", "u4"), ("alignments2D/class", "u4"), ("alignments2D/class_posterior", "f4"),
    ])
    ds["blob/path"] = np.full(4, ">J4/extract/mic_particles.mrc", dtype=object)
    ds["blob/idx"] = [3, 2, 1, 0]
    ds["blob/shape"] = 128
    ds["blob/psize_A"] = 1.0
    ds["ctf/accel_kv"], ds["ctf/cs_mm"], ds["ctf/amp_contrast"] = 200, 2.7, 0.07
    ds["ctf/df1_A"], ds["ctf/df2_A"] = 9000, 8800
    ds["alignments2D/pose"] = [0, np.pi / 2, np.pi, -np.pi / 4]
    ds["alignments2D/shift"] = [[1, -1], [2, 0], [0, 0.5], [-4, 4]]
    ds["alignments2D/psize_A"] = 3.0  # 2D classification on a 3x binned copy
    ds["alignments2D/split"] = split2d
    ds["alignments2D/class"] = [0, 7, 7, 3]
    ds["alignments2D/class_posterior"] = 1.0
    return ds


def test_exported_refinement_to_star_by_hand(tmp_path):
    write_cs(tmp_path / "J9_particles_exported.cs", _exported_refinement())
    pset = cs_to_star(tmp_path / "J9_particles_exported.cs", tmp_path / "p.star")
    p = read_particles_star(tmp_path / "p.star").particles
    # '>' removed from image and micrograph paths; blob/idx 0-based -> 1-based
    assert p["rlnImageName"].tolist() == [f"00000{i}@{STACK}" for i in (1, 2, 3)]
    assert p["rlnMicrographName"].tolist() == [MIC] * 3
    # X = x_frac * width: 0.25*5760 = 1440, 0.5*5760 = 2880, 0.0001*5760 = 0.576 -> 1
    assert p["rlnCoordinateX"].tolist() == [1440, 2880, 1]
    # Y = (1 - y_frac) * height: 0.75*4096 = 3072, 0.9*4096 = 3686.4 -> 3686, 0.001*4096 = 4.096 -> 4
    assert p["rlnCoordinateY"].tolist() == [3072, 3686, 4]
    # shifts in px of alignments3D/psize_A (2.2 Å/px): (1.5, -2) px -> (3.3, -4.4) Å, not pyem's (1.65, -2.2)
    np.testing.assert_allclose(p["rlnOriginXAngst"], [3.3, 0.55, 0.0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(p["rlnOriginYAngst"], [-4.4, 0.0, 6.6], rtol=1e-6, atol=1e-9)
    # the 3D split wins over the 2D one: 0/1/0 -> 1/2/1
    assert p["rlnRandomSubset"].tolist() == [1, 2, 1]
    np.testing.assert_allclose(p[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()[:2],
                               [[0, 0, 90], [0, 90, 0]], atol=1e-5)
    # the image pixel size, not the alignments', is the optics pixel size
    np.testing.assert_allclose(pset.optics["rlnImagePixelSize"], [BLOB_PSIZE], rtol=1e-6)


def test_exported_2d_classification_to_star_by_hand(tmp_path):
    ds = _exported_2d()
    ds.save(tmp_path / "J5_particles_exported.cs", format=CSDAT_FORMAT)
    p = cs_to_star(tmp_path / "J5_particles_exported.cs", tmp_path / "p.star").particles
    assert p["rlnImageName"].tolist() == [f"00000{i}@J4/extract/mic_particles.mrc" for i in (4, 3, 2, 1)]
    # alignments2D/split 0/1/1/0 -> rlnRandomSubset 1/2/2/1 (no 3D split in the file)
    assert p["rlnRandomSubset"].tolist() == [1, 2, 2, 1]
    assert p["rlnClassNumber"].tolist() == [1, 8, 8, 4]
    np.testing.assert_allclose(p["rlnAnglePsi"], [0, 90, 180, -45], atol=1e-5)
    # (1, -1) px at 3 Å/px -> (3, -3) Å; (-4, 4) -> (-12, 12)
    np.testing.assert_allclose(p["rlnOriginXAngst"], [3, 6, 0, -12])
    np.testing.assert_allclose(p["rlnOriginYAngst"], [-3, 0, 1.5, 12])
    assert "rlnCoordinateX" not in p and "rlnAngleRot" not in p


@pytest.mark.parametrize("make, field", [
    (lambda: _exported_2d(split2d=(1, 1, 1, 1)), "alignments2D/split"),
    (lambda: _exported_refinement(split3d=(0, 0, 0), split2d=(0, 1, 0)), "alignments3D/split"),
])
def test_single_valued_split_leaves_random_subset_out(tmp_path, make, field):
    ds = make()
    assert len(np.unique(ds[field])) == 1
    write_cs(tmp_path / "p.cs", ds)
    assert "rlnRandomSubset" not in read_particles_cs(tmp_path / "p.cs").particles


def test_exported_refinement_round_trip(tmp_path):
    ds = _exported_refinement()
    write_cs(tmp_path / "e.cs", ds)
    cs_to_star(tmp_path / "e.cs", tmp_path / "p.star")
    back = star_to_cs(tmp_path / "p.star", tmp_path / "plain.cs", micrograph_shape=(HEIGHT, WIDTH))
    # default: plain project-relative paths, as cryoSPARC holds them once imported
    assert back["blob/path"].tolist() == [STACK] * 3 and back["location/micrograph_path"].tolist() == [MIC] * 3
    np.testing.assert_array_equal(back["location/micrograph_shape"], [[HEIGHT, WIDTH]] * 3)
    # fractions from the rounded pixels: 1440/5760 = 0.25, 1 - 3686/4096 = 0.10009765625
    np.testing.assert_allclose(back["location/center_x_frac"], [0.25, 0.5, 1 / WIDTH], rtol=1e-6)
    np.testing.assert_allclose(back["location/center_y_frac"], [0.25, 1 - 3686 / HEIGHT, 1 - 4 / HEIGHT], rtol=1e-6)
    # ...so each lies within half a pixel of the original
    assert np.all(np.abs(back["location/center_x_frac"] - ds["location/center_x_frac"]) <= 0.5 / WIDTH + 1e-7)
    assert np.all(np.abs(back["location/center_y_frac"] - ds["location/center_y_frac"]) <= 0.5 / HEIGHT + 1e-7)
    # shifts come back in image px with alignments3D/psize_A = blob/psize_A: the same Å
    np.testing.assert_allclose(back["alignments3D/psize_A"], BLOB_PSIZE, rtol=1e-6)
    np.testing.assert_allclose(back["alignments3D/shift"], ds["alignments3D/shift"] * 2, rtol=1e-6)
    np.testing.assert_array_equal(back["alignments3D/split"], ds["alignments3D/split"])
    # '>' kept when asked, for a file that goes back into an export folder
    again = star_to_cs(tmp_path / "p.star", tmp_path / "exported.cs", micrograph_shape=(HEIGHT, WIDTH), exported=True)
    assert again["blob/path"].tolist() == [">" + STACK] * 3
    assert again["location/micrograph_path"].tolist() == [">" + MIC] * 3
    # and that file converts to the same STAR numbers
    cs_to_star(tmp_path / "exported.cs", tmp_path / "q.star")
    a, b = read_particles_star(tmp_path / "p.star").particles, read_particles_star(tmp_path / "q.star").particles
    for label in ("rlnImageName", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnRandomSubset"):
        assert a[label].tolist() == b[label].tolist(), label
    np.testing.assert_allclose(b[["rlnOriginXAngst", "rlnOriginYAngst"]], a[["rlnOriginXAngst", "rlnOriginYAngst"]],
                               rtol=1e-6, atol=1e-7)


def test_2d_split_round_trip(tmp_path):
    ds = _exported_2d()
    write_cs(tmp_path / "c.cs", ds)
    cs_to_star(tmp_path / "c.cs", tmp_path / "c.star")
    back = star_to_cs(tmp_path / "c.star", tmp_path / "d.cs")
    assert "alignments3D/pose" not in back.fields()
    np.testing.assert_array_equal(back["alignments2D/split"], ds["alignments2D/split"])
    np.testing.assert_array_equal(back["alignments2D/class"], ds["alignments2D/class"])
    # shift x psize is kept: (1, -1) px at 3 Å/px -> (3, -3) px at 1 Å/px
    np.testing.assert_allclose(back["alignments2D/shift"] * back["alignments2D/psize_A"][:, None],
                               ds["alignments2D/shift"] * 3.0, rtol=1e-6)
    np.testing.assert_allclose(back["alignments2D/psize_A"], 1.0)


def test_star_coordinates_to_cs_by_hand_and_back(tmp_path):
    ds = _exported_refinement()
    write_cs(tmp_path / "e.cs", ds)
    pset = read_particles_cs(tmp_path / "e.cs")
    pset.particles["rlnCoordinateX"] = [0, 2880, 5760]
    pset.particles["rlnCoordinateY"] = [0, 1024, 4096]  # RELION: from the top edge
    write_particles_star(tmp_path / "a.star", pset)
    out = star_to_cs(tmp_path / "a.star", tmp_path / "a.cs", micrograph_shape=(HEIGHT, WIDTH))
    np.testing.assert_allclose(out["location/center_x_frac"], [0, 0.5, 1])
    # top edge (Y = 0) is y_frac 1 in cryoSPARC; 1024 of 4096 from the top is 0.75 from the bottom
    np.testing.assert_allclose(out["location/center_y_frac"], [1, 0.75, 0])
    cs_to_star(tmp_path / "a.cs", tmp_path / "b.star")
    b = read_particles_star(tmp_path / "b.star").particles
    assert b["rlnCoordinateX"].tolist() == [0, 2880, 5760] and b["rlnCoordinateY"].tolist() == [0, 1024, 4096]


def test_star2cs_refuses_an_empty_micrograph_shape(tmp_path):
    write_cs(tmp_path / "e.cs", _exported_refinement())
    cs_to_star(tmp_path / "e.cs", tmp_path / "p.star")
    with pytest.raises(InputError, match=r"p\.star: micrograph shape \[0, 5760\] is not a \(height, width\) in px"):
        star_to_cs(tmp_path / "p.star", tmp_path / "x.cs", micrograph_shape=(0, 5760))
    assert not (tmp_path / "x.cs").exists()


def test_star2cs_reads_micrograph_shapes_from_the_micrographs(tmp_path):
    # two micrographs of different sizes, 60 x 80 and 40 x 100 px (height x width)
    (tmp_path / "MotionCorr").mkdir()
    for name, shape in (("a", (60, 80)), ("b", (40, 100))):  # MRC data are (rows, columns)
        with mrcfile.new(tmp_path / f"MotionCorr/{name}.mrc") as mrc:
            mrc.set_data(np.zeros(shape, np.float32))
    write_cs(tmp_path / "e.cs", _exported_refinement())
    pset = read_particles_cs(tmp_path / "e.cs")
    pset.particles["rlnMicrographName"] = ["MotionCorr/a.mrc", "MotionCorr/b.mrc", "MotionCorr/a.mrc"]
    pset.particles["rlnCoordinateX"] = [20, 50, 80]
    pset.particles["rlnCoordinateY"] = [15, 10, 60]
    (tmp_path / "job").mkdir()
    write_particles_star(tmp_path / "job/a.star", pset)  # micrographs found in the folder above
    out = star_to_cs(tmp_path / "job/a.star", tmp_path / "a.cs")
    np.testing.assert_array_equal(out["location/micrograph_shape"], [[60, 80], [40, 100], [60, 80]])
    np.testing.assert_allclose(out["location/center_x_frac"], [0.25, 0.5, 1.0])
    np.testing.assert_allclose(out["location/center_y_frac"], [0.75, 0.75, 0.0])
    # a micrograph that is not at hand: the location fields are left out (not guessed)
    pset.particles["rlnMicrographName"] = ["MotionCorr/a.mrc", "MotionCorr/gone.mrc", "MotionCorr/a.mrc"]
    write_particles_star(tmp_path / "job/b.star", pset)
    out = star_to_cs(tmp_path / "job/b.star", tmp_path / "b.cs")
    assert "location/center_x_frac" not in out.fields() and out["location/micrograph_path"][1] == "MotionCorr/gone.mrc"


def _export_folder(tmp_path):
    """A cryoSPARC export folder: the exported .cs beside J1/imported/<stack> (real MRC)."""
    folder = tmp_path / "exports/groups/P3_J9_particles"
    (folder / "J1/imported").mkdir(parents=True)
    images = np.stack([np.full((256, 256), v, np.float32) for v in (1.5, -2.0, 7.25)])
    write_stack(folder / STACK, images, BLOB_PSIZE)
    write_cs(folder / "J9_particles_exported.cs", _exported_refinement())
    return folder


@pytest.mark.skipif(shutil.which("relion_image_handler") is None, reason="RELION is not installed")
def test_relion_reads_the_images_of_a_converted_export(tmp_path):
    folder = _export_folder(tmp_path)
    cs_to_star(folder / "J9_particles_exported.cs", folder / "particles.star")
    proc = subprocess.run(["relion_image_handler", "--i", "particles.star", "--stats", "--o", "stats"],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    stats = [line for line in proc.stdout.splitlines() if " : (x,y,z,n)" in line]
    assert [line.split(" : ")[0] for line in stats] == [f"00000{i}@{STACK}" for i in (1, 2, 3)]
    means = [float(line.split("avg=")[1].split()[0]) for line in stats]
    assert means == [1.5, -2.0, 7.25]
    # the same file with the '>' left in (what the converter wrote before) is unreadable to RELION
    text = (folder / "particles.star").read_text().replace(f"@{STACK}", f"@>{STACK}")
    (folder / "marked.star").write_text(text)
    bad = subprocess.run(["relion_image_handler", "--i", "marked.star", "--stats", "--o", "stats"],
                         cwd=folder, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 or " : (x,y,z,n)" not in bad.stdout


MICS_STAR = """# version 30001

data_optics

loop_
_rlnOpticsGroup
_rlnOpticsGroupName
_rlnMicrographPixelSize
_rlnVoltage
_rlnSphericalAberration
_rlnAmplitudeContrast
1 opticsGroup1 2.0 300 2.7 0.1

# version 30001

data_micrographs

loop_
_rlnMicrographName
_rlnOpticsGroup
_rlnDefocusU
_rlnDefocusV
_rlnDefocusAngle
Micrographs/m1.mrc 1 10000 10000 0
"""


@pytest.mark.skipif(shutil.which("relion_preprocess") is None, reason="RELION is not installed")
def test_relion_reextracts_the_particle_at_the_converted_coordinates(tmp_path):
    # A 64 x 96 px micrograph (height x width) with a 5 x 5 px particle centred on stored row 10,
    # column 30. cryoSPARC names that centre x_frac = 30/96 and y_frac = 1 - 10/64 (Y from the
    # bottom edge); RELION must cut the box around row 10, column 30 (Y from the top).
    (tmp_path / "Micrographs").mkdir()
    image = np.zeros((64, 96), np.float32)
    image[8:13, 28:33] = 10.0
    with mrcfile.new(tmp_path / "Micrographs/m1.mrc") as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 2.0
    ds = _exported_refinement().take([0])
    ds["location/micrograph_path"] = np.array([">Micrographs/m1.mrc"], dtype=object)
    ds["location/micrograph_shape"] = [64, 96]
    ds["location/center_x_frac"], ds["location/center_y_frac"] = 30 / 96, 1 - 10 / 64
    ds["blob/psize_A"], ds["blob/shape"] = 2.0, 16
    write_cs(tmp_path / "p.cs", ds)
    cs_to_star(tmp_path / "p.cs", tmp_path / "p.star")
    (tmp_path / "mics.star").write_text(MICS_STAR)
    proc = subprocess.run(["relion_preprocess", "--i", "mics.star", "--reextract_data_star", "p.star",
                           "--part_star", "out.star", "--part_dir", "Extract/", "--extract", "--extract_size", "16"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    box = mrcfile.read(tmp_path / "Extract/Micrographs/m1.mrcs").reshape(16, 16)
    rows, cols = np.nonzero(box > 5)
    assert rows.tolist() == [6] * 5 + [7] * 5 + [8] * 5 + [9] * 5 + [10] * 5  # centred on row 8 = box / 2
    assert sorted(set(cols.tolist())) == [6, 7, 8, 9, 10]


def test_info_shows_exported_paths_and_coordinates(tmp_path, capsys):
    folder = _export_folder(tmp_path)
    info = summarize(folder / "J9_particles_exported.cs", check_images=True)
    assert info["images_checked"] and info["exported"] is True
    assert info["image_path"] == ">" + STACK and info["stacks"] == 1 and info["micrographs"] == 1
    assert info["micrograph_shape"] == [(HEIGHT, WIDTH)]
    assert info["coordinates"] == {"x": [1.0, 2880.0], "y": [4.0, 3686.0]}  # RELION px, as converted
    assert info["shift_pixel_size"] == {"alignments2D": [2.2], "alignments3D": [2.2]}
    assert main(["info", str(folder / "J9_particles_exported.cs")]) == 0
    out = capsys.readouterr().out
    assert f"first >{STACK} (exported by cryoSPARC" in out
    assert "micrographs    1, 4096 x 5760 px (height x width)" in out
    assert "coordinates    X 1..2880 px, Y 4..3686 px" in out
    assert "shifts         alignments3D: px of 2.2 Å/px" in out
    # the converted STAR file shows the same locations, without the marker
    cs_to_star(folder / "J9_particles_exported.cs", folder / "p.star")
    assert main(["info", "--json", str(folder / "p.star")]) == 0
    star_info = json.loads(capsys.readouterr().out)
    assert star_info["image_path"] == STACK and star_info["coordinates"] == info["coordinates"]
    assert star_info["micrographs"] == 1 and "exported" not in star_info


def test_info_check_names_a_missing_exported_stack(tmp_path):
    folder = _export_folder(tmp_path)
    (folder / STACK).unlink()
    with pytest.raises(InputError, match="012345_particles.mrcs"):
        summarize(folder / "J9_particles_exported.cs", check_images=True)


def test_cli_star2cs_exported_flag(tmp_path):
    write_cs(tmp_path / "e.cs", _exported_refinement())
    assert main(["convert", "cs2star", str(tmp_path / "e.cs"), str(tmp_path / "p.star")]) == 0
    assert main(["convert", "star2cs", str(tmp_path / "p.star"), str(tmp_path / "x.cs"), "--exported",
                 "--micrograph-shape", str(HEIGHT), str(WIDTH)]) == 0
    x = read_cs(tmp_path / "x.cs")
    assert x["blob/path"][0] == ">" + STACK
    np.testing.assert_allclose(x["location/center_y_frac"][0], 0.25)


# --------------------------------------------------------------------------- pyem backend

def test_pyem_box_rescales_shifts_to_the_alignment_pixels(tmp_path):
    # blob box 256 at 1.1 Å/px, aligned at 2.2 Å/px: refined on a 128 px box
    assert convert._pyem_shift_box(_exported_refinement(), tmp_path) == pytest.approx(128.0)
    assert convert._pyem_shift_box(_exported_refinement(psize_align=BLOB_PSIZE), tmp_path) is None
    mixed = _exported_refinement()
    mixed["alignments3D/psize_A"] = [2.2, 2.2, 1.1]
    with pytest.raises(InputError, match="use --backend cryosift"):
        convert._pyem_shift_box(mixed, tmp_path)


@pytest.mark.skipif(convert.pyem_available() is None, reason="asarnow's pyem (csparc2star.py) is not installed")
@pytest.mark.parametrize("make", [_exported_refinement, _exported_2d])
def test_pyem_and_cryosift_backends_agree(tmp_path, make):
    make().save(tmp_path / "e.cs", format=CSDAT_FORMAT)  # pyem gets a numpy-format copy
    ours = cs_to_star(tmp_path / "e.cs", tmp_path / "ours.star").particles
    pyem = cs_to_star(tmp_path / "e.cs", tmp_path / "pyem.star", backend="pyem").particles
    for label in ("rlnImageName", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnRandomSubset",
                  "rlnClassNumber"):
        assert (label in ours) == (label in pyem), label
        if label in ours:
            assert ours[label].tolist() == pyem[label].tolist(), label
    np.testing.assert_allclose(pyem["rlnOriginXAngst"], ours["rlnOriginXAngst"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pyem["rlnOriginYAngst"], ours["rlnOriginYAngst"], rtol=1e-5, atol=1e-6)
