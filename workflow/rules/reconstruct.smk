# Per cutoff: re-extract at full size, then ab initio with the same (cloned) seed for every cutoff.
# CryoSPARC-engine datasets do both on the server (rules/cryosparc.smk). An engine whose ab
# initio writes half maps (builtin) declares them, so validation takes them as inputs; the
# others' (RELION's initial model) runs as abinit_without_half_maps.

from cryosift.engines import makes_abinit_half_maps


rule extract:
    input:
        selected=f"{RESULTS}/select/{{dataset}}/final/score_le_{{cutoff}}.star",
        reference=f"{RESULTS}/ingest/{{dataset}}/particles.star",
    output:
        f"{RESULTS}/extract/{{dataset}}/cutoff{{cutoff}}/particles.star",
    log:
        log_path("extract", "{dataset}/cutoff{cutoff}"),
    benchmark:
        bench_path("extract", "{dataset}/cutoff{cutoff}")
    wildcard_constraints:
        dataset=name_pattern(local_datasets()),
    conda:
        "../envs/cryosift.yaml"
    shell:
        "cryosift extract {input.selected} --reference {input.reference} -o {output} > {log} 2>&1"


rule abinit:
    input:
        particles=f"{RESULTS}/extract/{{dataset}}/cutoff{{cutoff}}/particles.star",
    output:
        volume=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit.mrc",
        particles=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit_particles.star",
        halves=multiext(f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit_half", "1.mrc", "2.mrc"),
    log:
        log_path("abinit", "{dataset}/cutoff{cutoff}"),
    benchmark:
        bench_path("abinit", "{dataset}/cutoff{cutoff}")
    wildcard_constraints:
        dataset=name_pattern([ds for ds in local_datasets() if makes_abinit_half_maps(ds_engine(ds))]),
    conda:
        "../envs/cryosift.yaml"
    resources:
        gpu=lambda wc: job_gpus(wc.dataset),
        mpi=lambda wc: mpi_launcher(wc.dataset),
        tasks=lambda wc: mpi_ranks(wc.dataset),
    params:
        engine=lambda wc: ds_engine(wc.dataset),
        engine_args=lambda wc: engine_args(wc.dataset),
        out=lambda wc, output: str(Path(output.volume).parent),
        seed=config["seed"],
        initial=config["abinit"]["initial_resolution"],
        final=config["abinit"]["final_resolution"],
        mb_initial=config["abinit"]["minibatch_initial"],
        mb_final=config["abinit"]["minibatch_final"],
        symmetry=config["abinit"]["symmetry"],
        device=device_arg(),
        extra=config["abinit"]["extra"],
    shell:
        "cryosift abinit {input.particles} -o {params.out} --engine {params.engine} {params.engine_args} --seed {params.seed}"
        " --initial-resolution {params.initial} --final-resolution {params.final}"
        " --minibatch-initial {params.mb_initial} --minibatch-final {params.mb_final}"
        " --symmetry {params.symmetry} {params.device} -j {threads} {params.extra} > {log} 2>&1"


use rule abinit as abinit_without_half_maps with:
    output:
        volume=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit.mrc",
        particles=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit_particles.star",
    wildcard_constraints:
        dataset=name_pattern([ds for ds in local_datasets() if not makes_abinit_half_maps(ds_engine(ds))]),
