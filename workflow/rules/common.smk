# Config, datasets sheet and wildcard constraints; every decision (engine, box, rounds, each step's
# inputs and command-line arguments) is the plan's (src/cryosift/pipeline/plan.py), asked here.
import json
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

from cryosift.errors import InputError
from cryosift.pipeline.config import check_config, check_sheet
from cryosift.pipeline.plan import WorkflowPlan, name_pattern, step_round
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
# Sources are described and checked against their engines here, before any job runs.
PLAN = WorkflowPlan(config, datasets.to_dict("records"), config["datasets"])
CUTOFFS = PLAN.cutoffs
CRYOSPARC = PLAN.cryosparc
CRYOSPARC_SETTINGS = PLAN.cryosparc_settings


wildcard_constraints:
    dataset="|".join(datasets.index) or "NONE",
    step=r"round\d+|final",
    cutoff="|".join(c.replace(".", r"\.") for c in CUTOFFS),


# The plan's answers under the names the rules use.
engine_args = PLAN.engine_args
job_gpus = PLAN.gpus
mpi_ranks = PLAN.mpi_ranks
mpi_launcher = PLAN.mpi_launcher
validation_outputs = PLAN.validations
validation_model_arg = PLAN.model_arg


def ds_engine(ds):
    return PLAN[ds].engine


def ds_rounds(ds):
    return PLAN[ds].rounds


def local_datasets():
    """Datasets classified and reconstructed here (builtin or RELION engine)."""
    return PLAN.names(on_server=False)


def device_arg():
    return PLAN.device_arg()


def ds_info(path):
    """dataset.json written by ingest (read at job time, when it exists)."""
    return json.loads(Path(path).read_text())


def step_classification(wildcards):
    return PLAN.classification(wildcards.dataset, wildcards.step)


def log_path(stage, name):
    return f"{RESULTS}/logs/{stage}/{name}.log"


def bench_path(stage, name):
    return f"{RESULTS}/benchmarks/{stage}/{name}.tsv"
