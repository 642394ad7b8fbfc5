"""The Gradescope autograder zip (autograder/gradescope.py), run against a local folder laid out as /autograder.

The toy assignment (tests/fixtures/toy) is the oracle: its suite gives 7 points to the reference
answers and 5 when `add` subtracts (test_cli.py's EXPECTED). Gradescope's results format is checked
with autograder/schema/gradescope-results.schema.json.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest

from autograder import gradescope

REPO = Path(__file__).resolve().parents[1]
GS_SCHEMA = json.loads((REPO / "autograder" / "schema" / "gradescope-results.schema.json").read_text())


@pytest.fixture(scope="module")
def toy_zip(tmp_path_factory):
    from test_cli import make_root
    root = make_root(tmp_path_factory.mktemp("course"))
    (root / "solutions" / "toy").mkdir(parents=True)
    (root / "solutions" / "toy" / "toy.ipynb").write_text("SOLUTION-NOTEBOOK-NEVER-SHIPPED")
    out = root / "toy-gradescope.zip"
    proc = subprocess.run([sys.executable, "-m", "autograder", "gradescope", "toy", "--root", str(root),
                           "--out", str(out), "--cell-timeout", "50"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, out


def autograder_dir(tmp_path: Path, zip_path: Path) -> Path:
    """A folder laid out as Gradescope's /autograder: source/ (the zip), run_autograder, submission/, results/."""
    ag = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(ag / "source")
        for info in zf.infolist():                    # zipfile does not restore permissions
            os.chmod(ag / "source" / info.filename, (info.external_attr >> 16) & 0o777)
    shutil.copy2(ag / "source" / "run_autograder", ag / "run_autograder")
    (ag / "submission").mkdir()
    (ag / "results").mkdir()
    return ag


def run_autograder(ag: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, AUTOGRADER_ROOT=str(ag), AUTOGRADER_PYTHON=sys.executable)
    return subprocess.run([str(ag / "run_autograder")], env=env, capture_output=True, text=True, timeout=900)


def test_zip_holds_the_grader_this_suite_and_the_release_only(toy_zip):
    _, out = toy_zip
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
        config = json.loads(zf.read("assignment.json"))
        pins = zf.read("requirements.txt").decode().split()
        text = b"".join(zf.read(n) for n in names).decode("utf-8", "replace")
    assert {"setup.sh", "run_autograder", "requirements.txt", "assignment.json", "pyproject.toml",
            "course/toy/toy.ipynb", "autograder/suites/toy/test_toy.py", "autograder/runner.py",
            "course/dlcourse/__init__.py", "course/pyproject.toml"} <= set(names)
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    suites = {n.split("/")[2] for n in names if n.startswith("autograder/suites/")}
    assert suites == {"toy"}                                        # no other assignment's hidden suite
    assert not [n for n in names if n.startswith(("solutions/", "tests/")) or "__pycache__" in n]
    assert "SOLUTION-NOTEBOOK-NEVER-SHIPPED" not in text
    assert config["assignment"] == "toy" and config["notebook"] == "toy.ipynb"
    assert config["settings"]["cell_timeout"] == 50.0                # the command line's settings travel
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins and "nbgrader==0.9.6" in pins


def test_no_notebook_scores_zero_with_the_reason(toy_zip, tmp_path):
    ag = autograder_dir(tmp_path, toy_zip[1])
    (ag / "submission" / "notes.txt").write_text("forgot the notebook")
    proc = run_autograder(ag)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((ag / "results" / "results.json").read_text())
    jsonschema.validate(data, GS_SCHEMA)
    assert data["score"] == 0 and "upload toy.ipynb" in data["output"]
    assert sum(t["max_score"] for t in data["tests"]) == 7.0


@pytest.mark.slow
def test_run_autograder_grades_a_submission_in_gradescopes_format(toy_zip, tmp_path):
    from test_cli import CANARY, suite_code_lines, toy_kit
    ag = autograder_dir(tmp_path, toy_zip[1])
    sub = ag / "submission" / "some folder"
    sub.mkdir()
    nbformat.write(toy_kit().submission(add="def add(a, b):\n    return a - b"), sub / "toy.ipynb")
    proc = run_autograder(ag)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((ag / "results" / "results.json").read_text())
    jsonschema.validate(data, GS_SCHEMA)
    assert data["score"] == 5.0 and data["stdout_visibility"] == "hidden"
    visible = [t for t in data["tests"] if t["visibility"] == "visible"]
    assert sum(t["max_score"] for t in visible) == 7.0
    assert {t["name"]: t["status"] for t in visible}["Add numbers"] == "failed"
    assert {t["status"] for t in visible if not t["name"].startswith("Add")} == {"passed"}
    text = json.dumps(data)
    assert CANARY not in text and not [line for line in suite_code_lines() if line in text]
    assert "toy: 5/7" in proc.stdout                                   # the instructors' log on stdout


def test_find_notebook_prefers_the_release_name_and_ignores_links(tmp_path):
    sub = tmp_path / "submission"
    (sub / "a").mkdir(parents=True)
    (sub / "a" / "scratch.ipynb").write_text("{}")
    assert gradescope.find_notebook(sub, "toy.ipynb") == (sub / "a" / "scratch.ipynb", "")
    (sub / "toy.ipynb").write_text("{}")
    assert gradescope.find_notebook(sub, "toy.ipynb") == (sub / "toy.ipynb", "")
    (sub / "toy.ipynb").unlink()
    (sub / "other.ipynb").write_text("{}")
    path, why = gradescope.find_notebook(sub, "toy.ipynb")
    assert path is None and "several notebooks" in why
    (sub / "other.ipynb").unlink()
    (sub / "a" / "scratch.ipynb").unlink()
    (sub / "toy.ipynb").symlink_to("/etc/hostname")
    path, why = gradescope.find_notebook(sub, "toy.ipynb")
    assert path is None and "no notebook" in why
