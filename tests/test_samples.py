"""The demo's and bench's sample submissions come from the package (autograder/samples.py), not tests/.

Oracles: the bank framework (tests/bank/common.py) builds the reference submission independently;
a wheel built from the repository is unpacked and run without the repository on sys.path.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder import samples
from autograder.assignments import list_assignments

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(samples.SAMPLES_DIR.glob("*.json"))


def test_samples_are_shipped():
    assert SHIPPED, "no autograder/samples/*.json"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_samples_fit_the_release(path):
    """Each shipped answer belongs to an answer cell of the current release, and the note says why."""
    data = json.loads(path.read_text())
    known = {a.name: a for a in list_assignments()}
    assert data["assignment"] == path.stem in known
    cells = samples.answer_cells(samples.fill(known[path.stem].release_notebook, {}))
    assert set(data["samples"]) == set(samples.SHIPPED_KINDS)
    for kind, entry in data["samples"].items():
        assert entry["note"].strip(), kind
        assert entry["answers"] and set(entry["answers"]) <= set(cells), (kind, sorted(cells))


@pytest.mark.parametrize("assignment", [a for a in list_assignments() if samples.shipped(a.name)],
                         ids=lambda a: a.name)
def test_four_students_and_the_correct_one_is_the_reference(assignment):
    from bank import common
    built, why = samples.samples_for(assignment)
    assert why == "" and list(built) == ["correct", "mistakes", "blank", "cheat"]
    notebooks = {k: s.build() for k, s in built.items()}
    ref = common.submission(assignment.name)
    answers = {k: {g: c.source for g, c in samples.answer_cells(nb).items()} for k, nb in notebooks.items()}
    assert answers["correct"] == {g: c.source for g, c in samples.answer_cells(ref).items()}
    assert answers["blank"] == {g: c.source for g, c in samples.answer_cells(common.release(assignment.name)).items()}
    for kind in ("mistakes", "cheat"):
        assert answers[kind] != answers["correct"], kind


def test_demo_and_bench_do_not_import_the_tests():
    for module in ("demo", "bench", "samples"):
        text = (REPO / "autograder" / f"{module}.py").read_text()
        assert "sys.path.insert" not in text and "from bank" not in text and "import bank" not in text, module


@pytest.mark.slow
def test_a_wheel_of_the_repository_ships_what_the_demo_needs(tmp_path):
    """`pip wheel . --no-deps`, unpacked and imported from a folder outside the repository: its demo
    builds every assignment's sample submissions from package data and a course root, without tests/."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), "-q"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    assert {"autograder/schema/grade-result.schema.json", "autograder/samples/01_convolution.json",
            "autograder/exporters/gradescope.py", "autograder/suites/01_convolution/test_conv.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "solutions/"))]
    code = (
        "import sys; from pathlib import Path\n"
        f"site = {str(tmp_path / 'site')!r}\n"
        "import autograder, autograder.demo, autograder.bench\n"
        "assert autograder.__file__.startswith(site), autograder.__file__\n"
        "from autograder.assignments import list_assignments\n"
        "from autograder.samples import samples_for\n"
        f"root = Path({str(REPO)!r})\n"
        "count = 0\n"
        "for a in list_assignments(root):\n"
        "    built, why = samples_for(a)\n"
        "    count += sum(1 for s in built.values() if s.build().cells)\n"
        "assert 'bank' not in sys.modules and not [p for p in sys.path if p.endswith('tests')]\n"
        "print('samples', count)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) >= 4 * len(list(samples.SAMPLES_DIR.glob("*.json")))
    proc = subprocess.run([sys.executable, "-m", "autograder", "demo", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "--root" in proc.stdout, proc.stderr[-2000:]
