"""One settings object (autograder/settings.py): defaults, nbgrader_config.py's c.Autograder, the command line.

The oracle for precedence is the value written in each layer; the end-to-end test grades a toy
submission whose answer is right only when the kernel's environment says DLCOURSE_RUN_SIZE=tiny.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

from autograder.cli import build_parser
from autograder.sandbox import RUN_SIZES, Limits
from autograder.settings import Settings, SettingsError, from_args, read_config

REPO = Path(__file__).resolve().parents[1]


def course_config(tmp_path: Path, *lines: str) -> Path:
    """The repository's nbgrader_config.py with `lines` set before it derives nbgrader's settings."""
    text = (REPO / "nbgrader_config.py").read_text()
    marker = "from autograder.settings import Settings"
    assert marker in text
    text = text.replace(marker, "\n".join(lines) + "\n" + marker)
    path = tmp_path / "nbgrader_config.py"
    path.write_text(text)
    return path


def nbgrader_view(path: Path):
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def test_one_cell_timeout_for_nbgrader_and_the_grader():
    """nbgrader's Execute.timeout is the grader's per-cell timeout, not a second number."""
    config = nbgrader_view(REPO / "nbgrader_config.py")
    assert config.Execute.timeout == Settings.load(root=REPO).limits.cell_timeout == Limits().cell_timeout


def test_reading_the_settings_does_not_import_nbgrader_but_nbgrader_gets_its_preprocessors():
    """The grader reads c.Autograder before it starts its kernels; importing nbgrader for the
    config's preprocessor list cost 0.55 s of that start. nbgrader, loaded, still gets the list."""
    code = ("import sys; from autograder.settings import Settings; Settings.load(); "
            "print('nbgrader' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
    import nbgrader.converters  # noqa: F401 - as in any process that runs nbgrader
    from autograder.colab import ColabCells
    assert nbgrader_view(REPO / "nbgrader_config.py").GenerateAssignment.preprocessors[-1] is ColabCells


def test_config_file_sets_limits_and_nbgrader_follows(tmp_path):
    path = course_config(tmp_path, "c.Autograder.cell_timeout = 17", "c.Autograder.memory_mb = 1500",
                         "c.Autograder.run_size = 'tiny'", "c.Autograder.workers = 3")
    assert read_config(path) == {"cell_timeout": 17, "memory_mb": 1500, "run_size": "tiny", "workers": 3}
    settings = Settings.load(root=tmp_path)
    assert (settings.limits.cell_timeout, settings.limits.memory_mb, settings.limits.run_size,
            settings.workers) == (17.0, 1500, "tiny", 3)
    assert settings.limits.call_timeout == Limits().call_timeout            # untouched: the default
    assert nbgrader_view(path).Execute.timeout == 17


def test_command_line_overrides_the_config_file(tmp_path):
    course_config(tmp_path, "c.Autograder.cell_timeout = 17", "c.Autograder.memory_mb = 1500")
    args = build_parser().parse_args(["grade", "a", "x.ipynb", "--root", str(tmp_path), "--cell-timeout", "5",
                                      "--call-timeout", "4", "--gpu", "--run-size", "small", "--workers", "2",
                                      "--timeout", "99"])
    s = from_args(args)
    assert (s.limits.cell_timeout, s.limits.call_timeout, s.limits.memory_mb, s.limits.gpu, s.limits.run_size,
            s.workers, s.submission_timeout) == (5.0, 4.0, 1500, True, "small", 2, 99.0)


def test_batch_settings_travel_whole_as_json(tmp_path):
    """What a batch hands each grading subprocess (--settings) wins over that machine's config file."""
    course_config(tmp_path, "c.Autograder.cell_timeout = 17")
    sent = Settings().replace(cell_timeout=8, run_size="tiny", preload=["torch", "numpy"])
    args = build_parser().parse_args(["grade", "a", "x.ipynb", "--root", str(tmp_path), "--settings", sent.to_json()])
    assert from_args(args) == sent
    assert Settings.from_json(sent.to_json()) == sent


@pytest.mark.parametrize("values, says", [
    ({"cell_timout": 5}, "unknown setting(s) cell_timout"),
    ({"memory_mb": "lots"}, "memory_mb"),
    ({"gpu": 1}, "gpu"),
    ({"cell_timeout": -1}, "cell_timeout must be positive"),
    ({"run_size": "huge"}, "run_size"),
    ({"workers": 0}, "workers"),
])
def test_bad_settings_are_refused_by_name(values, says):
    with pytest.raises(SettingsError) as info:
        Settings().replace(values)
    assert says in str(info.value)


def test_a_typo_in_the_config_file_names_the_file(tmp_path):
    course_config(tmp_path, "c.Autograder.memroy_mb = 4096")
    with pytest.raises(SettingsError) as info:
        Settings.load(root=tmp_path)
    assert "nbgrader_config.py" in str(info.value) and "memroy_mb" in str(info.value)


def test_run_sizes_are_the_notebooks_run_sizes():
    from dlcourse.runsize import ENV_VAR, SIZES
    from autograder.sandbox import RUN_SIZE_ENV
    assert RUN_SIZES == SIZES and RUN_SIZE_ENV == ENV_VAR


@pytest.mark.slow
def test_run_size_reaches_the_students_kernel_through_a_batch(tmp_path):
    """End to end: `grade <dir> --run-size tiny` -> batch -> grading subprocess -> kernel environment."""
    from test_cli import TOY_RELEASE, autograder, toy_kit
    kit = toy_kit()
    root = tmp_path / "root"
    (root / "course" / "toy").mkdir(parents=True)
    shutil.copy(TOY_RELEASE, root / "course" / "toy" / "toy.ipynb")
    shutil.copytree(REPO / "tests" / "fixtures" / "toy" / "suite", root / "autograder" / "suites" / "toy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # add is right only in a kernel told to run tiny: the score shows what the kernel saw.
    nb = kit.submission(add="def add(a, b):\n    import os\n"
                            "    return a + b if os.environ.get('DLCOURSE_RUN_SIZE') == 'tiny' else a - b")
    subs = tmp_path / "subs"
    subs.mkdir()
    import nbformat
    nbformat.write(nb, subs / "sam.ipynb")
    out = tmp_path / "grades"
    proc = autograder("grade", "toy", subs, "--root", root, "--out", out, "--no-progress", "--run-size", "tiny",
                      "--workers", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tiny = json.loads((out / "sam.json").read_text())
    proc = autograder("grade", "toy", subs / "sam.ipynb", "--root", root, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    default = json.loads(proc.stdout)
    assert tiny["score"] == tiny["max_score"] == 7.0, tiny
    assert default["score"] == 5.0, default          # add's 2 points lost without DLCOURSE_RUN_SIZE
