"""What the batch needs to know of the hidden suite without grading anything.

`suite_fingerprint` is what a stored grade depends on on the suite's side: a submission whose
notebook and fingerprint are unchanged keeps its grade on a rerun. `suite_tests` lists the suite's
tests, so that a student the grader never ran on (no submission, a grader crash) still gets a row
with every test at 0 points.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def suite_fingerprint(assignment) -> str:
    """sha256 over the hidden suite's files and the release notebook.

    Changing a hidden test (or the release the answers are merged into) changes this value, and
    every submission is graded again.
    """
    h = hashlib.sha256()
    suite = Path(assignment.suite_dir)
    files = sorted(p for p in suite.rglob("*") if p.is_file()
                   and "__pycache__" not in p.parts and p.suffix != ".pyc") if suite.is_dir() else []
    for p in files + [Path(assignment.release_notebook)]:
        rel = p.relative_to(suite) if p.is_relative_to(suite) else Path("release") / p.name
        h.update(str(rel).encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
        h.update(b"\0")
    return h.hexdigest()


def suite_tests(assignment) -> list[dict]:
    """The hidden suite's tests as [{"name", "cell", "max_points", "description"}], in the runner's order.

    Collected (not run) with the runner's own pytest plugin, so names (parametrized ones too),
    points and cells are exactly those of a graded result. Used for the rows of students the
    grader never ran on (no submission, grader crash): every test listed with 0 points.
    """
    from autograder.plugin import GradingPlugin
    from autograder.runner import _run_suite
    plugin = GradingPlugin(None, not_graded="collecting")
    _run_suite(Path(assignment.suite_dir), plugin, collect_only=True)
    return [{"name": r.name, "cell": r.cell, "max_points": r.max_points, "description": r.doc}
            for r in plugin.records.values()]
