"""The SLURM site profile: written where Snakemake looks for ``--profile slurm``.

cryosift's own settings (threads, memory and runtime per rule, rerun triggers) live in the
workflow profile, ``workflow/profiles/default/config.yaml``, which Snakemake loads on top of
any site profile. The site profile holds only what a cluster decides: the executor, partitions,
account, how many jobs to queue and how Snakemake asks SLURM about them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from cryosift.errors import InputError
from cryosift.io.atomic import write_text_atomic

HEADER = """\
# SLURM site profile for cryosift, written by
#   {command}
# Snakemake finds it as `--profile {name}`; cryosift's per-rule settings come from the workflow
# profile (workflow/profiles/default/config.yaml) on top of it. Edit freely: rerunning the
# command with --force rewrites this file.
"""


@dataclass(frozen=True)
class SlurmSite:
    """What a cluster decides for every job.

    Attributes
    ----------
    partition : str
        Partition of CPU jobs (and of GPU jobs without ``gpu_partition``).
    account : str
        SLURM account charged (empty: SLURM's default for the user).
    gpu_partition : str
        Partition of the jobs that ask for a GPU (empty: ``partition``).
    gpus_per_node : int
        GPUs a node of ``gpu_partition`` has (the most one job may ask for).
    jobs : int
        Jobs in the queue at once.
    max_threads : int or None
        Cores of the smallest node: threads per job are lowered to it.
    status_command : str
        ``sacct`` (needs SLURM accounting) or ``squeue``.
    """

    partition: str
    account: str = ""
    gpu_partition: str = ""
    gpus_per_node: int = 8
    jobs: int = 100
    max_threads: int | None = None
    status_command: str = "sacct"


def user_profile_dir(name: str = "slurm") -> Path:
    """Where ``snakemake --profile NAME`` finds a user's profile: Snakemake's user config folder
    ($XDG_CONFIG_HOME/snakemake or ~/.config/snakemake on Linux)."""
    try:
        from platformdirs import user_config_dir

        base = Path(user_config_dir("snakemake", "snakemake"))
    except ImportError:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "snakemake"
    return base / name


def slurm_profile(site: SlurmSite) -> tuple[dict, dict | None]:
    """(config.yaml, partitions.yaml or None) of the site profile.

    With a separate GPU partition the SLURM executor picks each job's partition from
    partitions.yaml: jobs that ask for a GPU can only go to the GPU partition (the CPU one has
    none), the others go to the CPU partition (the executor ranks GPU partitions last for them).
    """
    for label, value in (("partition", site.partition), ("account", site.account),
                         ("gpu partition", site.gpu_partition)):
        if any(c.isspace() for c in value) or "," in value:
            raise InputError(None, f"{label} {value!r}: one SLURM name, without spaces or commas")
    if not site.partition:
        raise InputError(None, "a partition is needed (--partition)")
    if site.status_command not in ("sacct", "squeue"):
        raise InputError(None, f"status command {site.status_command!r}: expected sacct or squeue")
    config: dict = {"executor": "slurm", "jobs": int(site.jobs)}
    defaults: dict = {}
    if site.account:
        defaults["slurm_account"] = site.account
    partitions = None
    if site.gpu_partition and site.gpu_partition != site.partition:
        partitions = {"partitions": {site.partition: {"max_gpu": 0},
                                     site.gpu_partition: {"max_gpu": int(site.gpus_per_node)}}}
        config["slurm-partition-config"] = "partitions.yaml"
    else:
        defaults["slurm_partition"] = site.partition
    # Rules the workflow profile does not size (and site rules of other workflows).
    defaults.update({"mem_mb": 4000, "runtime": 60})
    config["default-resources"] = defaults
    if site.max_threads:
        config["max-threads"] = int(site.max_threads)
    if site.status_command == "squeue":
        # Without SLURM accounting (slurmdbd) sacct cannot answer and Snakemake would wait forever.
        config["slurm-status-command"] = "squeue"
    return config, partitions


def install_slurm_profile(site: SlurmSite, target: str | Path | None = None, name: str = "slurm",
                          force: bool = False, command: str = "cryosift install-profile slurm") -> Path:
    """Write the site profile into ``target`` (default: :func:`user_profile_dir` of ``name``).

    Returns the profile folder. An existing profile is kept unless ``force``: a facility's own
    ``slurm`` profile is not overwritten by accident.
    """
    folder = Path(target) if target else user_profile_dir(name)
    config, partitions = slurm_profile(site)
    existing = folder / "config.yaml"
    if existing.exists() and not force:
        raise InputError(existing, "a profile is already there; --force replaces it, "
                                   "--name installs cryosift's under another name")
    folder.mkdir(parents=True, exist_ok=True)
    text = HEADER.format(command=command, name=folder.name) + yaml.safe_dump(config, sort_keys=False)
    write_text_atomic(existing, text)
    if partitions is not None:
        write_text_atomic(folder / "partitions.yaml", "# Partitions the SLURM executor chooses from (max_gpu: GPUs per node).\n"
               + yaml.safe_dump(partitions, sort_keys=False))
    elif (folder / "partitions.yaml").exists():
        (folder / "partitions.yaml").unlink()
    return folder

