"""Comparison of validated maps across datasets and score cutoffs: table and figures."""

from cryosift.report.summary import write_report
from cryosift.report.table import comparison_table, find_validation_files, read_validation, to_markdown, write_table

__all__ = ["comparison_table", "find_validation_files", "read_validation", "to_markdown", "write_report", "write_table"]
