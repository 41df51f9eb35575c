# Config, datasets sheet, wildcard constraints and input functions shared by every stage.
import json
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

from cryosift.pipeline.datasets import describe_source, rounds_for, source_box


validate(config, schema="../schemas/config.schema.yaml")

datasets = pd.read_csv(config["datasets"], sep="\t", dtype=str, comment="#").fillna("")
datasets.columns = [c.strip() for c in datasets.columns]
validate(datasets, schema="../schemas/datasets.schema.yaml")
if datasets["dataset"].duplicated().any():
    raise ValueError(f"{config['datasets']}: dataset names must be unique")
datasets = datasets.set_index("dataset", drop=False)

RESULTS = config["results"]
CUTOFFS = [f"{c:g}" for c in sorted(float(c) for c in config["selection"]["cutoffs"])]
SOURCES = {ds: describe_source(row["type"], row["source"], where=f"{config['datasets']}: {ds}")
           for ds, row in datasets.iterrows()}


wildcard_constraints:
    dataset="|".join(datasets.index) or "NONE",
    step=r"round\d+|final",
    cutoff="|".join(c.replace(".", r"\.") for c in CUTOFFS),


def ds_row(ds):
    return datasets.loc[ds]


def ds_engine(ds):
    return ds_row(ds)["engine"] or config["engine"]


def engine_args(ds):
    """Engine settings from config.yaml for the engine a dataset uses (RELION: MPI ranks, programs' folder)."""
    if ds_engine(ds) != "relion":
        return ""
    relion = config.get("relion", {})
    args = f"--mpi {relion.get('mpi', 1)}"
    return args + (f" --relion-prefix {relion['prefix']}" if relion.get("prefix") else "")


def ds_rounds(ds):
    row = ds_row(ds)
    override = row["rounds"] or config["selection"]["rounds"]
    if override not in ("", "auto"):
        return int(override)
    return rounds_for(source_box(SOURCES[ds]))


def ds_info(path):
    """dataset.json written by ingest (read at job time, when it exists)."""
    return json.loads(Path(path).read_text())


def device_arg():
    return "" if config["device"] == "auto" else f"--device {config['device']}"


def step_round(step):
    """1-based round number of a step name ``roundN``; None for ``final``."""
    return None if step == "final" else int(step[len("round"):])


def classification_of(ds, step):
    """Manifest of a step's classification (round 1 of a classified source: the input's)."""
    if step == "round1" and SOURCES[ds].has_classes:
        return f"{RESULTS}/ingest/{ds}/classification.json"
    return f"{RESULTS}/classify/{ds}/{step}/classification.json"


def step_classification(wildcards):
    return classification_of(wildcards.dataset, wildcards.step)


def classified_datasets():
    return [ds for ds in datasets.index if SOURCES[ds].has_classes]


def name_pattern(names):
    """A wildcard constraint matching exactly these names (or nothing)."""
    import re

    return "|".join(re.escape(n) for n in names) or "(?!)"


def classify_inputs(wildcards):
    """Round 1 classifies the ingested particles; round r >= 2 the kept particles of round r-1,
    or reuses round r-1's classification when round r-1 ended the loop (nothing rejected)."""
    ds = wildcards.dataset
    inputs = {"info": f"{RESULTS}/ingest/{ds}/dataset.json"}
    r = step_round(wildcards.step)
    if r is None:
        inputs["particles"] = f"{RESULTS}/pool/{ds}/particles.star"
    elif r == 1:
        inputs["particles"] = f"{RESULTS}/ingest/{ds}/particles.star"
    else:
        inputs["particles"] = f"{RESULTS}/select/{ds}/round{r - 1}/kept.star"
        inputs["previous_selection"] = f"{RESULTS}/select/{ds}/round{r - 1}/selection.json"
        inputs["previous"] = classification_of(ds, f"round{r - 1}")
    return inputs


def pool_inputs(wildcards):
    ds = wildcards.dataset
    n = ds_rounds(ds)
    accepted = [f"{RESULTS}/select/{ds}/round{r}/accepted.star" for r in range(1, n + 1)]
    return accepted + [f"{RESULTS}/select/{ds}/round{n}/kept.star"]


def validation_outputs(ds):
    return [f"{RESULTS}/validate/{ds}/cutoff{c}/validation.json" for c in CUTOFFS]


def simulation_args(ds):
    from cryosift.simulate.presets import PRESETS

    source = ds_row(ds)["source"]
    return f"--preset {source}" if source in PRESETS else f"--config {source}"


def ingest_inputs(wildcards):
    ds = wildcards.dataset
    src = SOURCES[ds]
    if src.type == "simulated":
        return {"simulation": f"{RESULTS}/simulate/{ds}/dataset.json"}
    return {"source": src.path} if Path(src.path).is_file() else {}


def ingest_args(ds, input):
    row = ds_row(ds)
    source = Path(input.simulation).parent if SOURCES[ds].type == "simulated" else row["source"]
    args = f"--dataset {ds} --type {row['type']} --source {source}"
    for key, flag in (("diameter", "--diameter"), ("model", "--model"), ("pixel_size", "--pixel-size")):
        if str(row[key]).strip():
            args += f" {flag} {row[key]}"
    return args


def validation_model_arg(info_path):
    model = ds_info(info_path).get("model")
    return f"--model {model}" if model else ""


def log_path(stage, name):
    return f"{RESULTS}/logs/{stage}/{name}.log"


def bench_path(stage, name):
    return f"{RESULTS}/benchmarks/{stage}/{name}.tsv"


def get_final_output():
    out = []
    for ds in datasets.index:
        out += validation_outputs(ds)
        out.append(f"{RESULTS}/summary/{ds}.json")
    out.append(f"{RESULTS}/report/comparison.csv")
    return out
