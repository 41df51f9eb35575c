"""Per-dataset summary: particles through each round, kept per cutoff, and validation per cutoff."""

from __future__ import annotations

from pathlib import Path

from cryosift.records import read_dataset, read_selection, read_validation
from cryosift.records import write_summary as write_summary_record
from cryosift.scoring.domain import MOST, DomainWarning, warning_line


def summarize_dataset(info: str | Path, rounds: list, final: str | Path, validations: list) -> dict:
    """Collect a dataset's ingest facts, round selections, final split and validations.

    Parameters
    ----------
    info : path
        ``dataset.json`` from ingest.
    rounds : list of path
        ``selection.json`` of each loop round, in order.
    final : path
        ``selection.json`` of the final split.
    validations : list of path
        ``validation.json`` per cutoff.

    ``warnings`` lists each step's out-of-domain warning line (:mod:`cryosift.scoring.domain`)
    and one for the whole loop when its rounds together rejected most of the dataset.
    """
    facts = read_dataset(info)
    total = int(facts["n_particles"])
    summary = {"dataset": facts["dataset"], "type": facts["type"], "box": facts["box"],
               "pixel_size": facts["pixel_size"], "particles": total, "rounds": []}
    warnings = []
    for path in rounds:
        s = read_selection(path)
        carried = {"carried_over": True} if "carried_over_from" in s else {}  # the loop had stopped
        summary["rounds"].append({"round": s["round"], "stop": s["stop"], **s["particles"], **carried})
        if s.get("warning"):
            warnings.append({"step": f"round {s['round']}", "warning": s["warning"]})
    rejected = sum(int(r.get("rejected", 0)) for r in summary["rounds"])
    if total > 0 and rejected / total > MOST:
        loop = DomainWarning("most_rejected", f"the loop rejected {rejected:,} of the dataset's {total:,} particles "
                                              f"({rejected / total:.0%})")
        warnings.append({"step": "loop", "warning": warning_line([loop])})
    f = read_selection(final)
    if f.get("warning"):
        warnings.append({"step": "final", "warning": f["warning"]})
    summary["pooled"] = f["particles"]["total"]
    summary["cutoffs"] = {}
    for cutoff, r in f["cutoffs"].items():
        summary["cutoffs"][cutoff] = {"particles": r["particles_kept"], "fraction": r["particles_kept"] / total,
                                      "classes": len(r["classes_kept"])}
    for path in validations:
        v = read_validation(path).data
        key = f"{float(v['cutoff']):g}"
        summary["cutoffs"].setdefault(key, {})["validation"] = v
    summary["warnings"] = warnings
    return summary


def write_summary(out: str | Path, **kwargs) -> dict:
    """:func:`summarize_dataset` written atomically as JSON."""
    summary = summarize_dataset(**kwargs)
    write_summary_record(out, summary)
    return summary
