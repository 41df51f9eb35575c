# Config, datasets sheet, wildcard constraints and input functions shared by every stage.
import json
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

from cryosift.errors import InputError
from cryosift.pipeline.config import check_config, check_sheet
from cryosift.pipeline.datasets import check_engine, describe_source, rounds_for, source_box
from cryosift.shipped import model_file

SCHEMAS = Path(workflow.basedir) / "schemas"
# The training configuration (config/train.yaml) names a `train` block; its target makes a model.
TRAINING = "train" in config
# Every block is closed: a misspelt key stops the run with one line naming it. Then Snakemake's
# validation fills the defaults.
check_config(config, SCHEMAS / "config.schema.yaml")
validate(config, schema="../schemas/config.schema.yaml")

datasets = pd.read_csv(config["datasets"], sep="\t", dtype=str, comment="#").fillna("")
datasets.columns = [c.strip() for c in datasets.columns]
check_sheet(datasets.to_dict("records"), list(datasets.columns), SCHEMAS / "datasets.schema.yaml", config["datasets"])
validate(datasets, schema="../schemas/datasets.schema.yaml")
if datasets["dataset"].duplicated().any():
    raise ValueError(f"{config['datasets']}: dataset names must be unique")
datasets = datasets.set_index("dataset", drop=False)

RESULTS = config["results"]
# The checkpoint is an input of every scoring job (a changed model rescores); a missing one is named
# here, before any job runs, except under the training configuration, whose `train` target makes one.
SCORE_MODEL = str(model_file(config["score"]["model"]))
if not TRAINING and not Path(SCORE_MODEL).is_file():
    raise InputError(SCORE_MODEL, f"scoring checkpoint not found (config score.model: {config['score']['model']})")
CUTOFFS = [f"{c:g}" for c in sorted(float(c) for c in config["selection"]["cutoffs"])]
SOURCES = {
    ds: describe_source(row["type"], row["source"], where=f"{config['datasets']}: {ds}")
    for ds, row in datasets.iterrows()
}
CRYOSPARC = config.get("cryosparc", {})
CRYOSPARC_SETTINGS = f"{RESULTS}/cryosparc/settings.json"


wildcard_constraints:
    dataset="|".join(datasets.index) or "NONE",
    step=r"round\d+|final",
    cutoff="|".join(c.replace(".", r"\.") for c in CUTOFFS),


def ds_row(ds):
    return datasets.loc[ds]


def ds_engine(ds):
    return ds_row(ds)["engine"] or config["engine"]


for _ds in datasets.index:
    check_engine(SOURCES[_ds], ds_engine(_ds), where=f"{config['datasets']}: {_ds}")


def cryosparc_datasets():
    """Datasets whose every step runs as jobs on the CryoSPARC server."""
    return [ds for ds in datasets.index if ds_engine(ds) == "cryosparc"]


def local_datasets():
    """Datasets classified and reconstructed here (builtin or RELION engine)."""
    return [ds for ds in datasets.index if ds_engine(ds) != "cryosparc"]


def engine_args(ds):
    """Engine settings from config.yaml for the engine a dataset uses (RELION: MPI ranks, GPU, programs' folder)."""
    if ds_engine(ds) != "relion":
        return ""
    relion = config["relion"]
    args = f"--mpi {relion['mpi']}" + (" --relion-gpu" if relion["gpu"] else "")
    return args + (f" --relion-prefix {relion['prefix']}" if relion["prefix"] else "")


def job_gpus(ds):
    """GPUs a classification or ab initio job of this dataset asks for: 1 for the builtin engine
    unless ``device: cpu`` (``auto`` takes the GPU it is given), 1 for RELION with ``relion.gpu``,
    none for work on a CryoSPARC server."""
    engine = ds_engine(ds)
    if engine == "builtin":
        return 0 if config["device"] == "cpu" else 1
    return 1 if engine == "relion" and config["relion"]["gpu"] else 0


def mpi_ranks(ds):
    """SLURM tasks of a job of this dataset: RELION's MPI ranks (``relion.mpi``), else 1."""
    return int(config["relion"]["mpi"]) if ds_engine(ds) == "relion" else 1


def mpi_launcher(ds):
    """The ``mpi`` resource: set for a RELION job with several ranks, so that the SLURM executor
    allocates the ranks as tasks and runs the command (RELION's mpirun) in the allocation."""
    return "mpirun" if mpi_ranks(ds) > 1 else ""


def sheet_box(ds):
    """The sheet's box column (full extraction box in px), or None when empty or absent."""
    value = str(ds_row(ds).get("box", "")).strip()
    return int(float(value)) if value else None


