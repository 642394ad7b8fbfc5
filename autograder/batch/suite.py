"""What the batch needs to know of the hidden suite without grading anything.

`suite_fingerprint` is what a stored grade depends on on the suite's side: a submission whose
notebook and fingerprint are unchanged keeps its grade on a rerun. `suite_tests` lists the suite's
tests, so that a student the grader never ran on (no submission, a grader crash) still gets a row
with every test at 0 points.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
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

    Where this process started the graders' fork server (a batch with submissions to grade,
    forkgrader.py), the collection runs in a process forked from it, `python -m autograder tests
    <assignment> --json`: torch, pytest and the suite's imports are loaded there already (about
    0.3 s of CPU, against 2-5 s to import them here, on the cores the first graders start on).
    Anything wrong with that answer, and the collection runs here, where a broken suite raises.
    """
    forked = _collect_forked(assignment)
    return forked if forked is not None else collect_tests(assignment)


def collect_tests(assignment) -> list[dict]:
    """suite_tests, collected in this process (raises GraderError when the suite cannot be collected)."""
    from autograder.plugin import GradingPlugin
    from autograder.runner import _run_suite
    plugin = GradingPlugin(None, not_graded="collecting")
    _run_suite(Path(assignment.suite_dir), plugin, collect_only=True)
    return [{"name": r.name, "cell": r.cell, "max_points": r.max_points, "description": r.doc}
            for r in plugin.records.values()]


def _collect_forked(assignment, timeout: float = 300.0) -> list[dict] | None:
    """suite_tests from a process forked from the running fork server; None where there is none,
    the assignment is not laid out under a course root, or the answer is not a list of tests."""
    from autograder import forkgrader
    from autograder.assignments import Assignment
    if not forkgrader.started():
        return None
    root = Path(assignment.suite_dir).parents[2]        # <root>/autograder/suites/<name>
    if Assignment.at(assignment.name, root) != assignment:
        return None
    proc = forkgrader.spawn(["tests", assignment.name, "--json", "--root", str(root)], dict(os.environ))
    try:
        out, _ = proc.communicate(timeout=timeout)
        tests = json.loads(out) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        proc.kill()
        return None
    ok = isinstance(tests, list) and all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("max_points"), (int, float))
        and not isinstance(t.get("max_points"), bool) for t in tests)
    return tests if ok and tests else None
