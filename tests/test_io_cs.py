import numpy as np
import pytest
from cryosparc.dataset import CSDAT_FORMAT, Dataset

from cryosift.errors import InputError
from cryosift.io.classes import read_class_averages, read_cryosparc_classes
from cryosift.io.cs import read_cs
from cryosift.io.info import summarize
from cryosift.io.mrc import write_stack


def _cryosparc_2d_job(root, k=4, n=40, box=12, apix=1.7, classes=None, seed=0):
    """A cryoSPARC 2D classification folder written by cryosparc-tools, as cryoSPARC lays it out."""
    rng = np.random.default_rng(seed)
    job = root / "J7"
    job.mkdir(parents=True)
    write_stack(job / "J7_020_class_averages.mrc", rng.normal(size=(k, box, box)).astype(np.float32), apix)
    ca = Dataset.allocate(k, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)),
                              ("blob/psize_A", "f4"), ("blob/res_A", "f4")])
    ca["blob/path"] = np.full(k, "J7/J7_020_class_averages.mrc", dtype=object)
    ca["blob/idx"] = np.arange(k)
    ca["blob/shape"] = np.full((k, 2), box)
    ca["blob/psize_A"] = apix
    ca["blob/res_A"] = np.linspace(6, 20, k)
    ca.save(job / "J7_020_class_averages.cs")
    parts = Dataset.allocate(n, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/psize_A", "f4"),
                                 ("alignments2D/class", "u4"), ("alignments2D/pose", "f4"), ("alignments2D/shift", "f4", (2,))])
    parts["blob/path"] = np.full(n, "J5/extract/p.mrc", dtype=object)
    parts["blob/idx"] = np.arange(n)
    parts["blob/psize_A"] = apix
    parts["alignments2D/class"] = rng.integers(0, k - 1, n) if classes is None else classes  # last class empty
    parts.save(job / "J7_020_particles.cs", format=CSDAT_FORMAT)
    return job


def test_cryosparc_class_averages_from_job_folder(tmp_path):
    job = _cryosparc_2d_job(tmp_path)
    ca = read_class_averages(job)
    assert ca.engine == "cryosparc" and len(ca) == 4 and ca.box == 12
    assert ca.pixel_size == pytest.approx(1.7)
    np.testing.assert_allclose(ca.resolution, np.linspace(6, 20, 4), rtol=1e-6)
    cls = read_cs(job / "J7_020_particles.cs")["alignments2D/class"]
    np.testing.assert_array_equal(ca.particle_count, np.bincount(cls, minlength=4))
    assert ca.particle_count[3] == 0 and ca.distribution.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(ca.class_numbers, [1, 2, 3, 4])


def test_both_cs_formats_load(tmp_path):
    job = _cryosparc_2d_job(tmp_path)
    # numpy format (class averages) and compressed CSDAT format (particles)
    assert open(job / "J7_020_class_averages.cs", "rb").read(6) == b"\x93NUMPY"
    assert open(job / "J7_020_particles.cs", "rb").read(6) == b"\x95CSDAT"
    assert len(read_cs(job / "J7_020_particles.cs")) == 40
    info = summarize(job / "J7_020_particles.cs")
    assert info["kind"] == "cryoSPARC particles" and info["classes"] == 3


def test_particles_assigned_to_missing_class(tmp_path):
    job = _cryosparc_2d_job(tmp_path, classes=np.full(40, 6))
    with pytest.raises(InputError, match=r"J7_020_particles\.cs: particles assigned to class 6, but J7_020_class_averages\.cs has classes up to 3"):
        read_cryosparc_classes(job / "J7_020_class_averages.cs")


def test_unknown_cs_fields(tmp_path):
    ds = Dataset.allocate(3, [("weird/thing", "f4"), ("other/stuff", "u4")])
    ds.save(tmp_path / "odd.cs")
    with pytest.raises(InputError, match=r"odd\.cs: no cryoSPARC particle or class fields; unknown fields: other/stuff, uid, weird/thing"):
        read_cs(tmp_path / "odd.cs")


def test_nan_in_cs(tmp_path):
    ds = Dataset.allocate(3, [("ctf/df1_A", "f4")])
    ds["ctf/df1_A"] = [1.0, np.nan, 2.0]
    ds.save(tmp_path / "nan.cs")
    with pytest.raises(InputError, match=r"nan\.cs: 1 NaN or infinite values in ctf/df1_A"):
        read_cs(tmp_path / "nan.cs")


def test_garbage_cs(tmp_path):
    (tmp_path / "g.cs").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(InputError, match=r"g\.cs: not a readable cryoSPARC \.cs file"):
        read_cs(tmp_path / "g.cs")


def test_class_average_file_without_resolution(tmp_path):
    ds = Dataset.allocate(2, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/psize_A", "f4")])
    ds.save(tmp_path / "x_class_averages.cs")
    with pytest.raises(InputError, match=r"missing blob/res_A: not a class_averages \.cs file"):
        read_cryosparc_classes(tmp_path / "x_class_averages.cs")
