"""nbgrader's own commands work from the course root with nbgrader_config.py alone.

generate_assignment -> (a student's submission) -> autograde -> generate_feedback -> export, on
01_convolution, in a temporary copy of the course root (never the repository's gradebook.db).
Here nbgrader grades with the notebook's visible tests (its own mechanism, in the student's kernel);
our grader (python -m autograder grade) is tested elsewhere.
"""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bank.common import solution_answers, submission

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "01_convolution"


def nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` by name when it creates a gradebook: this venv's bin/ must be on PATH.
    # Run size "tiny" for the kernels nbgrader starts: the visible tests are the same at every size,
    # and the students' default size would train section 9's network twice (once per student).
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
               DLCOURSE_RUN_SIZE="tiny")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_generate_autograde_feedback_export(tmp_path):
    root = tmp_path / "course-root"
    root.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)

    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    release = root / "course" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert release.read_text() == (REPO / "course" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()

    # alice hands in the reference answers; bob the same, but his conv_params also warns on stderr
    # (as torch and numpy often do), which nbgrader would punish with 0 points without IgnorePattern.
    noisy = solution_answers(ASSIGNMENT)["conv_params"] + (
        "\n\nimport warnings\n_conv_params = conv_params\n"
        "def conv_params(*args, **kwargs):\n"
        "    warnings.warn('this is only a warning', UserWarning)\n"
        "    return _conv_params(*args, **kwargs)\n")
    for student, nb in [("alice", submission(ASSIGNMENT)), ("bob", submission(ASSIGNMENT, conv_params=noisy))]:
        student_dir = root / "submitted" / student / ASSIGNMENT
        student_dir.mkdir(parents=True)
        nbformat.write(nb, student_dir / f"{ASSIGNMENT}.ipynb")

    nbgrader(root, "autograde", ASSIGNMENT, "--force")
    nbgrader(root, "generate_feedback", ASSIGNMENT, "--force")
    assert (root / "feedback" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.html").is_file()

    nbgrader(root, "export")
    with open(root / "grades.csv") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    row = rows["alice"]
    assert rows["bob"]["raw_score"] == row["raw_score"], "a warning on stderr cost bob points"
    # Every visible test cell passes for the reference answers, so the autograded part is full; the
    # written answers (answer cells that also carry points) wait for formgrader and count 0 so far.
    source = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    meta = [c.metadata.get("nbgrader", {}) for c in source.cells]
    manual = sum(m.get("points", 0) for m in meta if m.get("grade") and m.get("solution"))
    auto = sum(m.get("points", 0) for m in meta if m.get("grade") and not m.get("solution"))
    assert manual > 0 and auto > 0
    assert float(row["max_score"]) == pytest.approx(manual + auto)
    assert float(row["raw_score"]) == pytest.approx(auto)
