"""The three places that name versions (course/pyproject.toml, pyproject.toml, environment.yml) agree,
every pin is exact, and the installed packages are the pinned ones."""
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+\-]+)\s*$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins(path: Path) -> dict[str, str]:
    deps = tomllib.loads(path.read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = PIN.match(dep)
        assert m, f"{path.name}: {dep!r} is not an exact pin (name==version)"
        pins[norm(m[1])] = m[2]
    return pins


def environment_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s*([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)\s*$", line)
        if m:
            pins[norm(m[1])] = m[2]
    return pins


def all_pyproject_pins() -> dict[str, str]:
    student = pyproject_pins(ROOT / "course" / "pyproject.toml")
    instructor = pyproject_pins(ROOT / "pyproject.toml")
    clash = {k for k in student.keys() & instructor.keys() if student[k] != instructor[k]}
    assert not clash, f"the two pyproject.toml files pin {clash} differently"
    return student | instructor


def test_environment_yml_names_the_same_versions_as_pyproject():
    assert environment_pins() == all_pyproject_pins()


def test_torch_and_torchvision_are_pinned_to_the_wheels_on_disk():
    pins = all_pyproject_pins()
    assert pins["torch"] == "2.14.1"
    assert pins["torchvision"] == "0.29.1"
    assert pins["nbgrader"] == "0.9.6"
    assert pins["jupyterlab"].startswith("4.") and pins["notebook"].startswith("7.")


@pytest.mark.parametrize("name", sorted(all_pyproject_pins()))
def test_installed_version_is_the_pinned_one(name):
    assert version(name).split("+")[0] == all_pyproject_pins()[name]
