# Scoring: every class average of every classification gets a CryoSift score.


rule score:
    input:
        classification=step_classification,
        model=SCORE_MODEL,  # a changed checkpoint (retrained, fine-tuned, upgraded) rescores
    output:
        star=f"{RESULTS}/score/{{dataset}}/{{step}}/scores.star",
        csv=f"{RESULTS}/score/{{dataset}}/{{step}}/scores.csv",
        gallery=report(
            f"{RESULTS}/score/{{dataset}}/{{step}}/scores.png",
            caption="../report/gallery.rst",
            category="Class averages",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "step": "{step}"},
        ),
    log:
        log_path("score", "{dataset}/{step}"),
    benchmark:
        bench_path("score", "{dataset}/{step}")
    conda:
        "../envs/cryosift.yaml"
    params:
        model=config["score"]["model"],
        batch=config["score"]["batch_size"],
        # Scoring takes well under a second per classification on a CPU: no GPU to wait for.
        device="--device cpu",
    shell:
        "cryosift score {input.classification} --model {params.model} -o {output.star}"
        " --batch-size {params.batch} {params.device} -j {threads} > {log} 2>&1"
