"""Write our grades into nbgrader's gradebook, so that formgrader and `nbgrader export` show them.

nbgrader keeps one SQLite database per course (gradebook.db at the course root, see
nbgrader_config.py) with, per assignment, its notebooks and their grade cells (written by
`nbgrader generate_assignment`), and per student a submission with one Grade row per grade cell.
Our grader scores hidden tests instead of executing nbgrader's test cells, and each hidden test
names the autograded test cell it scores for (`"cell"` in the result). So:

    auto_score(test cell) = sum of the points of the hidden tests mapped to that cell

Answer cells that are graded by hand (nbgrader `solution` and `grade`) stay for formgrader,
except that an answer left exactly as released gets 0 and "No response." (what nbgrader's own
autograde does). The executed notebook is copied to autograded/<student>/<assignment>/ where
formgrader looks for it.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils
from nbgrader.api import Gradebook, Grade, MissingEntry
from sqlalchemy.exc import SAWarning

from autograder.sanitize import clean_notebook


def db_url(course_dir: str | Path) -> str:
    """The gradebook of an nbgrader course folder (same place as nbgrader_config.py puts it)."""
    return f"sqlite:///{Path(course_dir).resolve() / 'gradebook.db'}"


def open_gradebook(course_dir: str | Path) -> Gradebook:
    """Open (or create) <course_dir>/gradebook.db for course "dlcourse", as nbgrader_config.py does.

    Creating a new database makes nbgrader run the `alembic` command; it lives next to this
    Python, which is not on PATH when the venv is not activated, so its folder is put first.
    """
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path
    Path(course_dir).mkdir(parents=True, exist_ok=True)
    return Gradebook(db_url(course_dir), course_id="dlcourse")


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_autograded_test(cell) -> bool:
    """An nbgrader test cell that our hidden suite scores: a code cell with grade and no solution."""
    meta = _meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.cell_type == "code"


def ensure_assignment(gb: Gradebook, assignment: str, notebook_id: str, release_nb) -> None:
    """Make sure `assignment`, its notebook and every nbgrader cell of `release_nb` are in `gb`.

    After `nbgrader generate_assignment` they already are and nothing changes. Otherwise they are
    created from the release notebook's nbgrader metadata, the way generate_assignment's SaveCells
    records them (points, cell type, locked flag, source and checksum as released).
    """
    gb.update_or_create_assignment(assignment)
    try:
        gb.find_notebook(notebook_id, assignment)
    except MissingEntry:
        kernelspec = json.dumps(release_nb.metadata.get("kernelspec", {}))
        gb.add_notebook(notebook_id, assignment, kernelspec=kernelspec)
    for cell in release_nb.cells:
        meta = _meta(cell)
        gid = meta.get("grade_id")
        if not gid:
            continue
        if nbutils.is_grade(cell) and not nbutils.is_task(cell):
            gb.update_or_create_grade_cell(gid, notebook_id, assignment,
                                           max_score=float(meta["points"]), cell_type=cell.cell_type)
        if nbutils.is_solution(cell):
            gb.update_or_create_solution_cell(gid, notebook_id, assignment)
        if nbutils.is_task(cell):
            gb.update_or_create_task_cell(gid, notebook_id, assignment,
                                          max_score=float(meta["points"]), cell_type=cell.cell_type)
        if nbutils.is_grade(cell) or nbutils.is_solution(cell) or nbutils.is_locked(cell) \
                or nbutils.is_task(cell):
            gb.update_or_create_source_cell(gid, notebook_id, assignment, cell_type=cell.cell_type,
                                            locked=nbutils.is_locked(cell), source=cell.source,
                                            checksum=meta.get("checksum"))


def cell_scores(result) -> dict[str, float]:
    """grade_id -> points the result's hidden tests earned for that autograded test cell.

    result: a GradeResult (autograder/result.py) or its JSON dict (validated)."""
    from autograder.result import GradeResult
    if not isinstance(result, GradeResult):
        result = GradeResult.from_dict(result)
    scores: dict[str, float] = {}
    for test in result.tests:
        if test.cell:
            scores[test.cell] = scores.get(test.cell, 0.0) + float(test.points)
    return scores


def _grade(gb: Gradebook, cell_name: str, notebook_id: str, assignment: str, student: str):
    """The Grade row of one cell, created when the cell was added after the submission was."""
    try:
        return gb.find_grade(cell_name, notebook_id, assignment, student)
    except MissingEntry:
        submitted = gb.find_submission_notebook(notebook_id, assignment, student)
        cell = gb.find_graded_cell(cell_name, notebook_id, assignment)
        grade = Grade(cell_id=cell.id, notebook=submitted)
        gb.db.add(grade)
        gb.db.commit()
        return grade


def record(gb: Gradebook, assignment: str, student: str, result: dict, *, release_nb,
           notebook_id: str, answered_nb=None, timestamp: str | None = None,
           ensure: bool = True) -> dict[str, float | None]:
    """Store one student's result in the gradebook.

    Inputs:
    - gb: an open nbgrader Gradebook; assignment: its name; student: the student id.
    - result: the grade result (a GradeResult or its JSON dict; tests carry "cell").
    - release_nb: the release notebook; notebook_id: nbgrader's name for it (the file's stem).
    - answered_nb: the notebook as graded (executed or submitted), to see which hand-graded answers
      were left blank; None treats every hand-graded answer as given.
    - timestamp: the submission time (nbgrader's timestamp.txt), if known.
    - ensure: first make sure the assignment's cells are in the gradebook (`ensure_assignment`;
      a batch does that once).
    Returns: grade_id -> auto_score written (None: left for a human grader).
    """
    if ensure:
        ensure_assignment(gb, assignment, notebook_id, release_nb)
    gb.update_or_create_student(student)
    kwargs = {"timestamp": timestamp} if timestamp else {}
    with warnings.catch_warnings():
        # nbgrader's add_submission builds its rows in a way SQLAlchemy warns about (harmless;
        # `nbgrader autograde` triggers the same warnings).
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_submission(assignment, student, **kwargs)

    earned = cell_scores(result)
    answers = {}
    if answered_nb is not None:
        answers = {_meta(c)["grade_id"]: c for c in answered_nb.cells if _meta(c).get("grade_id")}
    written: dict[str, float | None] = {}
    for cell in release_nb.cells:
        meta = _meta(cell)
        gid = meta.get("grade_id")
        if not gid:
            continue
        if nbutils.is_solution(cell):
            _comment_blank(gb, gid, notebook_id, assignment, student, cell, answers.get(gid))
        if not nbutils.is_grade(cell) or nbutils.is_task(cell):
            continue
        grade = _grade(gb, gid, notebook_id, assignment, student)
        if is_autograded_test(cell):
            # No hidden test for this cell (tests/test_suite_points.py forbids it): a human decides.
            grade.auto_score = earned.get(gid) if gid in earned else None
        else:  # a hand-graded answer: 0 when left as released, otherwise for formgrader
            grade.auto_score = 0.0 if _unchanged(cell, answers.get(gid)) else None
        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        written[gid] = grade.auto_score
    gb.db.commit()
    return written


def _unchanged(release_cell, answered_cell) -> bool:
    """True when the student's answer cell is exactly the released stub (or is missing).

    nbgrader's way: the cell's checksum equals the one recorded at release. A release made
    without checksums (a hand-written one) is compared by source instead.
    """
    if answered_cell is None:
        return True
    checksum = _meta(release_cell).get("checksum")
    if checksum is None:
        return answered_cell.source.strip() == release_cell.source.strip()
    return nbutils.compute_checksum(answered_cell) == checksum


def _comment_blank(gb, gid, notebook_id, assignment, student, release_cell, answered_cell) -> None:
    try:
        comment = gb.find_comment(gid, notebook_id, assignment, student)
    except MissingEntry:
        return
    comment.auto_comment = "No response." if _unchanged(release_cell, answered_cell) else None


def copy_autograded(notebook: str | Path, course_dir: str | Path, student: str, assignment: str,
                    notebook_id: str, submission_dir: str | Path | None = None) -> Path:
    """Copy the graded notebook to <course>/autograded/<student>/<assignment>/<notebook_id>.ipynb.

    That is where formgrader opens a submission; nbgrader's timestamp.txt comes along when the
    submission folder has one. Returns the destination.
    """
    dest_dir = Path(course_dir) / "autograded" / student / assignment
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{notebook_id}.ipynb"
    tmp = dest.with_suffix(".ipynb.tmp")
    try:      # formgrader renders it for the instructor: nothing in it may run in the browser
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception:  # noqa: BLE001 - not a notebook (the grade says why): nothing to show
        dest.unlink(missing_ok=True)
        return dest
    nbformat.write(clean_notebook(nb), str(tmp))
    tmp.replace(dest)
    if submission_dir is not None and (Path(submission_dir) / "timestamp.txt").is_file():
        shutil.copyfile(Path(submission_dir) / "timestamp.txt", dest_dir / "timestamp.txt")
    return dest
