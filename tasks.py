#!/usr/bin/env python3
"""The two commands of this project (see README.md).

    python3 tasks.py demo    # install into .venv, then run the grading demo
    python3 tasks.py test    # install into .venv, then run every test (CI runs exactly this)
    python3 tasks.py notebooks   # the solution notebooks at the students' run size, each one timed

Standard library only, so that it runs before anything is installed. The virtual environment is
made once and reinstalled only when a pyproject.toml changes (a hash of both is kept in
.venv/dlcourse-install.stamp).

Why the base interpreter is chosen with care: the autograder runs each student's notebook as an
unprivileged user. That user must be able to execute the venv's interpreter, whose real binary
and standard library live wherever the base Python was installed. A Python under a private
home directory (pyenv under /root, say) is unreachable for it, so we prefer one that every user
can run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "dlcourse-install.stamp"
PY_VERSION = (3, 11)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def reachable_by_everyone(path: Path) -> bool:
    """True when a user other than the owner can execute `path` (every parent searchable)."""
    path = path.resolve()
    try:
        if not path.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    except OSError:
        return False


def base_interpreter() -> str:
    """This Python, unless other users cannot run it and an equivalent one that they can exists."""
    here = Path(sys.executable)
    if os.name == "nt" or reachable_by_everyone(here):
        return sys.executable
    candidates = [shutil.which(f"python{PY_VERSION[0]}.{PY_VERSION[1]}"),
                  f"/usr/bin/python{PY_VERSION[0]}.{PY_VERSION[1]}",
                  f"/usr/local/bin/python{PY_VERSION[0]}.{PY_VERSION[1]}"]
    for cand in candidates:
        if cand and Path(cand).exists() and reachable_by_everyone(Path(cand)):
            ok = subprocess.run([cand, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0
            if ok:
                return cand
    return sys.executable


def install_hash() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "course/pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def ensure_venv() -> Path:
    if sys.version_info[:2] < PY_VERSION:
        sys.exit(f"dlcourse needs Python {PY_VERSION[0]}.{PY_VERSION[1]} or newer; this is {sys.version.split()[0]}")
    py = venv_python()
    wanted = install_hash()
    if py.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return py
    if not py.exists():
        run([base_interpreter(), "-m", "venv", VENV])
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    run(pip + ["--quiet", "--upgrade", "pip"])
    # torch first and alone: the pinned wheels are large, and a clear failure here beats a long resolver log.
    run(pip + ["torch==2.14.1", "torchvision==0.29.1"])
    run(pip + ["-e", "./course", "-e", "."])
    STAMP.write_text(wanted + "\n")
    return py


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in {"demo", "test", "notebooks"}:
        print(__doc__)
        return 2
    py = ensure_venv()
    # Nothing is downloaded in tests or the demo: the data sets fall back to offline data at once
    # instead of waiting for a network that CI does not have.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("DLCOURSE_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    if argv[0] == "test":
        # One thread per process: the banks grade in the background while the tests and nbval run,
        # and on 2 cores torch's default of a thread per core makes them fight (a training step
        # measured 34 ms with one thread, 907 ms with two under that load).
        env.setdefault("OMP_NUM_THREADS", "1")
    if argv[0] == "demo":
        cmd = [py, "-m", "autograder", "demo"]
    elif argv[0] == "notebooks":
        # Every solution notebook at the students' default run size, with each one's time
        # (solutions/conftest.py); the test command runs them at "tiny".
        env.setdefault("DLCOURSE_NBVAL_RUN_SIZE", "small")
        cmd = [py, "-m", "pytest", "-p", "no:cacheprovider", "solutions",
               "--nbval-lax", "--nbval-current-env", "--ignore-glob=*/tests/*.ipynb"]
    else:
        # The project's tests, then every solution notebook run end to end by nbval (--nbval-lax:
        # only cells marked `# NBVAL_CHECK_OUTPUT` have their outputs compared), at run size
        # "tiny" (solutions/conftest.py says why; `notebooks` runs them at the default size).
        cmd = [py, "-m", "pytest", "-p", "no:cacheprovider", "tests", "solutions",
               "--nbval-lax", "--nbval-current-env", "--ignore-glob=*/tests/*.ipynb"]
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
