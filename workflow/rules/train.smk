# Training the scoring model: simulated datasets, 2D-classified and graded against their ground
# truth, then the network. Run with the training configuration:
#   snakemake -s workflow/Snakefile train --configfile config/train.yaml --cores 2
# The held-out datasets (numbers heldout_first .. +heldout-1, default right after the training ones)
# measure the model's quality on other structures; the training datasets are the first N numbers
# outside that range, so more training data leaves the held-out structures where they were. The
# selection datasets (well-classifiable, more junk) measure the selection at the cutoff.
import json as _json

from cryosift.pipeline.plan import training_numbers

# The schema fills every default and checks every value (workflow/schemas/config.schema.yaml).
TRAIN = config["train"]
TRAIN_OUT = TRAIN["out"]
TRAIN_SEED = TRAIN["seed"]
TRAIN_N = TRAIN["datasets"]
HELDOUT_N = TRAIN["heldout"]
TRAIN_SETTINGS = TRAIN["settings"] or {}
SELECTION = TRAIN["selection"]
SELECTION_N = SELECTION["datasets"]
HELDOUT_FIRST = TRAIN.get("heldout_first", TRAIN_N)
# Per kind of dataset: numbers, master seed and generation settings.
TRAIN_NUMBERS = {
    "data": training_numbers(TRAIN_N, HELDOUT_FIRST, HELDOUT_N),
    "heldout": list(range(HELDOUT_FIRST, HELDOUT_FIRST + HELDOUT_N)),
    "selection": list(range(SELECTION_N)),
}
TRAIN_CSVS = {
    kind: [f"{TRAIN_OUT}/{kind}/ds{i:04d}/classes.csv" for i in numbers] for kind, numbers in TRAIN_NUMBERS.items()
}
TRAIN_SEEDS = {"data": TRAIN_SEED, "heldout": TRAIN_SEED, "selection": SELECTION["seed"]}
TRAIN_SETTING_ARGS = {
    kind: (f"--settings '{_json.dumps(settings)}'" if settings else "")
    for kind, settings in (
        ("data", TRAIN_SETTINGS),
        ("heldout", TRAIN_SETTINGS),
        ("selection", SELECTION["settings"] or {}),
    )
}


rule train_simulate:
    output:
        f"{TRAIN_OUT}/{{kind}}/ds{{index}}/settings.json",
    log:
        f"{TRAIN_OUT}/logs/simulate/{{kind}}/ds{{index}}.log",
    benchmark:
        f"{TRAIN_OUT}/benchmarks/simulate/{{kind}}/ds{{index}}.tsv"
    wildcard_constraints:
        kind="data|heldout|selection",
        index=r"\d{4}",
    conda:
        "../envs/cryosift.yaml"
    params:
        folder=lambda wc, output: str(Path(output[0]).parent),
        index=lambda wc: int(wc.index),
        seed=lambda wc: TRAIN_SEEDS[wc.kind],
        settings=lambda wc: TRAIN_SETTING_ARGS[wc.kind],
        device=device_arg(),
    shell:
        "cryosift train --generate {params.folder} --stage simulate --index {params.index} --seed {params.seed}"
        " {params.settings} {params.device} -j {threads} > {log} 2>&1"


rule train_grade:
    input:
        f"{TRAIN_OUT}/{{kind}}/ds{{index}}/settings.json",
    output:
        csv=f"{TRAIN_OUT}/{{kind}}/ds{{index}}/classes.csv",
        averages=f"{TRAIN_OUT}/{{kind}}/ds{{index}}/averages.npz",
    log:
        f"{TRAIN_OUT}/logs/grade/{{kind}}/ds{{index}}.log",
    benchmark:
        f"{TRAIN_OUT}/benchmarks/grade/{{kind}}/ds{{index}}.tsv"
    wildcard_constraints:
        kind="data|heldout|selection",
        index=r"\d{4}",
    conda:
        "../envs/cryosift.yaml"
    params:
        folder=lambda wc, input: str(Path(input[0]).parent),
    shell:
        "cryosift train --generate {params.folder} --stage grade -j {threads} > {log} 2>&1"


rule train_model:
    input:
        TRAIN_CSVS["data"],
    output:
        model=f"{TRAIN_OUT}/model/default.pt",
        metrics=f"{TRAIN_OUT}/model/training.json",
    log:
        f"{TRAIN_OUT}/logs/train_model.log",
    benchmark:
        f"{TRAIN_OUT}/benchmarks/train_model.tsv"
    conda:
        "../envs/cryosift.yaml"
    resources:
        gpu=0 if config["device"] == "cpu" else 1,
    params:
        # The configured datasets, not their folder: it may hold others from an earlier configuration.
        data=lambda wc, input: " ".join(str(Path(csv).parent) for csv in input),
        epochs=TRAIN["epochs"],
        batch=TRAIN["batch_size"],
        lr=TRAIN["lr"],
        wd=TRAIN["weight_decay"],
        val=TRAIN["val_fraction"],
        iterations=TRAIN["iterations"],
        seed=TRAIN["train_seed"],
        dropout=TRAIN["dropout"],
        ema=TRAIN["ema"],
        schedule=TRAIN["schedule"],
        render=TRAIN["render"],
        device=device_arg(),
    shell:
        "cryosift train --data {params.data} -o {output.model} --epochs {params.epochs} --batch-size {params.batch}"
        " --lr {params.lr} --weight-decay {params.wd} --val-fraction {params.val} --iterations {params.iterations}"
        " --seed {params.seed} --dropout {params.dropout} --ema {params.ema} --schedule {params.schedule}"
        " --render {params.render} --metrics {output.metrics}"
        " {params.device} -j {threads} > {log} 2>&1"


rule train_quality:
    input:
        model=f"{TRAIN_OUT}/model/default.pt",
        data=lambda wc: TRAIN_CSVS[wc.kind],
    output:
        json=f"{TRAIN_OUT}/model/quality_{{kind}}.json",
        csv=f"{TRAIN_OUT}/model/quality_{{kind}}.csv",
    log:
        f"{TRAIN_OUT}/logs/train_quality_{{kind}}.log",
    benchmark:
        f"{TRAIN_OUT}/benchmarks/train_quality_{{kind}}.tsv"
    wildcard_constraints:
        kind="heldout|selection",
    conda:
        "../envs/cryosift.yaml"
    params:
        data=lambda wc, input: " ".join(str(Path(csv).parent) for csv in input.data),
        cutoff=TRAIN["cutoff"],
    shell:
        "python benchmarks/score_quality.py --data {params.data} --model {input.model} --cutoff {params.cutoff}"
        " --json {output.json} --csv {output.csv} > {log} 2>&1"


rule train:
    input:
        rules.train_model.output.model,
        f"{TRAIN_OUT}/model/quality_heldout.json",
        [f"{TRAIN_OUT}/model/quality_selection.json"] if SELECTION_N else [],
