"""The one reader (and writer) of cryosift's small JSON records.

Every stage file (``dataset.json``, ``classification.json``, ``selection.json``,
``validation.json``, ``summary.json``) and every side record (``cryosparc.json``, a
simulation's ``dataset.json``) is read through :func:`read_json`, so a missing, truncated or
foreign file is reported the same way: one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryosift.errors import InputError, require_file
from cryosift.io.atomic import write_text_atomic


def read_json(path: str | Path, what: str | None = None) -> dict:
    """A JSON object from ``path``.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str, optional
        What the file should be (e.g. ``"a classification manifest"``), named in the error
        when it holds something other than a JSON object.

    Raises
    ------
    InputError
        Naming the file: missing, not a file, unreadable, not valid JSON, or not an object.
    """
    p = require_file(path)
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise InputError(p, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise InputError(p, f"expected a JSON object{f' ({what})' if what else ''}")
    return data


def write_json(path: str | Path, record: dict, sort_keys: bool = False) -> None:
    """Write ``record`` as indented JSON with a final newline, atomically."""
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=sort_keys) + "\n")
