"""The batch's output formats, each a small exporter in its own file (see base.py for the interface).

Adding a format: write autograder/exporters/<format>.py with a subclass of `Exporter`, and add one
line to EXPORTERS below. `python -m autograder grade <a> <dir> --export NAME` picks formats (all by
default).
"""
from __future__ import annotations

from autograder.exporters.base import Entry, ExportContext, Exporter
from autograder.exporters.csv_gradebook import CSVGradebook
from autograder.exporters.feedback_html import FeedbackHTML
from autograder.exporters.feedback_markdown import FeedbackMarkdown
from autograder.exporters.gradescope import GradescopeResults
from autograder.exporters.nbgrader_gradebook import NbgraderGradebook

EXPORTERS: list[type[Exporter]] = [
    CSVGradebook,
    FeedbackHTML,
    FeedbackMarkdown,
    GradescopeResults,
    NbgraderGradebook,
]


def names() -> list[str]:
    return [e.name for e in EXPORTERS]


def select(chosen=None) -> list[Exporter]:
    """New exporters for the names in `chosen` (None or empty: all), in EXPORTERS order.

    Names may be given as a list or as comma-separated strings; an unknown name is a ValueError
    listing the known ones."""
    wanted = {n.strip() for item in (chosen or []) for n in str(item).split(",") if n.strip()}
    unknown = sorted(wanted - set(names()))
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(unknown)} (known: {', '.join(names())})")
    return [e() for e in EXPORTERS if not wanted or e.name in wanted]


__all__ = ["EXPORTERS", "Entry", "ExportContext", "Exporter", "names", "select"]
