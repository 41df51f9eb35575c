"""One-look summaries of MRC, STAR and .cs files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError, require_file
from cryosift.io.cs import field_summary, read_cs
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
    return out


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
    for name, block in info.get("blocks", {}).items():
        lines.append(f"  data_{name}: {block['rows']} rows; {', '.join(block['columns'])}")
    if "fields" in info:
        lines.append("  fields: " + ", ".join(f"{k} ({v})" for k, v in info["fields"].items()))
    return "\n".join(lines)