def ds_box(ds):
    """Full extraction box in px: the sheet's, else cryosparc.extraction_box for a job on the
    server, else read from the source."""
    box = sheet_box(ds)
    if box is None and SOURCES[ds].on_server and CRYOSPARC.get("extraction_box"):
        box = int(CRYOSPARC["extraction_box"])
    return box or source_box(SOURCES[ds], where=f"{config['datasets']}: {ds}")


def ds_rounds(ds):
    row = ds_row(ds)
    override = row["rounds"] or config["selection"]["rounds"]
    if override not in ("", "auto"):
        return int(override)
    return rounds_for(ds_box(ds))


def ds_info(path):
    """dataset.json written by ingest (read at job time, when it exists)."""
    return json.loads(Path(path).read_text())


def device_arg():
    return "" if config["device"] == "auto" else f"--device {config['device']}"


def step_round(step):
    """1-based round number of a step name ``roundN``; None for ``final``."""
    return None if step == "final" else int(step[len("round") :])


def classification_of(ds, step):
    """Manifest of a step's classification (round 1 of a classified source: the input's)."""
    if step == "round1" and SOURCES[ds].has_classes:
        return f"{RESULTS}/ingest/{ds}/classification.json"
    return f"{RESULTS}/classify/{ds}/{step}/classification.json"


def step_classification(wildcards):
    return classification_of(wildcards.dataset, wildcards.step)


def classified_datasets():
    return [ds for ds in datasets.index if SOURCES[ds].has_classes]


def ingested_here(classified):
    """Local datasets whose source is (or is not) a finished classification, for the ingest rules."""
    return [ds for ds in local_datasets() if SOURCES[ds].has_classes == classified]


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


def cryosparc_ingested(classified):
    """CryoSPARC-engine datasets whose source is (or is not) a 2D job, for the cryoSPARC ingest rules."""
    return [ds for ds in cryosparc_datasets() if SOURCES[ds].has_classes == classified]


def cryosparc_ingest_args(ds):
    row = ds_row(ds)
    args = f"--dataset {ds} --source {row['source']}"
    for key, flag in (("diameter", "--diameter"), ("model", "--model")):
        if str(row[key]).strip():
            args += f" {flag} {row[key]}"
    return args


def cryosparc_particles(ds, step):
    """What a cryoSPARC classification classifies: round 1 the source on the server, round r >= 2
    the kept particles of round r-1, the final one the last round's kept particles pooled with
    every round's accepted ones (empty selections add nothing)."""
    r = step_round(step)
    if r == 1:
        return []
    if r is not None:
        return [f"{RESULTS}/cryosparc/{ds}/round{r - 1}/kept.cs"]
    n = ds_rounds(ds)
    return [f"{RESULTS}/cryosparc/{ds}/round{n}/kept.cs"] + [
        f"{RESULTS}/cryosparc/{ds}/round{i}/accepted.cs" for i in range(1, n + 1)
    ]


def cryosparc_classify_inputs(wildcards):
    ds, step = wildcards.dataset, wildcards.step
    inputs = {
        "settings": CRYOSPARC_SETTINGS,
        "info": f"{RESULTS}/ingest/{ds}/dataset.json",
        "particles": cryosparc_particles(ds, step),
    }
    r = step_round(step)
    if r is not None and r >= 2:
        inputs["previous_selection"] = f"{RESULTS}/select/{ds}/round{r - 1}/selection.json"
        inputs["previous"] = classification_of(ds, f"round{r - 1}")
    return inputs


def cryosparc_classify_args(ds, step):
    """Particles and the settings a cryoSPARC classification takes from the sheet and config.yaml."""
    particles = cryosparc_particles(ds, step) or [ds_row(ds)["source"]]
    args = " ".join(particles)
    classes = config["classify"]["final_classes" if step == "final" else "classes"]
    args += f" --classes {classes} --seed {config['seed']}"
    if str(ds_row(ds)["diameter"]).strip():
        args += f" --diameter {ds_row(ds)['diameter']}"
    return args + cryosparc_box_arg(ds)


def cryosparc_box_arg(ds):
    """``--box`` from the sheet (otherwise the engine reads cryosparc.extraction_box or the source job's)."""
    box = sheet_box(ds)
    return f" --box {box}" if box else ""


def cryosparc_seed():
    """Ab initio seed of every cutoff: cryosparc.seed, else the workflow's seed."""
    seed = CRYOSPARC.get("seed")
    return config["seed"] if seed is None else int(seed)


def training_numbers(count, heldout_first, heldout_count):
    """The first ``count`` dataset numbers outside the held-out range."""
    numbers, i = [], 0
    while len(numbers) < count:
        if not heldout_first <= i < heldout_first + heldout_count:
            numbers.append(i)
        i += 1
    return numbers


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
