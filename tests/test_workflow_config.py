"""A strict configuration: a misspelt key in any block of config.yaml or the datasets sheet stops
the run with one line naming it (workflow/schemas/, every block closed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cryosift.errors import InputError
from cryosift.pipeline.config import check_config, check_sheet, load_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "workflow" / "schemas"
SNAKEFILE = REPO / "workflow" / "Snakefile"
HEADER = ["dataset", "type", "source", "engine", "diameter", "model", "pixel_size", "rounds"]

#: One misspelt key per block of config.schema.yaml: (config, the key path the message names).
MISSPELT = [
    ({"datasets": "d.tsv", "seeed": 1}, "config seeed"),
    ({"datasets": "d.tsv", "classify": {"clases": 3}}, "config classify.clases"),
    ({"datasets": "d.tsv", "score": {"batchsize": 8}}, "config score.batchsize"),
    ({"datasets": "d.tsv", "selection": {"cutofs": [3.5]}}, "config selection.cutofs"),
    ({"datasets": "d.tsv", "abinit": {"symetry": "C2"}}, "config abinit.symetry"),
    ({"datasets": "d.tsv", "validate": {"res_log": False}}, "config validate.res_log"),
    ({"datasets": "d.tsv", "relion": {"mpis": 4}}, "config relion.mpis"),
    ({"datasets": "d.tsv", "cryosparc": {"projcet": "P3"}}, "config cryosparc.projcet"),
    ({"datasets": "d.tsv", "cryosparc": {"validation_jobs": [{"key": "a", "type": "b", "parms": {}}]}},
     "config cryosparc.validation_jobs.0.parms"),
    ({"datasets": "d.tsv", "train": {"epohcs": 3}}, "config train.epohcs"),
    ({"datasets": "d.tsv", "train": {"selection": {"datsets": 2}}}, "config train.selection.datsets"),
]


def test_every_block_of_both_schemas_is_closed():
    def blocks(schema, path="top"):
        if schema.get("type") == "object" and "properties" in schema:
            yield path, schema
            for key, sub in schema["properties"].items():
                yield from blocks(sub, f"{path}.{key}")
        if isinstance(schema.get("items"), dict):
            yield from blocks(schema["items"], f"{path}[]")

    for name in ("config.schema.yaml", "datasets.schema.yaml"):
        found = list(blocks(load_schema(SCHEMAS / name)))
        assert found
        assert [p for p, b in found if b.get("additionalProperties") is not False] == [], name
    assert "train" in load_schema(SCHEMAS / "config.schema.yaml")["properties"]


@pytest.mark.parametrize("config,key", MISSPELT, ids=[k for _, k in MISSPELT])
def test_misspelt_key_is_named(config, key):
    with pytest.raises(InputError) as err:
        check_config(config, SCHEMAS / "config.schema.yaml")
    message = str(err.value)
    assert message.startswith(f"{key}: unknown key (known: ") and "\n" not in message, message


def test_known_keys_and_shipped_configs_pass():
    schema = SCHEMAS / "config.schema.yaml"
    merged = {}
    for name in ("config.yaml", "demo.yaml", "train.yaml"):
        data = yaml.safe_load((REPO / "config" / name).read_text())
        check_config(data if "datasets" in data else {"datasets": "d.tsv", **data}, schema)
        merged.update(data)
    check_config(merged, schema)
    check_config({"datasets": "d.tsv", "relion": {"mpi": 2, "gpu": True}}, schema)


def test_bad_value_names_its_key():
    with pytest.raises(InputError, match=r"^config train.heldout_first: 'first' is not of type 'integer'$"):
        check_config({"datasets": "d.tsv", "train": {"heldout_first": "first"}}, SCHEMAS / "config.schema.yaml")
    with pytest.raises(InputError, match=r"^config classify.classes: 0 is less than the minimum of 1$"):
        check_config({"datasets": "d.tsv", "classify": {"classes": 0}}, SCHEMAS / "config.schema.yaml")


def test_numbers_from_the_command_line_are_read_as_numbers():
    # `--config 'train={datasets: 3}'` reaches the workflow as text
    config = {"datasets": "d.tsv", "train": {"datasets": "3", "lr": "1e-3", "iterations": "9,12"},
              "validate": {"reslog": "false"}}
    check_config(config, SCHEMAS / "config.schema.yaml")
    assert config["train"] == {"datasets": 3, "lr": 0.001, "iterations": "9,12"}
    assert config["validate"]["reslog"] is False


def test_misspelt_sheet_column_and_bad_row_are_named():
    schema = SCHEMAS / "datasets.schema.yaml"
    columns = HEADER[:4] + ["diamter"]
    with pytest.raises(InputError, match=r"^sheet.tsv: column 'diamter': unknown column \(known: dataset, "):
        check_sheet([dict(zip(columns, ["a", "simulated", "demo", "", "150"]))], columns, schema, "sheet.tsv")
    with pytest.raises(InputError, match=r"^sheet.tsv: row b type: 'cryo' is not one of"):
        check_sheet([{"dataset": "b", "type": "cryo", "source": "x"}], ["dataset", "type", "source"], schema,
                    "sheet.tsv")


def _project(tmp_path, config, columns=HEADER, row=("demo", "simulated", "demo", "", "", "", "", "")):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "datasets.tsv").write_text("\t".join(columns) + "\n" + "\t".join(row) + "\n")
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump({"datasets": "config/datasets.tsv", **config}))
    return tmp_path


def _run(workdir, *extra):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(SNAKEFILE), "--directory",
                           str(workdir), "--cores", "1", *extra], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("config,column,line", [
    ({"selection": {"cutofs": [3.5]}}, None,
     "config selection.cutofs: unknown key (known: accept_fraction, accept_score, cutoffs, reject_score, rounds)"),
    ({"train": {"selection": {"datsets": 2}}}, None, "config train.selection.datsets: unknown key (known: "),
    ({}, "diamter", "config/datasets.tsv: column 'diamter': unknown column (known: "),
])
def test_the_workflow_stops_on_a_misspelt_key(tmp_path, config, column, line):
    columns = HEADER if column is None else HEADER[:4] + [column] + HEADER[5:]
    rc, out = _run(_project(tmp_path, config, columns))
    assert rc != 0
    assert any(row.startswith(line) for row in out.splitlines()), out[-2000:]
