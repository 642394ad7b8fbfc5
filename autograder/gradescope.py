"""Grading on Gradescope: `python -m autograder gradescope <assignment>` writes an autograder zip.

Gradescope grades each submission in its own container on its own machines; this module packs our
grader for it and runs inside it. The zip (Gradescope's "autograder.zip", unpacked by Gradescope
into /autograder/source) holds:

    setup.sh            run once when Gradescope builds the image: a Python >= 3.11 venv in
                        /autograder/venv with the pinned environment (requirements.txt: the exact
                        pins of the installed grader and dlcourse) and the course library
    run_autograder      run for every submission: grades /autograder/submission/*.ipynb and writes
                        /autograder/results/results.json in Gradescope's format
    requirements.txt    the pinned environment
    assignment.json     the assignment's name, its notebook's name and the grader's settings
    autograder/         the grader, with this assignment's hidden suite only (autograder/suites/<a>/)
    pyproject.toml      the grader's project file
    course/dlcourse/    the course library (installed by setup.sh), course/pyproject.toml
    course/<a>/         the release (the notebook students answer in, and its files)

Never in the zip: solutions/, other assignments' suites, the tests.

`run_autograder` honours AUTOGRADER_ROOT (default /autograder) and AUTOGRADER_PYTHON (default
$AUTOGRADER_ROOT/venv/bin/python), so the same script runs against a local folder laid out like
/autograder (tests/test_gradescope.py does that).

results.json (autograder/exporters/gradescope.py): one test per hidden test with name, score,
max_score, status, output (the student-facing message) and visibility "visible"; the instructor's
notes become one test with visibility "hidden" (instructors only). The hidden suite's source is never
in it; tracebacks of suite errors go to stdout, which Gradescope shows to instructors only
("stdout_visibility": "hidden").

The sandbox needs Linux namespaces (run as root, which Gradescope does, or with user namespaces).
Where the container allows neither, the kernel runs in mode "none", in which student code could
read the hidden suite: every result then carries an "isolation" fault, shown to instructors.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import stat
import sys
import time
import traceback
import zipfile
from pathlib import Path

CONFIG = "assignment.json"
IGNORE_PARTS = {"__pycache__", ".ipynb_checkpoints", "data", "runs", "checkpoints", ".pytest_cache"}
DISTRIBUTIONS = ("dlcourse-instructor", "dlcourse")      # whose pins make requirements.txt

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (see autograder/gradescope.py).
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
PY=""
for cand in python3.13 python3.12 python3.11; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
done
if [ -z "$PY" ]; then
    apt-get update
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
    PY=python3.11
fi
# unshare and setpriv (util-linux) build the sandbox; they are in every Ubuntu image, checked here.
command -v unshare >/dev/null && command -v setpriv >/dev/null || apt-get install -y util-linux
"$PY" -m venv "$ROOT/venv"
PIP=("$ROOT/venv/bin/python" -m pip install --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# torch's CPU wheels (Gradescope has no GPU), then the exact pins of the grader and the course library.
"${PIP[@]}" --extra-index-url https://download.pytorch.org/whl/cpu $(grep -E '^(torch|torchvision)==' "$SRC/requirements.txt")
"${PIP[@]}" -r "$SRC/requirements.txt"
"${PIP[@]}" --no-deps "$SRC/course"
# The hidden suite stays readable by root (the grader) only.
chmod -R go-rwx "$SRC"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission, as root, in a fresh container (see autograder/gradescope.py).
# AUTOGRADER_ROOT and AUTOGRADER_PYTHON let it run against a local folder laid out like /autograder.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
cd "$ROOT/source"
export PYTHONPATH="$ROOT/source" DLCOURSE_OFFLINE=1 MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1
exec "$PY" -m autograder.gradescope run --root "$ROOT"
"""


# ---------------------------------------------------------------------------------------------
# Building the zip (on the instructor's machine)
# ---------------------------------------------------------------------------------------------
def _files(folder: Path) -> list[Path]:
    """Regular files under `folder` (no symlinks, caches, data or hidden files), sorted."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part in IGNORE_PARTS or part.startswith(".") for part in rel.parts):
            continue
        if p.is_symlink() or not p.is_file() or p.suffix in (".pyc", ".pyo"):
            continue
        out.append(p)
    return out


def requirements() -> list[str]:
    """The exact pins (name==version) of the installed grader and course library."""
    pins: dict[str, str] = {}
    for dist in DISTRIBUTIONS:
        try:
            reqs = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for req in reqs:
            spec = req.split(";")[0].strip()
            if "==" in spec:
                pins.setdefault(spec.split("==")[0].strip().lower(), spec.replace(" ", ""))
    return [pins[k] for k in sorted(pins)]


def _project_file(package_dir: Path, fallback_name: str, deps: list[str]) -> str:
    """The package's pyproject.toml when it sits beside the package (a checkout), else a minimal one."""
    found = package_dir.parent / "pyproject.toml"
    if found.is_file():
        return found.read_text(encoding="utf-8")
    return ("[build-system]\nrequires = [\"setuptools>=68\"]\nbuild-backend = \"setuptools.build_meta\"\n\n"
            f"[project]\nname = \"{fallback_name}\"\nversion = \"0.0.0\"\nrequires-python = \">=3.11\"\n"
            f"dependencies = {json.dumps(deps)}\n\n[tool.setuptools]\npackages = [\"{package_dir.name}\"]\n")


