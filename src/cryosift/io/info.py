"""One-look summaries of MRC, STAR and .cs files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError, require_file
from cryosift.io.cs import coordinates_to_relion, field_summary, is_exported, read_cs, strip_export_mark
from cryosift.io.models import split_image_names
from cryosift.io.mrc import stack_info
from cryosift.io.star import particles_from_blocks, read_star


def summarize(path: str | Path, check_images: bool = False) -> dict:
    """Summarise any MRC, STAR or .cs file.

    Returns
    -------
    dict
        Always ``path`` and ``kind``; then, as they apply: ``n`` (images, particles,
        classes or rows), ``box`` (px), ``pixel_size`` (Å/px), ``optics_groups``,
        ``blocks`` (STAR: name -> rows and columns), ``fields`` (.cs: name -> dtype).
        Particle files add ``stacks`` (distinct image stacks), ``image_path`` (the first,
        as stored), ``exported`` (.cs: paths carry cryoSPARC's ``>``), ``micrographs``,
        ``micrograph_shape`` ((height, width) px, .cs), ``shift_pixel_size`` (.cs: Å/px of
        the pixels each alignment's shifts are in) and ``coordinates`` (RELION px, Y from
        the top edge: ``x`` and ``y`` as [min, max]).

    Parameters
    ----------
    check_images : bool
        For particle files, also open every referenced stack and check the indices
        (raises InputError naming the first problem).
    """
    p = require_file(path)
    suffix = p.suffix.lower()
    if suffix in (".mrc", ".mrcs", ".map", ".rec", ".st"):
        info = stack_info(p)
        kind = "image stack" if (info["is_stack"] or suffix == ".mrcs") else ("map" if len(info["shape"]) == 3 else "image")
        return {"path": str(p), "kind": kind, "n": info["n"], "shape": list(info["shape"]),
                "box": info["shape"][-1], "pixel_size": info["pixel_size"], "dtype": info["dtype"]}
    if suffix == ".star":
        info = _summarize_star(p)
    elif suffix == ".cs":
        info = _summarize_cs(p)
    else:
        raise InputError(p, "unknown file type (expected .mrc, .mrcs, .star or .cs)")
    if check_images and info["kind"] in ("particles", "cryoSPARC particles"):
        from cryosift.io.convert import read_particles
        from cryosift.io.images import check_image_locations

        check_image_locations(read_particles(p))
        info["images_checked"] = True
    return info


def _summarize_star(p: Path) -> dict:
    blocks = read_star(p)
    out = {"path": str(p), "kind": "STAR", "blocks": {}}
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            out["blocks"][name] = {"rows": len(block), "columns": list(block.columns)}
        else:
            out["blocks"][name] = {"rows": 1, "columns": list(block)}
    if isinstance(blocks.get("model_classes"), pd.DataFrame):
        general = blocks.get("model_general", {})
        out.update(kind="Class2D model", n=len(blocks["model_classes"]), pixel_size=general.get("rlnPixelSize"),
                   box=general.get("rlnOriginalImageSize"))
    elif any(isinstance(b, pd.DataFrame) and "rlnImageName" in b for b in blocks.values()):
        try:
            pset = particles_from_blocks(p, blocks, pixel_size=None)
            out.update(kind="particles", n=len(pset), optics_groups=len(pset.optics),
                       pixel_size=sorted(set(np.round(pset.optics["rlnImagePixelSize"].astype(float), 6))),
                       box=sorted(set(pset.optics.get("rlnImageSize", pd.Series(dtype=int)).astype(int))),
                       relion_version="3.1+" if "optics" in blocks else "3.0")
            if "rlnClassNumber" in pset.particles:
                out["classes"] = int(pset.particles["rlnClassNumber"].nunique())
            parts = pset.particles
            _, paths = split_image_names(parts["rlnImageName"])
            out.update(stacks=len(pd.unique(paths)), image_path=str(paths[0]) if len(paths) else None)
            if "rlnMicrographName" in parts:
                out["micrographs"] = int(parts["rlnMicrographName"].nunique())
            if {"rlnCoordinateX", "rlnCoordinateY"} <= set(parts.columns) and len(parts):
                out["coordinates"] = _ranges(parts["rlnCoordinateX"], parts["rlnCoordinateY"])
        except InputError as exc:
            out.update(kind="particles", n=max(len(b) for b in blocks.values() if isinstance(b, pd.DataFrame)),
                       problem=exc.problem)
    return out


def _summarize_cs(p: Path) -> dict:
    ds = read_cs(p)
    fields = field_summary(ds)
    out = {"path": str(p), "kind": "cryoSPARC dataset", "n": len(ds), "fields": fields}
    if "blob/res_A" in fields:
        out["kind"] = "cryoSPARC class averages"
    elif "blob/path" in fields:
        out["kind"] = "cryoSPARC particles"
    if "blob/psize_A" in fields and len(ds):
        out["pixel_size"] = sorted(set(np.round(ds["blob/psize_A"].astype(float), 6)))
    if "blob/shape" in fields and len(ds):
        out["box"] = sorted(set(int(s) for s in np.unique(ds["blob/shape"][:, -1])))
    if "alignments2D/class" in fields:
        out["classes"] = int(len(np.unique(ds["alignments2D/class"])))
    if out["kind"] == "cryoSPARC particles" and len(ds):
        paths = ds["blob/path"]
        out.update(stacks=len(pd.unique(strip_export_mark(paths))), image_path=str(paths[0]),
                   exported=is_exported(paths))
        psizes = {prefix: sorted(set(np.round(ds[f"{prefix}/psize_A"].astype(float), 6)))
                  for prefix in ("alignments2D", "alignments3D") if f"{prefix}/psize_A" in fields}
        if psizes:
            out["shift_pixel_size"] = psizes
        if "location/micrograph_path" in fields:
            out["micrographs"] = len(pd.unique(strip_export_mark(ds["location/micrograph_path"])))
        if "location/micrograph_shape" in fields:
            out["micrograph_shape"] = sorted({(int(h), int(w)) for h, w in ds["location/micrograph_shape"]})
            if {"location/center_x_frac", "location/center_y_frac"} <= set(fields):
                x, y = coordinates_to_relion(ds["location/center_x_frac"], ds["location/center_y_frac"],
                                             ds["location/micrograph_shape"])
                out["coordinates"] = _ranges(x, y)
    return out


def _ranges(x, y) -> dict:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return {"x": [float(x.min()), float(x.max())], "y": [float(y.min()), float(y.max())]}


def format_summary(info: dict) -> str:
    """Human-readable text for a :func:`summarize` result."""
    lines = [f"{info['path']}: {info['kind']}"]
    for key in ("n", "box", "pixel_size", "optics_groups", "classes", "relion_version", "dtype", "shape", "problem"):
        if key in info and info[key] is not None:
            value = info[key]
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            unit = {"box": " px", "pixel_size": " Å/px"}.get(key, "")
            lines.append(f"  {key:<15}{value}{unit}")
    if info.get("image_path") is not None:
        note = ""
        if info.get("exported"):
            note = " (exported by cryoSPARC: '>' = beside this file; RELION names it without '>')"
        lines.append(f"  {'stacks':<15}{info['stacks']}, first {info['image_path']}{note}")
    if "micrographs" in info:
        shapes = "; ".join(f"{h} x {w}" for h, w in info.get("micrograph_shape", []))
        lines.append(f"  {'micrographs':<15}{info['micrographs']}" + (f", {shapes} px (height x width)" if shapes else ""))
    for prefix, sizes in info.get("shift_pixel_size", {}).items():
        lines.append(f"  {'shifts':<15}{prefix}: px of {', '.join(f'{v:g}' for v in sizes)} Å/px")
    if "coordinates" in info:
        c = info["coordinates"]
        lines.append(f"  {'coordinates':<15}X {c['x'][0]:g}..{c['x'][1]:g} px, Y {c['y'][0]:g}..{c['y'][1]:g} px "
                     "(RELION: from the top-left corner)")
    for name, block in info.get("blocks", {}).items():
        lines.append(f"  data_{name}: {block['rows']} rows; {', '.join(block['columns'])}")
    if "fields" in info:
        lines.append("  fields: " + ", ".join(f"{k} ({v})" for k, v in info["fields"].items()))
    return "\n".join(lines)
