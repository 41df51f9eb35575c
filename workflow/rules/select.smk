# Selection: the loop rounds (attractor rule, rejection, early stop), pooling, and the final cutoff split.


rule select_round:
    input:
        classification=step_classification,
        scores=f"{RESULTS}/score/{{dataset}}/{{step}}/scores.csv",
    output:
        accepted=f"{RESULTS}/select/{{dataset}}/{{step}}/accepted.star",
        kept=f"{RESULTS}/select/{{dataset}}/{{step}}/kept.star",
        rejected=f"{RESULTS}/select/{{dataset}}/{{step}}/rejected.star",
        summary=f"{RESULTS}/select/{{dataset}}/{{step}}/selection.json",
    log:
        log_path("select", "{dataset}/{step}"),
    benchmark:
        bench_path("select", "{dataset}/{step}")
    wildcard_constraints:
        step=r"round\d+",
    conda:
        "../envs/cryosift.yaml"
    params:
        round=lambda wc: step_round(wc.step),
        rounds=lambda wc: PLAN[wc.dataset].rounds,
        accept=config["selection"]["accept_score"],
        fraction=config["selection"]["accept_fraction"],
        reject=config["selection"]["reject_score"],
        out=lambda wc, output: str(Path(output.summary).parent),
    shell:
        "cryosift select round --particles {input.classification} --scores {input.scores}"
        " --round {params.round} --rounds {params.rounds} --accept-score {params.accept}"
        " --accept-fraction {params.fraction} --reject-score {params.reject} --format star"
        " -o {params.out} > {log} 2>&1"


rule pool:
    input:
        lambda wc: PLAN.pool_inputs(wc.dataset),
    output:
        f"{RESULTS}/pool/{{dataset}}/particles.star",
    log:
        log_path("pool", "{dataset}"),
    benchmark:
        bench_path("pool", "{dataset}")
    conda:
        "../envs/cryosift.yaml"
    shell:
        "cryosift select pool {input} -o {output} > {log} 2>&1"


rule select_final:
    input:
        classification=f"{RESULTS}/classify/{{dataset}}/final/classification.json",
        scores=f"{RESULTS}/score/{{dataset}}/final/scores.csv",
    output:
        subsets=expand(f"{RESULTS}/select/{{{{dataset}}}}/final/score_le_{{cutoff}}.star", cutoff=CUTOFFS),
        summary=f"{RESULTS}/select/{{dataset}}/final/selection.json",
    log:
        log_path("select", "{dataset}/final"),
    benchmark:
        bench_path("select", "{dataset}/final")
    conda:
        "../envs/cryosift.yaml"
    params:
        cutoffs=" ".join(CUTOFFS),
        out=lambda wc, output: str(Path(output.summary).parent),
    shell:
        "cryosift select final --particles {input.classification} --scores {input.scores}"
        " --cutoffs {params.cutoffs} --format star -o {params.out} > {log} 2>&1"
