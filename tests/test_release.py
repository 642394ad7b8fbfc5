"""course/<a>/ is exactly what nbgrader makes from solutions/<a>/, and nothing secret reaches it.

Every assignment is regenerated into a temporary course root (never the repository) with the
repository's nbgrader_config.py and compared with the committed release, notebook by notebook
(parsed: every cell, its metadata and outputs, and the notebook's metadata). Then the release is
searched for every non-trivial line of the solutions, hidden tests, mark schemes, model answers
and hidden pytest suite (autograder/release.py `leaks`). The toy tests below show that the leak
search finds each kind of leak.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

import autograder_fakes as fakes
from autograder import release

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = release.source_assignments(REPO)
IGNORED = ("__pycache__", ".ipynb_checkpoints")


def release_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part in IGNORED for part in p.relative_to(folder).parts)}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    return tmp_path_factory.mktemp("release")


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_is_what_nbgrader_makes(name, regenerated):
    committed = REPO / "course" / name
    assert committed.is_dir(), f"course/{name}/ is missing: run `python -m autograder release {name}`"
    fresh = release.generate(name, REPO, into=regenerated)
    want, have = release_files(fresh), release_files(committed)
    assert sorted(have) == sorted(want), f"course/{name}/ has other files than nbgrader makes"
    for rel, path in want.items():
        if path.suffix == ".ipynb":
            new, old = nbformat.read(path, as_version=4), nbformat.read(have[rel], as_version=4)
            assert old.metadata == new.metadata, f"{rel}: notebook metadata differs from a fresh release"
            assert len(old.cells) == len(new.cells), \
                f"{rel}: {len(old.cells)} cells, a fresh release has {len(new.cells)}"
            for i, (a, b) in enumerate(zip(old.cells, new.cells)):
                assert a == b, (f"course/{name}/{rel} cell {i} differs from a fresh release; "
                                f"run `python -m autograder release {name}`")
        else:
            assert have[rel].read_bytes() == path.read_bytes(), f"{rel} differs from a fresh release"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_release_leaks_no_solution_or_hidden_test(name):
    if not (REPO / "course" / name).is_dir():
        pytest.fail(f"course/{name}/ is missing")
    assert release.leaks(name, REPO) == []


# ---------------------------------------------------------------------------------------------
# The leak search itself, on a toy assignment released by nbgrader in a temporary repository
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    repo = tmp_path_factory.mktemp("toyrepo")
    shutil.copy(REPO / "nbgrader_config.py", repo / "nbgrader_config.py")
    (repo / "solutions" / "toyfake").mkdir(parents=True)
    nbformat.write(fakes.source_notebook(), repo / "solutions" / "toyfake" / "toyfake.ipynb")
    (repo / "autograder" / "suites" / "toyfake").mkdir(parents=True)
    (repo / "autograder" / "suites" / "toyfake" / "test_fake.py").write_text(fakes.SUITE)
    release.generate("toyfake", repo=repo)
    return repo


def tampered(toy: Path, tmp_path: Path, text: str) -> Path:
    """A copy of the toy's release with `text` appended to its first Markdown cell."""
    dest = tmp_path / "release"
    shutil.copytree(toy / "course" / "toyfake", dest)
    path = dest / "toyfake.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n" + text
    nbformat.write(nb, path)
    return dest


def test_clean_toy_release_has_no_leaks(toy):
    nb = nbformat.read(toy / "course" / "toyfake" / "toyfake.ipynb", as_version=4)
    answer = next(c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))
    assert "raise NotImplementedError()" in answer.source                 # nbgrader did its job
    assert [c.id for c in nb.cells[:2]] == ["dlcourse-setup-badges", "dlcourse-setup-install"]   # autograder/colab.py
    assert release.leaks("toyfake", toy) == []


@pytest.mark.parametrize("text, kind", [
    ("    secret_sum_of_both = a + b", "solution"),
    ("assert add(40, 2) == 42, 'hidden addition check'", "hidden"),
    ("Because the model answer says integers form an abelian group.", "model answer"),
    ("expected_hidden_value = 1234567 + 7654321", "hidden suite"),
    ("### BEGIN SOLUTION", "marker"),
])
def test_leak_search_finds_each_kind(toy, tmp_path, text, kind):
    found = release.leaks("toyfake", toy, release_dir=tampered(toy, tmp_path, text))
    assert found and kind in found[0], found


def test_public_lines_are_not_leaks(toy, tmp_path):
    """A line the source notebook shows anyway (the visible test) is not secret."""
    assert release.leaks("toyfake", toy, release_dir=tampered(toy, tmp_path, "assert add(1, 2) == 3")) == []
