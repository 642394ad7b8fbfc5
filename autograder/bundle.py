"""`python -m autograder bundle`: the zip students download.

It holds course/ as students need it: course/pyproject.toml and course/README.md (install with
`pip install -e .`), the helper library course/dlcourse/ and the released notebooks
course/<assignment>/. Caches, data sets, TensorBoard runs, checkpoints and build leftovers stay
out, and nothing outside course/ (solutions/, autograder/) can get in, because only course/ is
walked.

The zip is reproducible: members sorted, fixed timestamps and permissions, so the same course/
always gives the same bytes (a changed checksum means the content changed).
"""
from __future__ import annotations

import fnmatch
import zipfile
from pathlib import Path

PREFIX = "course"
EXCLUDED_DIRS = ("__pycache__", ".ipynb_checkpoints", ".pytest_cache", "data", "runs", "checkpoints",
                 "build", "dist", "*.egg-info", ".git", ".venv", "lightning_logs")
EXCLUDED_FILES = ("*.pyc", "*.pyo", "*.pt", "*.pth", "*.ckpt", "*.tmp", ".DS_Store", "gradebook.db*",
                  "events.out.tfevents.*")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _excluded(name: str, patterns) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in patterns)


def files(course_dir: str | Path) -> list[Path]:
    """The files of `course_dir` that go into the bundle, sorted (paths relative to course_dir)."""
    course_dir = Path(course_dir)
    out = []
    for path in sorted(course_dir.rglob("*")):
        rel = path.relative_to(course_dir)
        if any(_excluded(part, EXCLUDED_DIRS) for part in rel.parts[:-1]):
            continue
        if path.is_dir() or path.is_symlink() or _excluded(rel.name, EXCLUDED_FILES):
            continue
        out.append(rel)
    return out


def build(course_dir: str | Path, out: str | Path) -> Path:
    """Write the bundle of `course_dir` to `out` (a .zip). Returns out.

    Raises FileNotFoundError when course_dir lacks pyproject.toml, README.md or dlcourse/.
    """
    course_dir, out = Path(course_dir), Path(out)
    for needed in ("pyproject.toml", "README.md", "dlcourse/__init__.py"):
        if not (course_dir / needed).is_file():
            raise FileNotFoundError(f"{course_dir / needed} is missing: not a course folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in files(course_dir):
            info = zipfile.ZipInfo(f"{PREFIX}/{rel.as_posix()}", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (course_dir / rel).read_bytes())
    tmp.replace(out)
    return out


def members(zip_path: str | Path) -> list[str]:
    """Member names of a bundle."""
    with zipfile.ZipFile(zip_path) as zf:
        return zf.namelist()
