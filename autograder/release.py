"""`python -m autograder release [assignment ...]`: make course/<a>/ from solutions/<a>/ with nbgrader.

The release is exactly what `nbgrader generate_assignment <a> --force` makes with the repository's
nbgrader_config.py (solutions replaced by the stub, hidden tests and mark schemes removed, cells
locked, outputs cleared, checksums recorded in the gradebook). We never edit course/<a>/ by hand.

After generating, the release is checked for leaks (`leaks`): no line of a solution region, of a
hidden-test region, of a mark scheme, of a model answer or of the hidden pytest suite may appear
in any file of course/<a>/, and no nbgrader marker may survive. A leak fails the command.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
MIN_LEN = 16          # shorter lines ("return Y", "X = X + 1") are too generic to call a leak

MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
           "BEGIN MARK SCHEME", "END MARK SCHEME")
_REGION = {
    "solution": (re.compile(r"^\s*### BEGIN SOLUTION\s*$"), re.compile(r"^\s*### END SOLUTION\s*$")),
    "hidden": (re.compile(r"^\s*### BEGIN HIDDEN TESTS\s*$"), re.compile(r"^\s*### END HIDDEN TESTS\s*$")),
    "mark scheme": (re.compile(r"^\s*=== BEGIN MARK SCHEME ===\s*$"), re.compile(r"^\s*=== END MARK SCHEME ===\s*$")),
}


def source_assignments(repo: str | Path = REPO) -> list[str]:
    """Assignments with a source notebook solutions/<a>/<a>.ipynb, sorted."""
    solutions = Path(repo) / "solutions"
    if not solutions.is_dir():
        return []
    return sorted(p.name for p in solutions.iterdir() if (p / f"{p.name}.ipynb").is_file())


def _env() -> dict:
    """nbgrader runs `alembic` from PATH when it creates a gradebook: put this venv's bin/ first."""
    bindir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))


def nbgrader_config(repo: str | Path = REPO, into: str | Path | None = None):
    """The repository's nbgrader_config.py as a traitlets Config, optionally aimed at another root.

    `into` gets its own gradebook.db, so a test's release never touches the repository's.
    """
    import nbgrader.converters  # noqa: F401 - the file configures nbgrader's converters only once it is loaded
    from traitlets.config.loader import PyFileConfigLoader
    config = PyFileConfigLoader("nbgrader_config.py", path=str(Path(repo).resolve())).load_config()
    if into is not None:
        root = Path(into).resolve()
        config.CourseDirectory.root = str(root)
        config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    return config


def generate(name: str, repo: str | Path = REPO, into: str | Path | None = None) -> Path:
    """Run nbgrader's generate_assignment (force, create) for one assignment. Returns course/<a>/.

    Inputs: name; repo: the repository (its nbgrader_config.py and solutions/ are used);
    into: another course root to release into (its own gradebook.db; solutions/<a>/ is copied
    there first) instead of the repository, e.g. a temporary folder in a test.
    Uses nbgrader's Python API (`NbGraderAPI.generate_assignment`, the same converter and
    configuration as the `nbgrader generate_assignment --force` command) in this process.
    Raises RuntimeError with nbgrader's log when nbgrader fails.
    """
    from nbgrader.apps import NbGraderAPI
    repo = Path(repo).resolve()
    root = Path(into).resolve() if into is not None else repo
    if into is not None:
        shutil.copytree(repo / "solutions" / name, root / "solutions" / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    os.environ["PATH"] = _env()["PATH"]            # a new gradebook.db runs `alembic`
    api = NbGraderAPI(config=nbgrader_config(repo, into))
    result = api.generate_assignment(name, force=True, create=True)
    dest = root / "course" / name
    if not result.get("success") or not (dest / f"{name}.ipynb").is_file():
        raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{result.get('log', '')}\n"
                           f"{result.get('error', '')}")
    return dest


# ---------------------------------------------------------------------------------------------
# Leak checks
# ---------------------------------------------------------------------------------------------
def split_regions(source: str) -> tuple[list[str], dict[str, list[str]]]:
    """(public lines, {"solution"|"hidden"|"mark scheme": secret lines}) of one cell's source."""
    public: list[str] = []
    secret: dict[str, list[str]] = {k: [] for k in _REGION}
    inside = None
    for line in source.splitlines():
        if inside is None:
            for kind, (begin, _) in _REGION.items():
                if begin.match(line):
                    inside = kind
                    break
            else:
                public.append(line)
        elif _REGION[inside][1].match(line):
            inside = None
        else:
            secret[inside].append(line)
    return public, secret


def notebook_secrets(nb) -> tuple[set[str], dict[str, set[str]]]:
    """(public lines, secret lines by kind) of an instructor's source notebook, all stripped.

    Secret: solution regions, hidden-test regions, mark schemes, and the whole text of Markdown
    answer cells (the model answer; nbgrader replaces such a cell with "YOUR ANSWER HERE").
    """
    public: set[str] = set()
    secret: dict[str, set[str]] = {k: set() for k in list(_REGION) + ["model answer"]}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        pub, sec = split_regions(cell.source)
        if cell.cell_type == "markdown" and meta.get("solution") and not any(sec.values()):
            secret["model answer"].update(line.strip() for line in pub)
            continue
        public.update(line.strip() for line in pub)
        for kind, lines in sec.items():
            secret[kind].update(line.strip() for line in lines)
    return public, secret


def suite_lines(suite_dir: str | Path) -> set[str]:
    """Every stripped line of the hidden suite's Python files."""
    lines: set[str] = set()
    for path in sorted(Path(suite_dir).rglob("*.py")) if Path(suite_dir).is_dir() else []:
        if "__pycache__" not in path.parts:
            lines.update(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return lines


def release_text(release_dir: str | Path) -> str:
    """Everything a student can read in a release folder, as one string.

    Notebooks: every cell's source, outputs and metadata; other files: their text.
    """
    parts = []
    for path in sorted(Path(release_dir).rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".ipynb":
            nb = nbformat.read(str(path), as_version=4)
            parts.append(repr(nb.metadata))
            for cell in nb.cells:
                parts.append(cell.source)
                parts.append(repr(cell.get("metadata", {})))
                parts.append(repr(cell.get("outputs", [])))
        else:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def leaks(name: str, repo: str | Path = REPO, release_dir: str | Path | None = None,
          suite_dir: str | Path | None = None) -> list[str]:
    """What of the solution or the hidden tests can be read in the release; [] when nothing.

    Candidates are non-trivial lines (stripped, at least MIN_LEN characters) of the source
    notebook's secret parts and of the hidden suite, minus text the source notebook shows in
    its public parts anyway (a signature, an import, a visible test, a demo that computes the
    same thing). Each remaining candidate found anywhere in the release is a leak, and so is any
    nbgrader marker.
    """
    repo = Path(repo)
    release_dir = Path(release_dir) if release_dir is not None else repo / "course" / name
    suite_dir = Path(suite_dir) if suite_dir is not None else repo / "autograder" / "suites" / name
    source = nbformat.read(str(repo / "solutions" / name / f"{name}.ipynb"), as_version=4)
    public, secret = notebook_secrets(source)
    secret["hidden suite"] = suite_lines(suite_dir)
    public_text = "\n".join(sorted(public))
    text = release_text(release_dir)
    found = [f"{name}: marker {m!r} in the release" for m in MARKERS if m in text]
    for kind, lines in secret.items():
        for line in sorted(lines):
            if (len(line) >= MIN_LEN and re.search(r"[A-Za-z]", line) and line not in public_text
                    and line in text):
                found.append(f"{name}: {kind} line in the release: {line!r}")
    return found
