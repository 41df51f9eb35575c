# Across datasets: the comparison table and the paper-style plots, with captions for --report.


rule report:
    input:
        validations=[v for ds in datasets.index for v in validation_outputs(ds)],
        summaries=expand(f"{RESULTS}/summary/{{dataset}}.json", dataset=datasets.index),
    output:
        table=report(f"{RESULTS}/report/comparison.csv", caption="../report/comparison.rst", category="Comparison"),
        markdown=f"{RESULTS}/report/comparison.md",
        plots=report(
            directory(f"{RESULTS}/report/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Comparison",
        ),
    log:
        log_path("report", "comparison"),
    benchmark:
        bench_path("report", "comparison")
    conda:
        "../envs/cryosift.yaml"
    params:
        out=lambda wc, output: str(Path(output.table).parent),
    shell:
        "cryosift report {input.validations} --summaries {input.summaries} -o {params.out} > {log} 2>&1"
