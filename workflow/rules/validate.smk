# Per cutoff: FSC against the model map, Q-score and ResLog; per dataset: a summary. The ab
# initio half maps are inputs where the dataset's engine declares them (rules/reconstruct.smk).


rule validate:
    input:
        volume=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit.mrc",
        particles=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit_particles.star",
        info=f"{RESULTS}/ingest/{{dataset}}/dataset.json",
        halves=lambda wc: (
            [f"{RESULTS}/abinit/{wc.dataset}/cutoff{wc.cutoff}/abinit_half{h}.mrc" for h in (1, 2)]
            if makes_abinit_half_maps(ds_engine(wc.dataset))
            else []
        ),
    output:
        f"{RESULTS}/validate/{{dataset}}/cutoff{{cutoff}}/validation.json",
    log:
        log_path("validate", "{dataset}/cutoff{cutoff}"),
    benchmark:
        bench_path("validate", "{dataset}/cutoff{cutoff}")
    conda:
        "../envs/cryosift.yaml"
    params:
        out=lambda wc, output: str(Path(output[0]).parent),
        model=lambda wc, input: validation_model_arg(input.info),
        resolution=config["validate"]["model_resolution"],
        sigma=config["validate"]["qscore_sigma"],
        reslog="" if config["validate"]["reslog"] else "--no-reslog",
        halves=lambda wc, input: f"--half-maps {' '.join(input.halves)}" if input.halves else "",
        symmetry=config["abinit"]["symmetry"],
        total=lambda wc, input: ds_info(input.info)["n_particles"],
        seed=config["seed"],
        extra=config["validate"]["extra"],
    shell:
        "cryosift validate {input.volume} --particles {input.particles} {params.halves} {params.model}"
        " --model-resolution {params.resolution} --sigma {params.sigma} {params.reslog} --symmetry {params.symmetry}"
        " --dataset {wildcards.dataset} --cutoff {wildcards.cutoff} --total-particles {params.total}"
        " --seed {params.seed} -o {params.out} -j {threads} {params.extra} > {log} 2>&1"


rule summarize:
    input:
        info=f"{RESULTS}/ingest/{{dataset}}/dataset.json",
        rounds=lambda wc: [
            f"{RESULTS}/select/{wc.dataset}/round{r}/selection.json" for r in range(1, ds_rounds(wc.dataset) + 1)
        ],
        final=f"{RESULTS}/select/{{dataset}}/final/selection.json",
        validations=lambda wc: validation_outputs(wc.dataset),
    output:
        f"{RESULTS}/summary/{{dataset}}.json",
    log:
        log_path("summary", "{dataset}"),
    benchmark:
        bench_path("summary", "{dataset}")
    conda:
        "../envs/cryosift.yaml"
    shell:
        "cryosift summarize --info {input.info} --rounds {input.rounds} --final {input.final}"
        " --validations {input.validations} -o {output} > {log} 2>&1"
