"""Install the SLURM site profile, after which `snakemake --profile slurm` runs the workflow.

Writes config.yaml (and partitions.yaml with a GPU partition) into Snakemake's user profile
folder, $XDG_CONFIG_HOME/snakemake/slurm (~/.config/snakemake/slurm). cryosift's per-rule
settings stay in workflow/profiles/default, which Snakemake adds on top of any site profile.
"""

from __future__ import annotations

import shlex
import sys

from cryosift.pipeline.profiles import SlurmSite, install_slurm_profile


def add_args(parser) -> None:
    parser.add_argument("kind", choices=("slurm",), help="the site profile to install")
    parser.add_argument("--partition", required=True, help="partition of CPU jobs")
    parser.add_argument("--account", default="", help="SLURM account charged (default: your default account)")
    parser.add_argument("--gpu-partition", default="",
                        help="partition of the jobs that ask for a GPU (default: --partition)")
    parser.add_argument("--gpus-per-node", type=int, default=8,
                        help="GPUs per node of the GPU partition (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the queue at once (default: %(default)s)")
    parser.add_argument("--max-threads", type=int,
                        help="cores of the smallest node: no job asks for more (default: the workflow's)")
    parser.add_argument("--status-command", choices=("sacct", "squeue"), default="sacct",
                        help="how job states are read: sacct needs SLURM accounting (default: %(default)s)")
    parser.add_argument("--name", default="slurm", help="profile name, for `--profile NAME` (default: %(default)s)")
    parser.add_argument("--dir", help="write into this folder instead of Snakemake's user profile folder")
    parser.add_argument("--force", action="store_true", help="replace an existing profile of that name")


def main(args) -> int:
    site = SlurmSite(partition=args.partition, account=args.account, gpu_partition=args.gpu_partition,
                     gpus_per_node=args.gpus_per_node, jobs=args.jobs, max_threads=args.max_threads,
                     status_command=args.status_command)
    command = shlex.join(["cryosift", "install-profile", *sys.argv[2:]]) if sys.argv[1:2] == ["install-profile"] \
        else f"cryosift install-profile {args.kind} --partition {args.partition}"
    folder = install_slurm_profile(site, target=args.dir, name=args.name, force=args.force, command=command)
    print(f"SLURM profile written to {folder}")
    print(f"Run the workflow from the repository root with: snakemake --profile {args.name if not args.dir else folder}")
    return 0
