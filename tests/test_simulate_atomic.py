"""Real structures for the simulator: the shipped set, assemblies, masses, maps, micelles, datasets."""

import gzip
import hashlib
import json

import numpy as np
import pytest

from cryosift.cli import main as cli_main
from cryosift.errors import InputError
from cryosift.simulate import SimulationSpec, load_simulated_dataset, preset, simulate_dataset
from cryosift.simulate.atomic_models import (
    find_membrane_belt, get_entry, list_structures, load_structure, micelle_map, polymer_mass_kda, read_manifest,
    structures_dir,
)
from cryosift.simulate.structure import atomic_density


def test_manifest_files_and_licences():
    man = read_manifest()
    entries = list_structures()
    assert len(entries) == len(man["entries"]) >= 12
    assert len({e.id for e in entries}) == len(entries)
    for e in entries:
        data = (structures_dir() / e.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e.file_sha256, e.id
        assert gzip.decompress(data).startswith(b"data_")  # gzipped mmCIF
        src = man["sources"][e.source]
        assert "CC0" in src["licence"] and (src.get("sha256") or src.get("commit"))
        assert len(e.member_sha256) == 64
    # the coverage the training domain needs
    masses = [e.mass_kda for e in entries]
    assert min(masses) <= 45 and max(masses) >= 2000
    assert {e.symmetry for e in entries} >= {"C1", "C2", "C6", "D4", "D7", "O", "I"}
    assert sum(e.membrane for e in entries) >= 2
    # the real benchmark protein (beta-galactosidase) is not in the training set
    assert not any("galactosidase" in e.name.lower() for e in entries)


def test_unknown_entry_is_one_clear_error():
    with pytest.raises(InputError, match="no structure 'xxxx'.*known: .*4V1W"):
        get_entry("pdb:xxxx")
    with pytest.raises(InputError, match="micelle needs a structure from the shipped set"):
        SimulationSpec(micelle=True).validate()


@pytest.mark.parametrize("pdb_id", ["1S3X", "7DDO", "1BD2", "4V1W", "3J9I"])
def test_mass_from_atoms_matches_the_entry(pdb_id):
    """Well-ordered entries: the atoms weigh what the deposited sequences do, within 3 %."""
    e = get_entry(pdb_id)
    st = load_structure(e)
    assert st[0].count_atom_sites() == e.atoms
    mass = polymer_mass_kda(st)
    assert mass == pytest.approx(e.mass_kda, abs=0.06)
    assert mass == pytest.approx(e.sequence_mass_kda, rel=0.03)


def test_assembly_is_built():
    """Apoferritin: 24 copies of the light chain (174 residues, about 19.9 kDa each)."""
    asu = load_structure("4V1W", assembly=False)
    full = load_structure("4V1W")
    assert len(full[0]) == 24
    assert polymer_mass_kda(full) == pytest.approx(24 * 19.9, rel=0.03)
    rubisco_asu, rubisco = load_structure("1BXN", assembly=False), load_structure("1BXN")
    # L8S8 from a crystal's half: the assembly doubles the deposited chains
    assert len(rubisco[0]) == 2 * len(rubisco_asu[0]) == 16
    assert polymer_mass_kda(asu) > 0


def _centre_and_radius(vol, pixel_size):
    w = np.clip(vol, 0, None)
    idx = np.indices(vol.shape).reshape(3, -1).T  # (z, y, x)
    com = (idx * w.reshape(-1, 1)).sum(0) / w.sum()
    r = np.linalg.norm((idx - com) * pixel_size, axis=1)
    return com, float(np.sqrt((r ** 2 * w.reshape(-1)).sum() / w.sum()))


def test_density_is_centred_and_scales_with_pixel_size():
    """The 20S proteasome (D7, a 150 x 110 Å barrel): same size in Å at two pixel sizes."""
    a = atomic_density("3J9I", box=96, pixel_size=2.5)
    b = atomic_density("3J9I", box=64, pixel_size=3.75)
    assert a.shape == (96, 96, 96) and a.dtype == np.float32
    ca, ra = _centre_and_radius(a, 2.5)
    cb, rb = _centre_and_radius(b, 3.75)
    np.testing.assert_allclose(ca, 48, atol=0.5)  # voxel box // 2
    np.testing.assert_allclose(cb, 32, atol=0.5)
    assert ra == pytest.approx(rb, rel=0.03)
    # radius of gyration of a 150 x 110 Å barrel: sqrt(R²/2 + L²/12) = 58 Å filled,
    # up to sqrt(R² + L²/12) = 68 Å for a thin-walled one
    assert 56 < ra < 68
    # along its principal axes: 148 Å long, 113 Å wide and round (D7), plus the blur at 10 % of the peak
    pts = np.argwhere(a > 0.1 * a.max()) * 2.5
    pts = pts - pts.mean(axis=0)
    _, axes = np.linalg.eigh(np.cov(pts.T))
    proj = pts @ axes
    width, width2, length = sorted(proj.max(axis=0) - proj.min(axis=0))
    assert 140 < length < 165 and 108 < width < 128 and width2 == pytest.approx(width, rel=0.03)


def test_micelle_belt_around_the_transmembrane_region():
    """CFTR: the belt found holds TM helix 1 and neither nucleotide-binding domain."""
    st = load_structure("6MSM")
    belt = find_membrane_belt(st)
    ca = {}
    for ch in st[0]:
        for res in ch:
            atom = res.find_atom("CA", "*")
            if atom is not None:
                ca[(ch.name, res.seqid.num)] = np.array(atom.pos.tolist())

    def inside(lo, hi):
        pts = np.array([v for (c, n), v in ca.items() if c == "A1" and lo <= n <= hi])
        return float(np.mean(np.abs((pts - belt.centre_A) @ belt.normal) <= 15.0))

    assert inside(81, 101) >= 0.8  # TM1
    assert inside(389, 640) == 0.0 and inside(1210, 1440) == 0.0  # NBD1, NBD2 in the cytoplasm


def test_micelle_density_and_shape():
    box, apix = 96, 2.0
    with_m = atomic_density("6MSM", box, apix)  # membrane protein: micelle by default
    without = atomic_density("6MSM", box, apix, micelle=False)
    mic = with_m - without
    assert mic.min() > -1e-4 and mic.sum() > 0.05 * without.sum()
    # the micelle is a belt: it lies in a slab across the normal, around the protein, not in it
    st = load_structure("6MSM")
    from cryosift.simulate.structure import load_true_structure

    truth = load_true_structure(SimulationSpec(structure="pdb:6MSM", box=box, pixel_size=apix))
    np.testing.assert_allclose(truth.micelle, mic, atol=1e-5)
    belt = find_membrane_belt(truth.structure)
    idx = np.indices(mic.shape).reshape(3, -1).T[:, ::-1] * apix  # (x, y, z) Å
    w = mic.reshape(-1)
    along = (idx - belt.centre_A) @ belt.normal
    held = w[np.abs(along) <= 30.0].sum() / w.sum()
    assert held > 0.97
    prot = without.reshape(-1) > 0.5 * without.max()
    assert w[prot].sum() < 0.02 * w.sum()  # the protein's core is not detergent
    # its level: about MicelleSpec.density (0.25) of the protein's mean density
    mean_protein = without.sum() / (polymer_mass_kda(st) * 1000 * 1.21 / apix ** 3)
    core = w > 0.9 * w.max()
    assert w[core].mean() == pytest.approx(0.25 * mean_protein, rel=0.12)
    # soluble proteins get none unless asked
    assert get_entry("4V1W").membrane is False


def test_micelle_is_deterministic():
    st = load_true_structure_for("5GJV", 96, 4.0)
    a = micelle_map(st, 96, 4.0, 8.0)
    b = micelle_map(st, 96, 4.0, 8.0)
    np.testing.assert_array_equal(a, b)
    assert a.max() > 0


def load_true_structure_for(pdb_id, box, apix):
    from cryosift.simulate.structure import load_true_structure

    return load_true_structure(SimulationSpec(structure=f"pdb:{pdb_id}", box=box, pixel_size=apix,
                                              micelle=False)).structure


def test_too_small_box_is_refused():
    with pytest.raises(InputError, match="exceeds the box"):
        atomic_density("4V5D", box=64, pixel_size=2.0)


def test_simulated_dataset_from_a_real_structure(tmp_path):
    """End to end: CFTR in its micelle, a few particles with junk, written and read back."""
    spec = preset("tiny", structure="pdb:6MSM", box=64, pixel_size=3.0, n_particles=48,
                  junk={"partial": 0.1, "empty_ice": 0.1})
    ds = simulate_dataset(spec, tmp_path / "cftr")
    info = json.loads(ds.dataset_json.read_text())
    assert info["structure"] == "pdb:6MSM" and info["mass_kda"] == pytest.approx(get_entry("6MSM").mass_kda, abs=0.1)
    assert info["symmetry"] == "C1" and "micelle" not in info["spec"]  # default (None) is not written
    assert info["partial_variants"] and all(v.startswith("without chain") for v in info["partial_variants"])
    back = load_simulated_dataset(tmp_path / "cftr")
    assert back.spec.structure == "pdb:6MSM" and len(back.ground_truth) == 48
    import mrcfile

    with mrcfile.open(ds.map_mrc) as m:
        vol = np.asarray(m.data)
    np.testing.assert_allclose(vol, atomic_density("6MSM", 64, 3.0), rtol=1e-5, atol=1e-6)
    with mrcfile.open(ds.particles_mrcs) as m:
        assert m.data.shape == (48, 64, 64) and np.isfinite(m.data).all()
    # forcing the micelle off changes the map and is written to the settings
    spec2 = spec.replace(micelle=False, n_particles=8, junk={})
    ds2 = simulate_dataset(spec2, tmp_path / "bare")
    assert ds2.info["spec"]["micelle"] is False
    with mrcfile.open(ds2.map_mrc) as m:
        assert float(np.asarray(m.data).sum()) < 0.95 * float(vol.sum())


def test_cli_accepts_a_shipped_structure(tmp_path, capsys):
    rc = cli_main(["simulate", str(tmp_path / "apo"), "--preset", "tiny", "--structure", "pdb:1S3X",
                   "--box", "40", "--pixel-size", "3.0", "--no-junk"])
    assert rc in (0, None)
    info = json.loads((tmp_path / "apo" / "dataset.json").read_text())
    assert info["mass_kda"] == pytest.approx(41.9, abs=0.1)
    rc = cli_main(["simulate", str(tmp_path / "bad"), "--preset", "tiny", "--structure", "pdb:9ZZZ"])
    assert rc == 2
    assert "no structure '9ZZZ'" in capsys.readouterr().err
    assert cli_main(["simulate", "--preset", "tiny", "--structure", "pdb:5GJV", "--no-micelle",
                     "--print-config"]) in (0, None)
    assert "micelle: false" in capsys.readouterr().out
    assert cli_main(["simulate", "--list-structures"]) in (0, None)
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 1 + len(list_structures()) and rows[1].startswith("pdb:4PGR\tC1\t23.1\tyes")


def test_default_settings_are_unchanged():
    """The new setting stays out of settings that do not use it, so earlier outputs are unchanged."""
    d = preset("tiny").to_dict()
    assert "micelle" not in d
    assert SimulationSpec.from_dict(d).to_dict() == d


@pytest.mark.parametrize("pdb_id", ["2CG9", "3CF3", "1BXN"])
def test_assembly_copies_do_not_overlap(pdb_id):
    """Copies made by the assembly's operators pack side by side: no two CA atoms of different chains within 2.5 Å."""
    from scipy.spatial import cKDTree

    st = load_structure(pdb_id)
    xyz, chain = [], []
    for i, ch in enumerate(st[0]):
        for res in ch:
            atom = res.find_atom("CA", "*")
            if atom is not None:
                xyz.append(atom.pos.tolist())
                chain.append(i)
    chain = np.array(chain)
    pairs = cKDTree(np.array(xyz)).query_pairs(2.5, output_type="ndarray")
    assert len(pairs) == 0 or not np.any(chain[pairs[:, 0]] != chain[pairs[:, 1]])
    # and they touch: every chain has a neighbour within 8 Å
    tree = cKDTree(np.array(xyz))
    for i in range(len(st[0])):
        mine = np.array(xyz)[chain == i]
        near = tree.query_ball_point(mine, 8.0)
        assert any(chain[j] != i for js in near for j in js)


@pytest.mark.parametrize("pdb_id", ["4PGR", "6MSM", "5GJV"])
def test_transmembrane_helices_cross_the_belt(pdb_id):
    """Helices inside the belt run across it (transmembrane helices tilt 0-35° from the normal)."""
    st = load_structure(pdb_id)
    belt = find_membrane_belt(st)
    cosines = []
    for ch in st[0]:
        ca = np.array([a.pos.tolist() for a in (res.find_atom("CA", "*") for res in ch) if a is not None])
        for i in range(len(ca) - 4):
            d = ca[i + 4] - ca[i]
            n = np.linalg.norm(d)
            # an alpha helix puts CA(i+4) 6.2 Å from CA(i); strands and loops farther
            if 5.0 < n < 7.0 and abs((ca[i] - belt.centre_A) @ belt.normal) < 12.0:
                cosines.append(abs(d @ belt.normal) / n)
    assert len(cosines) > 40
    assert np.median(cosines) > np.cos(np.radians(35))
