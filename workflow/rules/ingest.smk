# Ingest: simulate (simulated datasets) and bring every dataset into one particle STAR file.


rule simulate:
    output:
        f"{RESULTS}/simulate/{{dataset}}/dataset.json",
    log:
        log_path("simulate", "{dataset}"),
    benchmark:
        bench_path("simulate", "{dataset}")
    conda:
        "../envs/cryosift.yaml"
    params:
        spec=lambda wc: PLAN.simulation_args(wc.dataset),
        out=lambda wc, output: str(Path(output[0]).parent),
    shell:
        "cryosift simulate {params.out} {params.spec} -j {threads} > {log} 2>&1"


rule ingest:
    input:
        unpack(lambda wc: PLAN.ingest_inputs(wc.dataset)),
    output:
        particles=f"{RESULTS}/ingest/{{dataset}}/particles.star",
        info=f"{RESULTS}/ingest/{{dataset}}/dataset.json",
    log:
        log_path("ingest", "{dataset}"),
    benchmark:
        bench_path("ingest", "{dataset}")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=False, has_classes=False)),
    conda:
        "../envs/cryosift.yaml"
    params:
        args=lambda wc, input: PLAN.ingest_args(wc.dataset, input.get("simulation")),
        out=lambda wc, output: str(Path(output.info).parent),
    shell:
        "cryosift ingest {params.args} -o {params.out} > {log} 2>&1"


use rule ingest as ingest_classified with:
    output:
        particles=f"{RESULTS}/ingest/{{dataset}}/particles.star",
        info=f"{RESULTS}/ingest/{{dataset}}/dataset.json",
        classification=f"{RESULTS}/ingest/{{dataset}}/classification.json",
    log:
        log_path("ingest", "{dataset}"),
    benchmark:
        bench_path("ingest", "{dataset}")
    wildcard_constraints:
        dataset=name_pattern(PLAN.names(on_server=False, has_classes=True)),
