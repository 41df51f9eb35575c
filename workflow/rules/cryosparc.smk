# CryoSPARC-engine datasets: classification, class selection, re-extraction and ab initio run as jobs
# on the server; scoring, selection decisions and validation run here on the exported files.
# Job titles are "[cryosift <run>] <dataset>/<step>/<action>" (the last two parts of each -o folder),
# so a rerun finds its jobs again: keep these folders as they are.


rule cryosparc_settings:
    output:
        CRYOSPARC_SETTINGS,
    log:
        log_path("cryosparc", "settings"),
    benchmark:
        bench_path("cryosparc", "settings")
    conda:
        "../envs/cryosift.yaml"
    params:
        block=json.dumps(CRYOSPARC, sort_keys=True),
    shell:
        "cryosift cryosparc settings --json {params.block:q} -o {output} > {log} 2>&1"


rule cryosparc_ingest:
    input:
        settings=CRYOSPARC_SETTINGS,
    output:
        info=f"{RESULTS}/ingest/{{dataset}}/dataset.json",
    log:
        log_path("ingest", "{dataset}"),
    benchmark:
        bench_path("ingest", "{dataset}")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=True, has_classes=False)),
    conda:
        "../envs/cryosift.yaml"
    params:
        args=lambda wc: PLAN.cryosparc_ingest_args(wc.dataset),
        out=lambda wc, output: str(Path(output.info).parent),
    shell:
        "cryosift cryosparc ingest --config {input.settings} {params.args} -o {params.out} > {log} 2>&1"


use rule cryosparc_ingest as cryosparc_ingest_classified with:
    output:
        info=f"{RESULTS}/ingest/{{dataset}}/dataset.json",
        classification=f"{RESULTS}/ingest/{{dataset}}/classification.json",
    log:
        log_path("ingest", "{dataset}"),
    benchmark:
        bench_path("ingest", "{dataset}")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=True, has_classes=True)),


rule cryosparc_classify:
    input:
        unpack(lambda wc: PLAN.cryosparc_classify_inputs(wc.dataset, wc.step)),
    output:
        f"{RESULTS}/classify/{{dataset}}/{{step}}/classification.json",
    log:
        log_path("classify", "{dataset}/{step}"),
    benchmark:
        bench_path("classify", "{dataset}/{step}")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=True)),
    conda:
        "../envs/cryosift.yaml"
    params:
        args=lambda wc: PLAN.cryosparc_classify_args(wc.dataset, wc.step),
        job=lambda wc, output: str(Path(output[0]).parent),
        previous=lambda wc, input: PLAN.previous_args(input),
    shell:
        "cryosift cryosparc classify {params.args} -o {params.job} --config {input.settings}"
        " --manifest {output} {params.previous} > {log} 2>&1"


rule cryosparc_scores:
    input:
        settings=CRYOSPARC_SETTINGS,
        classification=step_classification,
        scores=f"{RESULTS}/score/{{dataset}}/{{step}}/scores.csv",
    output:
        f"{RESULTS}/cryosparc/{{dataset}}/{{step}}/scores.json",
    log:
        log_path("cryosparc", "{dataset}/{step}/scores"),
    benchmark:
        bench_path("cryosparc", "{dataset}/{step}/scores")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=True)),
    conda:
        "../envs/cryosift.yaml"
    shell:
        "cryosift cryosparc scores --config {input.settings} --classification {input.classification}"
        " --scores {input.scores} -o {output} > {log} 2>&1"


rule cryosparc_select_round:
    input:
        settings=CRYOSPARC_SETTINGS,
        classification=step_classification,
        selection=f"{RESULTS}/select/{{dataset}}/{{step}}/selection.json",
        # The scores are shown in CryoSPARC before the selection is made.
        shown=f"{RESULTS}/cryosparc/{{dataset}}/{{step}}/scores.json",
    output:
        accepted=f"{RESULTS}/cryosparc/{{dataset}}/{{step}}/accepted.cs",
        kept=f"{RESULTS}/cryosparc/{{dataset}}/{{step}}/kept.cs",
    log:
        log_path("cryosparc", "{dataset}/{step}/select"),
    benchmark:
        bench_path("cryosparc", "{dataset}/{step}/select")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=True)),
        step=r"round\d+",
    conda:
        "../envs/cryosift.yaml"
    params:
        out=lambda wc, output: str(Path(output.kept).parent),
    shell:
        "cryosift cryosparc select --config {input.settings} --classification {input.classification}"
        " --selection {input.selection} -o {params.out} > {log} 2>&1"


rule cryosparc_select_final:
    input:
        settings=CRYOSPARC_SETTINGS,
        classification=f"{RESULTS}/classify/{{dataset}}/final/classification.json",
        selection=f"{RESULTS}/select/{{dataset}}/final/selection.json",
        shown=f"{RESULTS}/cryosparc/{{dataset}}/final/scores.json",
    output:
        subsets=expand(f"{RESULTS}/cryosparc/{{{{dataset}}}}/final/score_le_{{cutoff}}.cs", cutoff=CUTOFFS),
    log:
        log_path("cryosparc", "{dataset}/final/select"),
    benchmark:
        bench_path("cryosparc", "{dataset}/final/select")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=True)),
    conda:
        "../envs/cryosift.yaml"
    params:
        out=lambda wc, output: str(Path(output.subsets[0]).parent),
    shell:
        "cryosift cryosparc select --config {input.settings} --classification {input.classification}"
        " --selection {input.selection} -o {params.out} > {log} 2>&1"


rule cryosparc_reconstruct:
    input:
        settings=CRYOSPARC_SETTINGS,
        particles=f"{RESULTS}/cryosparc/{{dataset}}/final/score_le_{{cutoff}}.cs",
    output:
        volume=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit.mrc",
        particles=f"{RESULTS}/abinit/{{dataset}}/cutoff{{cutoff}}/abinit_particles.star",
    log:
        log_path("abinit", "{dataset}/cutoff{cutoff}"),
    benchmark:
        bench_path("abinit", "{dataset}/cutoff{cutoff}")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=True)),
    conda:
        "../envs/cryosift.yaml"
    params:
        out=lambda wc: f"{RESULTS}/cryosparc/{wc.dataset}/cutoff{wc.cutoff}",
        copy_to=lambda wc, output: str(Path(output.volume).parent),
        args=lambda wc: PLAN.cryosparc_reconstruct_args(wc.dataset),
    shell:
        "cryosift cryosparc reconstruct --config {input.settings} --particles {input.particles} -o {params.out}"
        " {params.args} --copy-to {params.copy_to} > {log} 2>&1"
