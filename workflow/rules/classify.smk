# 2D classification: one per loop round (round 1 is skipped when the source is a classification),
# and the final one of the pooled particles. CryoSPARC-engine datasets classify on the server
# (rules/cryosparc.smk).


rule classify:
    input:
        unpack(lambda wc: PLAN.classify_inputs(wc.dataset, wc.step)),
    output:
        f"{RESULTS}/classify/{{dataset}}/{{step}}/classification.json",
    log:
        log_path("classify", "{dataset}/{step}"),
    benchmark:
        bench_path("classify", "{dataset}/{step}")
    wildcard_constraints:
        dataset=name_pattern(local_datasets()),
    conda:
        "../envs/cryosift.yaml"
    resources:
        gpu=lambda wc: job_gpus(wc.dataset),
        mpi=lambda wc: mpi_launcher(wc.dataset),
        tasks=lambda wc: mpi_ranks(wc.dataset),
    params:
        engine=lambda wc: ds_engine(wc.dataset),
        engine_args=lambda wc: engine_args(wc.dataset),
        job=lambda wc, output: str(Path(output[0]).parent),
        classes=lambda wc: PLAN.classes(wc.step),
        iterations=config["classify"]["iterations"],
        tau2=config["classify"]["tau2_fudge"],
        box=config["classify"]["box"],
        seed=config["seed"],
        diameter=lambda wc, input: ds_info(input.info)["diameter_A"],
        previous=lambda wc, input: PLAN.previous_args(input),
        device=device_arg(),
        extra=config["classify"]["extra"],
    shell:
        "cryosift classify2d {input.particles} -o {params.job} --engine {params.engine} {params.engine_args}"
        " --classes {params.classes} --iterations {params.iterations} --tau2-fudge {params.tau2}"
        " --box {params.box} --diameter {params.diameter} --seed {params.seed} {params.device}"
        " --manifest {output} {params.previous} --continue-if-same -j {threads} {params.extra} > {log} 2>&1"
