"""The student bundle: course/ as students need it, and nothing of the instructor's side."""
from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

import pytest

from autograder import bundle, cli

REPO = Path(__file__).resolve().parents[1]


def released(course: Path) -> list[str]:
    """Assignment folders of course/: those holding <a>/<a>.ipynb."""
    return sorted(p.name for p in course.iterdir() if (p / f"{p.name}.ipynb").is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "dlcourse-student.zip"
    assert cli.main(["bundle", "--out", str(out)]) == 0
    return out


def test_bundle_holds_the_course(built):
    names = bundle.members(built)
    assert all(n.startswith("course/") for n in names), [n for n in names if not n.startswith("course/")]
    for needed in ("course/pyproject.toml", "course/README.md", "course/dlcourse/__init__.py"):
        assert needed in names
    library = {p.relative_to(REPO).as_posix() for p in (REPO / "course" / "dlcourse").glob("*.py")}
    assert library <= set(names), sorted(library - set(names))
    with zipfile.ZipFile(built) as zf:
        for a in released(REPO / "course"):
            member = f"course/{a}/{a}.ipynb"
            assert member in names
            assert zf.read(member) == (REPO / member).read_bytes()      # the release, byte for byte


def test_bundle_leaves_out_instructor_files_caches_and_data(built):
    for name in bundle.members(built):
        parts = name.split("/")
        assert not set(parts) & {"solutions", "autograder", "__pycache__", ".ipynb_checkpoints", "data",
                                 "runs", "checkpoints", "tests"}, name
        assert not name.endswith((".pyc", ".pt", ".ckpt", ".db")) and ".egg-info" not in name, name


def test_bundle_installs_only_dlcourse(built, tmp_path):
    """A dry look at what `pip install` of the bundle would install: the project dlcourse and its
    one package, which the bundle contains."""
    with zipfile.ZipFile(built) as zf:
        meta = tomllib.loads(zf.read("course/pyproject.toml").decode())
        names = zf.namelist()
    assert meta["project"]["name"] == "dlcourse"
    packages = meta["tool"]["setuptools"]["packages"]
    assert packages == ["dlcourse"]
    assert f"course/{packages[0]}/__init__.py" in names
    deps = [d.split("==")[0].lower() for d in meta["project"]["dependencies"]]
    assert not {"nbgrader", "autograder", "dlcourse-instructor", "pytest"} & set(deps)


def test_filter_on_a_made_up_course(tmp_path):
    """Oracle: a course folder with known junk; exactly the wanted files come out, reproducibly."""
    course = tmp_path / "course"
    wanted = ["pyproject.toml", "README.md", "dlcourse/__init__.py", "dlcourse/data.py",
              "01_x/01_x.ipynb", "01_x/images/kernel.png"]
    junk = ["dlcourse/__pycache__/data.cpython-311.pyc", "dlcourse.egg-info/PKG-INFO", "data/MNIST/raw/t10k",
            "01_x/.ipynb_checkpoints/01_x-checkpoint.ipynb", "01_x/runs/events.out.tfevents.1",
            "01_x/checkpoints/lenet.pt", "01_x/model.pt", "gradebook.db"]
    for rel in wanted + junk:
        (course / rel).parent.mkdir(parents=True, exist_ok=True)
        (course / rel).write_text(rel)
    a = bundle.build(course, tmp_path / "a.zip")
    assert sorted(bundle.members(a)) == sorted(f"course/{w}" for w in wanted)
    b = bundle.build(course, tmp_path / "b.zip")
    assert a.read_bytes() == b.read_bytes()                  # same content, same bytes
    (course / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="README.md"):
        bundle.build(course, tmp_path / "c.zip")
