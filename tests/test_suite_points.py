"""Each hidden suite's points agree with its notebook.

For every assignment: every hidden test carries `@points(n, cell=...)`; every `cell` is an
autograded test cell of the source notebook (nbgrader grade, not solution, code); and per cell the
suite's points add up to that cell's nbgrader points, so the score students see in the notebook,
the grader's score and the nbgrader gradebook agree. The suite is collected with the runner's own
pytest plugin (what the grader itself sees), not run.
"""
from __future__ import annotations

from collections import defaultdict

import nbformat
import pytest

from autograder.assignments import list_assignments
from autograder.plugin import GradingPlugin
from autograder.runner import _run_suite

ASSIGNMENTS = list_assignments()


def collect(assignment) -> GradingPlugin:
    plugin = GradingPlugin(None, not_graded="collecting")
    _run_suite(assignment.suite_dir, plugin, collect_only=True)
    return plugin


def autograded_cells(nb) -> dict[str, float]:
    """grade_id -> points of the notebook's autograded test cells."""
    cells = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            assert cell.cell_type == "code", f"grade cell {meta.get('grade_id')} without solution is not code"
            cells[meta["grade_id"]] = float(meta.get("points", 0))
    return cells


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=lambda a: a.name)
def test_suite_points_match_the_notebook(assignment):
    assert assignment.source_notebook.is_file(), f"no source notebook {assignment.source_notebook}"
    plugin = collect(assignment)
    assert plugin.records, f"no hidden tests in {assignment.suite_dir}"
    missing = [t for t in plugin.instructor_log if "@points" in t]
    assert not missing, "\n".join(missing)
    no_cell = [nodeid for nodeid, r in plugin.records.items() if not r.cell]
    assert not no_cell, f"tests without @points(..., cell=...): {no_cell}"

    cells = autograded_cells(nbformat.read(assignment.source_notebook, as_version=4))
    per_cell: dict[str, float] = defaultdict(float)
    for nodeid, record in plugin.records.items():
        assert record.cell in cells, (f"{nodeid}: cell {record.cell!r} is not an autograded test cell of "
                                      f"{assignment.source_notebook.name} (those are {sorted(cells)})")
        assert record.max_points > 0, f"{nodeid} is worth no points"
        per_cell[record.cell] += record.max_points
    for cell, pts in cells.items():
        assert per_cell.get(cell, 0.0) == pytest.approx(pts), (
            f"{assignment.name}: the suite gives cell {cell!r} {per_cell.get(cell, 0.0):g} points, "
            f"the notebook says {pts:g}")
