"""Build RELION command lines from documented parameters.

Defaults follow RELION's own GUI defaults for each job type, and the CryoSift paper where it
states a choice (2D: T = 2, K = 20; VDAM on RELION 4/5). Every random step gets the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryosift.engines.relion.detect import RelionInstall


@dataclass
class RelionClass2DParams:
    """2D classification settings.

    Attributes
    ----------
    classes : int
        K, number of classes.
    iterations : int
        EM iterations (RELION 3.1) or VDAM mini-batch iterations (RELION 4+, ``vdam=True``).
    particle_diameter : float
        Mask diameter in Å.
    tau2_fudge : float
        Regularisation T.
    psi_step, offset_range, offset_step : float
        In-plane sampling (deg) and translational search range/step (px).
    highres_limit : float
        Limit the resolution used in alignment (Å; 0 = none).
    vdam : bool or None
        Use the gradient-driven algorithm (RELION 4+); default: when available.
    fast_subsets : bool
        RELION 3.1's subset speed-up in the first iterations.
    center_classes : bool
        Re-centre class averages on their centre of mass (RELION 4+).
    seed : int
        ``--random_seed``.
    """

    classes: int = 20
    iterations: int = 25
    particle_diameter: float = 200.0
    tau2_fudge: float = 2.0
    psi_step: float = 6.0
    offset_range: float = 5.0
    offset_step: float = 1.0
    highres_limit: float = 0.0
    vdam: bool | None = None
    fast_subsets: bool = False
    center_classes: bool = True
    seed: int = 1
    extra: list[str] = field(default_factory=list)


@dataclass
class InitialModelParams:
    """De novo initial model settings (SGD on RELION 3.1, VDAM on 4+).

    The SGD schedule defaults are RELION 3.1's GUI values; resolutions in Å.
    """

    particle_diameter: float = 200.0
    symmetry: str = "C1"
    classes: int = 1
    sgd_ini_iter: int = 50
    sgd_inbetween_iter: int = 200
    sgd_fin_iter: int = 50
    sgd_ini_resol: float = 35.0
    sgd_fin_resol: float = 15.0
    sgd_ini_subset: int = 100
    sgd_fin_subset: int = 500
    vdam_iterations: int = 200
    healpix_order: int = 1
    offset_range: float = 6.0
    offset_step: float = 2.0
    seed: int = 1
    extra: list[str] = field(default_factory=list)


def _num(x: float) -> str:
    return f"{x:g}"


def parallel_prefix(relion: RelionInstall, mpi: int) -> tuple[list[str], str]:
    """(mpirun prefix, program) for ``mpi`` ranks; threads alone when mpi <= 1."""
    if mpi <= 1 or relion.refine_mpi is None or relion.mpirun is None:
        return [], relion.refine
    prefix = [relion.mpirun, "-n", str(mpi)]
    import os

    if os.geteuid() == 0:
        prefix += ["--allow-run-as-root", "--oversubscribe"]
    return prefix, relion.refine_mpi


def class2d_command(relion: RelionInstall, particles: str | Path, out_dir: str | Path, p: RelionClass2DParams,
                    threads: int = 1, mpi: int = 1, preread: bool = True) -> list[str]:
    """relion_refine command for 2D classification (no --ref, no --denovo_3dref)."""
    prefix, program = parallel_prefix(relion, mpi)
    out = Path(out_dir)
    cmd = prefix + [program, "--o", str(out / "run"), "--i", str(particles),
                    "--dont_combine_weights_via_disc", "--pool", "3", "--pad", "2", "--ctf",
                    "--tau2_fudge", _num(p.tau2_fudge), "--particle_diameter", _num(p.particle_diameter),
                    "--K", str(p.classes), "--flatten_solvent", "--zero_mask", "--oversampling", "1",
                    "--psi_step", _num(p.psi_step), "--offset_range", _num(p.offset_range),
                    "--offset_step", _num(p.offset_step), "--norm", "--scale", "--j", str(threads),
                    "--random_seed", str(p.seed), "--pipeline_control", f"{out}/"]
    vdam = relion.has_vdam if p.vdam is None else p.vdam
    if vdam:
        if not relion.has_vdam:
            raise ValueError(f"{relion.describe()} has no VDAM (--grad) 2D classification; use vdam: false")
        cmd += ["--grad", "--class_inactivity_threshold", "0.1", "--grad_write_iter", "10",
                "--iter", str(p.iterations)]
    else:
        cmd += ["--iter", str(p.iterations)]
        if p.fast_subsets:
            cmd.append("--fast_subsets")
    if p.center_classes and relion.version >= (4, 0, 0):
        cmd.append("--center_classes")
    if p.highres_limit > 0:
        cmd += ["--strict_highres_exp", _num(p.highres_limit)]
    if preread:
        cmd.append("--preread_images")
    return cmd + list(p.extra)


def initial_model_command(relion: RelionInstall, particles: str | Path, out_dir: str | Path, p: InitialModelParams,
                          threads: int = 1, mpi: int = 1, preread: bool = True) -> list[str]:
    """relion_refine command for a de novo initial model (SGD on 3.x, VDAM on 4+)."""
    prefix, program = parallel_prefix(relion, mpi)
    out = Path(out_dir)
    cmd = prefix + [program, "--o", str(out / "run"), "--i", str(particles), "--denovo_3dref", "--ctf",
                    "--K", str(p.classes), "--sym", p.symmetry, "--flatten_solvent", "--zero_mask",
                    "--dont_combine_weights_via_disc", "--pool", "3", "--pad", "1", "--skip_gridding",
                    "--particle_diameter", _num(p.particle_diameter), "--oversampling", "1",
                    "--healpix_order", str(p.healpix_order), "--offset_range", _num(p.offset_range),
                    "--offset_step", _num(p.offset_step), "--j", str(threads), "--random_seed", str(p.seed),
                    "--pipeline_control", f"{out}/"]
    if relion.has_sgd_initial_model:
        cmd += ["--sgd", "--sgd_ini_iter", str(p.sgd_ini_iter), "--sgd_inbetween_iter", str(p.sgd_inbetween_iter),
                "--sgd_fin_iter", str(p.sgd_fin_iter), "--sgd_write_iter", "10",
                "--sgd_ini_resol", _num(p.sgd_ini_resol), "--sgd_fin_resol", _num(p.sgd_fin_resol),
                "--sgd_ini_subset", str(p.sgd_ini_subset), "--sgd_fin_subset", str(p.sgd_fin_subset)]
    else:
        cmd += ["--grad", "--iter", str(p.vdam_iterations), "--grad_write_iter", "10", "--auto_sampling",
                "--tau2_fudge", "4"]
    if preread:
        cmd.append("--preread_images")
    return cmd + list(p.extra)


def reconstruct_command(relion: RelionInstall, particles: str | Path, out_map: str | Path, symmetry: str = "C1",
                        subset: int | None = None, pixel_size: float | None = None) -> list[str]:
    """relion_reconstruct with CTF correction; ``subset`` 1 or 2 for a half map."""
    if relion.reconstruct is None:
        raise ValueError(f"{relion.describe()}: relion_reconstruct not found")
    cmd = [relion.reconstruct, "--i", str(particles), "--o", str(out_map), "--ctf", "--sym", symmetry]
    if subset in (1, 2):
        cmd += ["--subset", str(subset)]
    if pixel_size:
        cmd += ["--angpix", _num(pixel_size)]
    return cmd


def reextract_command(relion: RelionInstall, particles: str | Path, out_dir: str | Path, box: int,
                      background_radius: int, invert_contrast: bool = False) -> list[str]:
    """relion_preprocess re-extraction at ``box`` px from the micrographs the particles name."""
    if relion.preprocess is None:
        raise ValueError(f"{relion.describe()}: relion_preprocess not found")
    out = Path(out_dir)
    cmd = [relion.preprocess, "--reextract_data_star", str(particles), "--part_star", str(out / "particles.star"),
           "--part_dir", str(out) + "/", "--extract", "--extract_size", str(box), "--norm",
           "--bg_radius", str(background_radius), "--pipeline_control", f"{out}/"]
    if invert_contrast:
        cmd.append("--invert_contrast")
    return cmd
