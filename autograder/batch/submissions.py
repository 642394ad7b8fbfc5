"""Finding the students' hand-ins in a folder, and reading each one safely: the batch's input.

Two layouts (both may be mixed; the student id is the folder name or the file stem):

    submitted/<student>/<assignment>/<notebook>.ipynb     nbgrader's layout (the course root works too)
    <student>.ipynb                                        a flat folder

Every student found gets a `Submission`, with a path or with the reason there is none, so that no
student is ever left out of the gradebook. The grader runs as root: a hand-in that is, or sits
behind, a symlink, FIFO or device is refused here (`refusal`), and a notebook is read only through
`read_submission`, which follows no link whatever changed on disk since it was found.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

NO_SUBMISSION = "no submission found"


class LayoutError(ValueError):
    """The folder of submissions cannot be read unambiguously (the message says why)."""


@dataclass(frozen=True)
class Submission:
    """One student's hand-in. path is None when the student has no notebook for this assignment."""
    student: str
    path: Path | None
    reason: str = ""

    @property
    def folder(self) -> Path | None:
        return self.path.parent if self.path is not None else None


def _notebooks(folder: Path) -> list[Path]:
    """The notebooks in `folder`, symlinks included (so that they are refused, not silently skipped)."""
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith(".")
                  and (p.is_symlink() or p.is_file()))


MAX_ENTRIES = 10_000      # entries looked at in one student's folder


def refusal(path: Path, student_root: Path) -> str | None:
    """Why a student's hand-in at `path` (a notebook, or their folder) is refused, or None.

    The grader runs as root on a grading server: a symlink in a submission (to a solution notebook,
    a hidden suite or another student's folder) would make it read, grade and copy that file, and a
    FIFO or device would hang or confuse it. Only real folders and regular files are accepted,
    looked at without following any link.
    """
    def rel(p: Path) -> str:
        return str(p.relative_to(student_root.parent)) if p.is_relative_to(student_root.parent) else p.name

    def why(p: Path, st) -> str | None:
        if stat.S_ISLNK(st.st_mode):
            return f"{rel(p)} is a symbolic link"
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return f"{rel(p)} is not a regular file"
        return None

    chain = [student_root, *reversed([q for q in path.parents if q.is_relative_to(student_root)
                                      and q != student_root]), path]
    for p in dict.fromkeys(chain):
        try:
            reason = why(p, os.lstat(p))
        except OSError as e:
            reason = f"{rel(p)} cannot be read ({e.strerror})"
        if reason:
            return f"submission refused: {reason}; hand in the notebook itself, as a regular file"
    if path.is_dir():
        seen = 0
        for top, dirs, files in os.walk(path, followlinks=False):
            for name in [*dirs, *files]:
                seen += 1
                if seen > MAX_ENTRIES:
                    return f"submission refused: more than {MAX_ENTRIES} files in {rel(path)}"
                try:
                    reason = why(Path(top) / name, os.lstat(Path(top) / name))
                except OSError as e:
                    reason = f"{rel(Path(top) / name)} cannot be read ({e.strerror})"
                if reason:
                    return f"submission refused: {reason}; hand in the notebook itself, as a regular file"
    return None


def read_submission(path: Path, max_bytes: int = 512 * 2**20) -> bytes:
    """A submitted notebook's bytes, opened without following a symlink (ValueError if it is not a
    regular file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"{path.name} is larger than {max_bytes >> 20} MB")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            if sum(map(len, chunks)) > max_bytes:
                raise ValueError(f"{path.name} is larger than {max_bytes >> 20} MB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def find_submissions(directory: str | Path, assignment: str, notebook_name: str) -> list[Submission]:
    """Every student under `directory`, sorted by id.

    Inputs: directory (see the module docstring; a course root with a submitted/ folder works
    too), assignment name, notebook_name (the release notebook's file name, preferred when a
    student's folder holds several notebooks).
    Returns: one Submission per student; a student folder with no notebook for this assignment
    gives path=None and reason NO_SUBMISSION, never a missing row.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    if (directory / "submitted").is_dir() and not _notebooks(directory):
        directory = directory / "submitted"
    subs: dict[str, Submission] = {}
    for path in _notebooks(directory):
        refused = refusal(path, path)
        subs[path.stem] = Submission(path.stem, None if refused else path, refused or "")
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if folder.name.startswith(".") or folder.name == "__pycache__":
            continue
        student = folder.name
        if student in subs:
            raise LayoutError(f"student {student!r} has both {student}.ipynb and a folder {student}/ "
                              f"in {directory}; keep one")
        adir = folder / assignment
        refused = refusal(adir, folder) if (folder.is_symlink() or adir.is_symlink() or adir.is_dir()) else None
        if refused:
            subs[student] = Submission(student, None, refused)
            continue
        found = _notebooks(adir) if adir.is_dir() else []
        preferred = [p for p in found if p.name == notebook_name]
        if preferred or len(found) == 1:
            subs[student] = Submission(student, (preferred or found)[0])
        elif found:
            names = ", ".join(p.name for p in found)
            subs[student] = Submission(student, None, f"several notebooks ({names}) and none named {notebook_name}")
        else:
            subs[student] = Submission(student, None, NO_SUBMISSION)
    return [subs[k] for k in sorted(subs)]


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(read_submission(Path(path))).hexdigest()
