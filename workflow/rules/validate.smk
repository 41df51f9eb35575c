# Per cutoff: FSC against the model map, Q-score and ResLog; per dataset: a summary.


def validation_half_maps(wildcards):
    """The ab initio half maps where the dataset's engine declares them (rules/reconstruct.smk)."""
    if wildcards.dataset not in abinit_half_map_datasets(True):
        return []
    base = f"{RESULTS}/abinit/{wildcards.dataset}/cutoff{wildcards.cutoff}/abinit_half"
    return [f"{base}1.mrc", f"{base}2.mrc"]


rule validate:
    input:
        volume=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit.mrc",
        particles=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit_particles.star",
        info=f"{RESULTS}/ingest/{{dataset}}/dataset.json",
        halves=validation_half_maps,
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
