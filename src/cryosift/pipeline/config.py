"""The workflow's configuration and datasets sheet checked against their JSON schemas.

Every block of both schemas is closed (``additionalProperties: false``), so a misspelt key stops
the run instead of being ignored. A problem is reported as one line naming the key, e.g.
``config classify.clases: unknown key (known: classes, final_classes, ...)``.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from cryosift.errors import InputError


def load_schema(path: str | Path) -> dict:
    """The schema at ``path`` (YAML)."""
    return yaml.safe_load(Path(path).read_text())


def _key_path(where: str, parts) -> str:
    """``config classify.clases``: the prefix, a space, the dotted keys."""
    dotted = ".".join(str(p) for p in parts)
    return " ".join(x for x in (where, dotted) if x)


def describe_error(error, where: str) -> str:
    """One line for a jsonschema ``ValidationError``: the key path, then the problem."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in known)
        if unknown:
            key = _key_path(where, [*error.absolute_path, unknown[0]])
            return f"{key}: unknown key (known: {', '.join(known)})"
    key = _key_path(where, error.absolute_path) or where
    return f"{key}: {error.message}"


def _types(schema: dict) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def coerce_cli_values(config, schema: dict):
    """Numbers and booleans given as text (``--config 'train={datasets: 3}'`` reaches the workflow
    as strings) turned into what the schema asks for; other values as they are. Works in place."""
    if isinstance(config, dict) and isinstance(schema.get("properties"), dict):
        for key, value in config.items():
            sub = schema["properties"].get(key)
            if sub is None:
                continue
            if isinstance(value, str) and "string" not in _types(sub):
                config[key] = _from_text(value, _types(sub))
            else:
                coerce_cli_values(value, sub)
    return config


def _from_text(text: str, types: list[str]):
    value = text.strip()
    if "boolean" in types and value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind, convert in (("integer", int), ("number", float)):
        if kind in types:
            try:
                return convert(value)
            except ValueError:
                pass
    return text


def check_config(config: dict, schema: str | Path | dict, where: str = "config") -> None:
    """Raise InputError with one line for the first problem of ``config`` (keys in document order).

    Numbers and booleans that came as text from the command line are converted first (in place).

    Parameters
    ----------
    config : dict
        The merged configuration (config files and ``--config``).
    schema : str, Path or dict
        The JSON schema (draft 2020-12), or the path of its YAML file.
    where : str
        Prefix of the key path in the message.
    """
    schema = load_schema(schema) if not isinstance(schema, dict) else schema
    coerce_cli_values(config, schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise InputError(None, describe_error(errors[0], where))


def check_sheet(rows: list[dict], columns: list[str], schema: str | Path | dict, sheet: str | Path) -> None:
    """Check a datasets sheet: its column names, then each row (rows as read, all strings).

    Raises InputError naming the sheet and the column or row at fault.
    """
    schema = load_schema(schema) if not isinstance(schema, dict) else schema
    known = list(schema.get("properties", {}))
    for column in columns:
        if column not in known:
            raise InputError(sheet, f"column {column!r}: unknown column (known: {', '.join(known)})")
    validator = Draft202012Validator(schema)
    for row in rows:
        errors = sorted(validator.iter_errors(row), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            name = row.get("dataset") or "?"
            raise InputError(sheet, describe_error(errors[0], f"row {name}"))
