"""Our grades in nbgrader's gradebook: formgrader and `nbgrader export` must show them.

Everything happens in a temporary course root (a copy of the repository's nbgrader_config.py,
whose root is its own folder), never in the repository.
"""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbgrader.api import MissingEntry

import autograder_fakes as fakes
from autograder import batch, release
from autograder import gradebook as nbg

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def course(tmp_path):
    """A course root with the toy assignment released by nbgrader itself (gradebook.db filled)."""
    shutil.copy(REPO / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    (tmp_path / "solutions" / "toyfake").mkdir(parents=True)
    nbformat.write(fakes.source_notebook(), tmp_path / "solutions" / "toyfake" / "toyfake.ipynb")
    release.generate("toyfake", repo=tmp_path)
    suite = tmp_path / "suites" / "toyfake"
    suite.mkdir(parents=True)
    (suite / "test_fake.py").write_text(fakes.SUITE)
    return SimpleNamespace(root=tmp_path, assignment=SimpleNamespace(
        name="toyfake", source_notebook=tmp_path / "solutions/toyfake/toyfake.ipynb",
        release_notebook=tmp_path / "course/toyfake/toyfake.ipynb", suite_dir=suite))


def hand_in(course, student: str, directive: str, answer_why: str | None = None) -> Path:
    """submitted/<student>/toyfake/toyfake.ipynb: the real release plus the fake grader's directive."""
    nb = nbformat.read(course.assignment.release_notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"# FAKE {directive}"))
    if answer_why is not None:
        (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "why"]
        cell.source = answer_why
    path = course.root / "submitted" / student / "toyfake" / "toyfake.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    (path.parent / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
    return path


def export(root: Path) -> dict[str, dict]:
    """`nbgrader export` run in the course root -> student id -> row of its grades.csv."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "export"], cwd=root, env=release._env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(root / "grades.csv", newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def test_batch_scores_reach_nbgrader_export(course, tmp_path, monkeypatch):
    fakes.install(tmp_path, monkeypatch)
    hand_in(course, "ann", "pass=test_add_small,test_mul", answer_why="Because a + b = b + a for integers.")
    hand_in(course, "ben", "pass=test_add_small,test_add_large")
    hand_in(course, "cal", "crash")
    report = batch.grade_directory(course.assignment, course.root / "submitted", out=tmp_path / "grades",
                                   course_dir=course.root, progress=False, placeholder_tests=fakes.placeholder)
    assert not report.gradebook_errors

    rows = export(course.root)
    # The oracle: the fake grader's points per test; hand-graded "why" counts 0 until a human grades it.
    assert float(rows["ann"]["raw_score"]) == fakes.expected_score({"test_add_small", "test_mul"}) == 3
    assert float(rows["ben"]["raw_score"]) == 2 and float(rows["cal"]["raw_score"]) == 0
    assert {float(r["max_score"]) for r in rows.values()} == {5.0}      # 2 + 2 autograded + 1 by hand
    assert rows["ann"]["timestamp"].startswith("2026-11-20 10:00:00")

    with nbg.open_gradebook(course.root) as gb:
        grade = lambda cell, s: gb.find_grade(cell, "toyfake", "toyfake", s)  # noqa: E731
        assert (grade("test_add", "ann").auto_score, grade("test_mul", "ann").auto_score) == (1.0, 2.0)
        assert (grade("test_add", "ben").auto_score, grade("test_mul", "ben").auto_score) == (2.0, 0.0)
        assert not grade("test_add", "ann").needs_manual_grade
        # A written answer waits for formgrader; an untouched one is 0 with "No response."
        assert grade("why", "ann").auto_score is None and grade("why", "ann").needs_manual_grade
        assert grade("why", "ben").auto_score == 0 and not grade("why", "ben").needs_manual_grade
        assert gb.find_comment("why", "toyfake", "toyfake", "ben").auto_comment == "No response."
    for s in ("ann", "ben"):      # formgrader opens these
        executed = course.root / "autograded" / s / "toyfake" / "toyfake.ipynb"
        assert nbformat.read(executed, as_version=4).metadata["fake_executed"] is True
        assert (executed.parent / "timestamp.txt").is_file()


def test_regrading_updates_and_keeps_manual_grades(tmp_path):
    """A fresh gradebook (no generate_assignment): cells come from the release; a regrade
    overwrites auto scores and leaves a grader's manual score alone."""
    rel = fakes.release_notebook()
    result = {"assignment": "toyfake", "score": 3.0, "max_score": 3.0, "errors": [],
              "tests": [{"name": n, "cell": c, "points": p, "max_points": p, "passed": True, "message": ""}
                        for n, c, p in fakes.TESTS if n != "test_add_large"]}
    with nbg.open_gradebook(tmp_path) as gb:
        with pytest.raises(MissingEntry):
            gb.find_assignment("toyfake")
        nbg.record(gb, "toyfake", "ann", result, release_nb=rel, notebook_id="toyfake", answered_nb=rel)
        sub = gb.find_submission("toyfake", "ann")
        assert (sub.score, sub.max_score) == (3.0, 5.0)
        assert {c.name for c in gb.find_notebook("toyfake", "toyfake").grade_cells} == {"test_add", "test_mul", "why"}

        gb.find_grade("test_mul", "toyfake", "toyfake", "ann").manual_score = 1.5     # formgrader
        gb.db.commit()
        result["tests"][0].update(points=0.0, passed=False, message="wrong")         # add_small now fails
        result["score"] = 2.0
        written = nbg.record(gb, "toyfake", "ann", result, release_nb=rel, notebook_id="toyfake", answered_nb=rel)
        assert written == {"test_add": 0.0, "test_mul": 2.0, "why": 0.0}
        mul = gb.find_grade("test_mul", "toyfake", "toyfake", "ann")
        assert (mul.auto_score, mul.manual_score, mul.needs_manual_grade) == (2.0, 1.5, True)
        assert len(gb.assignment_submissions("toyfake")) == 1
        assert gb.find_submission("toyfake", "ann").score == 1.5          # manual wins, as in nbgrader


def test_cell_scores_sum_per_cell():
    def t(name, points, max_points, cell=None):
        return {"name": name, "points": points, "max_points": max_points, "passed": points == max_points,
                "message": "", **({"cell": cell} if cell else {})}
    result = {"assignment": "a", "score": 5.5, "max_score": 8.0, "errors": [],
              "tests": [t("a", 1.0, 1.0, "c1"), t("b", 0.5, 1.0, "c1"), t("c", 0.0, 2.0, "c2"), t("d", 4.0, 4.0)]}
    assert nbg.cell_scores(result) == {"c1": 1.5, "c2": 0.0}
