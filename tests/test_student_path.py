"""The student's path: every release opens with a Colab/Binder badge and an install cell
(autograder/colab.py, added at release time), the install cell does nothing where dlcourse is
installed and installs only dlcourse (without its torch) plus what is missing elsewhere, and
nbgrader's own Validate finds nothing wrong with a blank release or with the reference answers.

Validate runs without executing (metadata, cell types, checksums of locked cells) on every
assignment, blank and answered; it executes the answered notebook, at the tiny run size, for
01_convolution only, to keep the test command's time.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.preprocessors import CheckCellMetadata, ClearOutput
from nbgrader.validator import Validator
from traitlets.config import Config

from autograder import colab, release
from bank import common

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = release.source_assignments(REPO)


def setup_cells(nb):
    return [c for c in nb.cells if colab.CELL_TAG in c.metadata.get("tags", [])]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_release_opens_with_the_badges_and_the_install_cell(name):
    nb = nbformat.read(REPO / "course" / name / f"{name}.ipynb", as_version=4)
    badges, install = nb.cells[:2]
    assert setup_cells(nb) == [badges, install], f"run `python -m autograder release {name}`"
    path = f"course/{name}/{name}.ipynb"
    assert badges.cell_type == "markdown" and install.cell_type == "code"
    assert f"https://colab.research.google.com/github/YOUR-ORG/dlcourse/blob/main/{path}" in badges.source
    assert f"https://mybinder.org/v2/gh/YOUR-ORG/dlcourse/main?urlpath=lab/tree/{path}" in badges.source
    assert "nbgrader" not in badges.metadata and "nbgrader" not in install.metadata     # never graded


def test_the_repository_is_one_setting():
    cells = colab.setup_cells("https://github.com/someone/dl-course.git", "v2", "04_alexnet_vgg", "04_alexnet_vgg")
    assert "https://colab.research.google.com/github/someone/dl-course/blob/v2/course/04_alexnet_vgg/" \
           "04_alexnet_vgg.ipynb" in cells[0].source
    assert "'dlcourse @ git+https://github.com/someone/dl-course.git@v2#subdirectory=course'" in cells[1].source
    with pytest.raises(ValueError, match="GitHub URL"):
        colab.setup_cells("dlcourse", "main", "01_convolution", "01_convolution")
    config = release.nbgrader_config(REPO)
    assert config.ColabCells.repository == colab.PLACEHOLDER        # documented placeholder (README)


def run_install_cell(monkeypatch, missing=()):
    """Execute the install cell of 01's release here; returns the commands it would have run.

    `missing`: modules find_spec must not find (as on a fresh Colab)."""
    nb = nbformat.read(REPO / "course" / "01_convolution" / "01_convolution.ipynb", as_version=4)
    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing
                        else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(list(cmd)))
    exec(compile(setup_cells(nb)[1].source, "install-cell", "exec"), {})
    return calls


def test_the_install_cell_does_nothing_where_dlcourse_is_installed(monkeypatch, capsys):
    assert run_install_cell(monkeypatch) == []
    assert capsys.readouterr().out == ""


def test_on_colab_it_installs_dlcourse_without_torch_and_only_what_is_missing(monkeypatch):
    calls = run_install_cell(monkeypatch, missing={"dlcourse", "skimage", "tqdm"})
    assert calls == [
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         "dlcourse @ git+https://github.com/YOUR-ORG/dlcourse.git@main#subdirectory=course"],
        [sys.executable, "-m", "pip", "install", "-q", "tqdm", "scikit-image"],
    ]


def test_binder_uses_environment_yml_with_the_pinned_torch():
    import yaml

    assert (REPO / "environment.yml").is_file() and not (REPO / "binder").exists()   # Binder reads the root
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "torch==2.14.1" in pip and "torchvision==0.29.1" in pip
    assert (REPO / "postBuild").read_text().splitlines()[-1].startswith("pip install --no-deps -e ./course")


def validator(execute: bool) -> Validator:
    """nbgrader's Validator as `nbgrader validate` builds it; without execute, its preprocessors minus Execute
    (preprocessors is not a configurable option, so it is set on the instance)."""
    v = Validator(config=Config())
    if not execute:
        v.preprocessors = [CheckCellMetadata, ClearOutput]
    assert [p.__name__ for p in v.preprocessors][-1] == ("Execute" if execute else "ClearOutput")
    return v


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_nbgrader_validate_finds_nothing_wrong_blank_or_answered(name, tmp_path):
    blank = REPO / "course" / name / f"{name}.ipynb"
    written = sum(1 for c in nbformat.read(blank, as_version=4).cells
                  if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution"))
    result = validator(execute=False).validate(str(blank))
    # The one thing Validate says of a blank release: the written answers are still to be given. No locked
    # cell changed, no cell type changed, no grade cell failed.
    assert set(result) <= {"failed"}, result
    assert [f["error"] for f in result.get("failed", [])] == ["You did not provide a response."] * written
    answered = tmp_path / f"{name}.ipynb"
    nbformat.write(common.submission(name), answered)
    assert validator(execute=False).validate(str(answered)) == {}


def test_nbgrader_validate_passes_the_reference_answers_of_01_when_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_RUN_SIZE", "tiny")
    monkeypatch.setenv("DLCOURSE_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    answered = tmp_path / "01_convolution.ipynb"
    nbformat.write(common.submission("01_convolution"), answered)
    assert validator(execute=True).validate(str(answered)) == {}