def build(assignment, out: str | Path, settings=None) -> tuple[Path, list[str]]:
    """Write the Gradescope autograder zip for `assignment` (an Assignment) to `out`.

    settings: autograder.settings.Settings for grading on Gradescope (default: Settings()).
    Returns (the zip's path, the names in it).
    """
    import autograder
    from autograder.settings import Settings
    settings = settings or Settings()
    out = Path(out)
    grader_dir = Path(autograder.__file__).resolve().parent
    spec = importlib.util.find_spec("dlcourse")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dlcourse package is not installed (pip install ./course)")
    course_lib = Path(list(spec.submodule_search_locations)[0]).resolve()
    suite_dir, release_dir = Path(assignment.suite_dir).resolve(), Path(assignment.release_notebook).resolve().parent
    pins = requirements()
    config = {"assignment": assignment.name, "notebook": Path(assignment.release_notebook).name,
              "settings": settings.to_mapping()}

    entries: list[tuple[str, bytes, int]] = [
        ("setup.sh", SETUP_SH.encode(), 0o755),
        ("run_autograder", RUN_AUTOGRADER.encode(), 0o755),
        ("requirements.txt", ("\n".join(pins) + "\n").encode(), 0o644),
        (CONFIG, (json.dumps(config, indent=1) + "\n").encode(), 0o644),
        ("pyproject.toml", _project_file(grader_dir, "dlcourse-instructor", []).encode(), 0o644),
        ("course/pyproject.toml", _project_file(course_lib, "dlcourse", []).encode(), 0o644),
    ]
    suites = grader_dir / "suites"
    for p in _files(grader_dir):
        if p.is_relative_to(suites):
            continue                                   # other assignments' suites never go in
        entries.append((f"autograder/{p.relative_to(grader_dir).as_posix()}", p.read_bytes(), 0o644))
    for p in _files(suite_dir):
        entries.append((f"autograder/suites/{assignment.name}/{p.relative_to(suite_dir).as_posix()}",
                        p.read_bytes(), 0o644))
    for p in _files(course_lib):
        entries.append((f"course/dlcourse/{p.relative_to(course_lib).as_posix()}", p.read_bytes(), 0o644))
    for p in _files(release_dir):
        entries.append((f"course/{assignment.name}/{p.relative_to(release_dir).as_posix()}", p.read_bytes(), 0o644))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    os.replace(tmp, out)
    return out, [name for name, _, _ in entries]


# ---------------------------------------------------------------------------------------------
# Running inside Gradescope's container
# ---------------------------------------------------------------------------------------------
def find_notebook(submission_dir: Path, wanted: str) -> tuple[Path | None, str]:
    """The student's notebook in Gradescope's submission folder: (path, "") or (None, why not).

    Prefers the release notebook's name; else the only notebook uploaded. Symlinks are never followed.
    """
    found = []
    if submission_dir.is_dir():
        for top, dirs, files in os.walk(submission_dir, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in IGNORE_PARTS]
            for name in files:
                p = Path(top) / name
                if name.endswith(".ipynb") and not name.startswith(".") and stat.S_ISREG(os.lstat(p).st_mode):
                    found.append(p)
    preferred = [p for p in found if p.name == wanted]
    if preferred:
        return sorted(preferred, key=lambda p: len(p.parts))[0], ""
    if len(found) == 1:
        return found[0], ""
    if not found:
        return None, f"no notebook found in the submission: upload {wanted}"
    names = ", ".join(sorted(p.name for p in found))
    return None, f"several notebooks ({names}) and none named {wanted}: upload {wanted} only"


def run(root: str | Path) -> int:
    """Grade /autograder/submission and write /autograder/results/results.json (root: /autograder)."""
    from autograder.assignments import find_assignment
    from autograder.batch import suite_tests
    from autograder.exporters.gradescope import results_json
    from autograder.result import GradeResult
    from autograder.settings import Settings

    t0 = time.monotonic()
    root = Path(root)
    source = root / "source"
    config = json.loads((source / CONFIG).read_text(encoding="utf-8"))
    settings = Settings().replace(config.get("settings", {}))
    assignment = find_assignment(config["assignment"], root=source)
    # The kernels' zygote first: it imports torch for the kernel on another core while this process
    # imports the grader (torch, pytest) on the next line.
    from autograder import zygote
    zygote.for_assignment(assignment, settings.limits)
    from autograder.runner import grade_submission
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)

    notebook, why = find_notebook(root / "submission", config["notebook"])
    try:
        if notebook is None:
            result = GradeResult.zero(assignment.name, why, suite_tests(assignment))
        else:
            result = grade_submission(assignment, notebook, limits=settings.limits)
    except Exception as e:  # noqa: BLE001 - the grader failed: 0 with a reason, the traceback for instructors
        reason = "the autograder failed on this submission; your instructor has been told"
        try:
            template = suite_tests(assignment)
        except Exception:  # noqa: BLE001 - the suite cannot even be collected
            template = []
        result = GradeResult.zero(assignment.name, reason, template)
        result.instructor.add("grader-failed", f"{type(e).__name__}: {e}", detail=traceback.format_exc())
    data = results_json(result, time.monotonic() - t0)
    data["stdout_visibility"] = "hidden"
    (results / "results.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    # Instructors only (Gradescope hides stdout from students with stdout_visibility "hidden").
    print(f"{assignment.name}: {result.score:g}/{result.max_score:g}, isolation {result.instructor.isolation}")
    for fault in result.faults:
        print(f"grader fault: {fault.line()}\n{fault.detail}".rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m autograder.gradescope")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="inside Gradescope: grade the submission, write results/results.json")
    r.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    args = p.parse_args(argv)
    return run(args.root)


if __name__ == "__main__":
    sys.exit(main())
