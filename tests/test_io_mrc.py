import mrcfile
import numpy as np
import pytest

from cryosift.errors import InputError
from cryosift.io.mrc import ImageStack, StackWriter, read_map, read_stack, stack_info, write_map, write_stack


def test_stack_round_trip_keeps_pixel_size_and_values(tmp_path):
    images = np.random.default_rng(1).normal(size=(7, 12, 12)).astype(np.float32)
    write_stack(tmp_path / "s.mrcs", images, 1.34)
    back, apix = read_stack(tmp_path / "s.mrcs")
    assert apix == pytest.approx(1.34, abs=1e-5)
    np.testing.assert_array_equal(back, images)
    picked, _ = read_stack(tmp_path / "s.mrcs", [5, 0, 5])
    np.testing.assert_array_equal(picked, images[[5, 0, 5]])


def test_stack_is_memory_mapped_and_reads_slices(tmp_path):
    images = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    write_stack(tmp_path / "s.mrcs", images, 2.0)
    with ImageStack(tmp_path / "s.mrcs") as stack:
        assert isinstance(stack._data, np.memmap)
        assert (stack.n, stack.box, stack.pixel_size) == (4, 8, 2.0)
        np.testing.assert_array_equal(stack.read([2]), images[2:3])


def test_stack_writer_streams_chunks_and_is_atomic(tmp_path):
    out = tmp_path / "big.mrcs"
    with StackWriter(out, 10, 8, 3.0) as w:
        for start in range(0, 10, 4):
            m = min(4, 10 - start)
            w.write(np.full((m, 8, 8), start, np.float32))
    data, apix = read_stack(out)
    assert apix == 3.0 and data[9, 0, 0] == 8 and data[0, 0, 0] == 0
    with pytest.raises(RuntimeError):
        with StackWriter(tmp_path / "failed.mrcs", 10, 8, 3.0) as w:
            w.write(np.zeros((4, 8, 8), np.float32))
            raise RuntimeError("engine died")
    assert not (tmp_path / "failed.mrcs").exists()
    assert list(tmp_path.glob(".*")) == []


def test_non_square_images_are_refused(tmp_path):
    with mrcfile.new(tmp_path / "rect.mrcs") as m:
        m.set_data(np.zeros((3, 10, 12), np.float32))
        m.set_image_stack()
    with pytest.raises(InputError, match=r"rect\.mrcs: images are not square \(12 x 10 px\)"):
        ImageStack(tmp_path / "rect.mrcs")


def test_a_map_is_not_taken_for_a_stack(tmp_path):
    write_map(tmp_path / "map.mrc", np.zeros((16, 16, 16), np.float32), 1.0)
    with pytest.raises(InputError, match=r"map\.mrc: holds a 3D map .* not a stack of 2D images"):
        ImageStack(tmp_path / "map.mrc")
    vol, apix = read_map(tmp_path / "map.mrc")
    assert vol.shape == (16, 16, 16) and apix == 1.0


def test_a_stack_is_not_taken_for_a_map(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((16, 16, 16), np.float32), 1.0)
    with pytest.raises(InputError, match="expected a 3D map, found an image stack"):
        read_map(tmp_path / "s.mrcs")


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.mrcs: file not found"):
        read_stack(tmp_path / "nothere.mrcs")
    (tmp_path / "junk.mrcs").write_bytes(b"not an mrc file at all" * 3)
    with pytest.raises(InputError, match=r"junk\.mrcs: not a readable MRC file"):
        read_stack(tmp_path / "junk.mrcs")


def test_nan_is_never_written(tmp_path):
    images = np.zeros((2, 4, 4), np.float32)
    images[1, 2, 2] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        write_stack(tmp_path / "bad.mrcs", images, 1.0)
    assert not (tmp_path / "bad.mrcs").exists()


def test_stack_info_reads_header_only(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((5, 6, 6), np.float32), 0.85)
    info = stack_info(tmp_path / "s.mrcs")
    assert info["n"] == 5 and info["shape"] == (5, 6, 6) and info["pixel_size"] == pytest.approx(0.85)


def test_index_beyond_stack(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((3, 4, 4), np.float32), 1.0)
    with pytest.raises(InputError, match=r"image index 4 \(1-based\) is beyond the stack of 3 images"):
        read_stack(tmp_path / "s.mrcs", [0, 3])
