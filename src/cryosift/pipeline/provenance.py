"""What a workflow run used: its configuration, seeds and package versions, recorded in the results."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path

from cryosift.io.atomic import write_text_atomic

#: Packages whose versions change results.
PACKAGES = ("cryosift", "torch", "numpy", "scipy", "pandas", "mrcfile", "starfile", "gemmi", "cryosparc-tools",
            "snakemake")


def package_versions(packages=PACKAGES) -> dict:
    """Installed version of each package (None when it is not installed)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_info(config: dict) -> dict:
    """The record written beside the results: configuration (with its seed) and software."""
    return {"config": config, "seed": config.get("seed"), "python": sys.version.split()[0],
            "platform": platform.platform(), "packages": package_versions()}


def write_run_info(path: str | Path, config: dict) -> dict:
    """Write :func:`run_info` to ``path`` (JSON, atomically); an earlier record is kept as
    ``run_info.previous.json`` when the configuration or software changed."""
    p = Path(path)
    record = run_info(config)
    text = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
    if p.exists() and p.read_text() != text:
        write_text_atomic(p.with_name(p.stem + ".previous.json"), p.read_text())
    if not p.exists() or p.read_text() != text:
        write_text_atomic(p, text)
    return record
