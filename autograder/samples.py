"""Sample submissions for `autograder demo` and `autograder bench`, from data shipped in this package.

Four students hand in each assignment:

    alice-correct   the reference solution: the release with solutions/<a>/<a>.ipynb's answers
                    (solution markers removed), generated here
    bob-mistakes    typical honest mistakes    } answer cells kept in autograder/samples/<a>.json
    dave-cheat      tries to fool the grader   } (package data)
    carol-blank     the release untouched

The JSON holds, per kind, a note and the source of each answer cell (by grade_id) that differs from
the reference; every other answer cell gets the reference. It is taken from the banks' DEMO cases
(tests/bank/; `python tests/bank/samples.py` rewrites it), so the demo shows what the banks test,
but nothing here imports the tests: an installed package runs the demo on a course root.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
STUDENTS = {"correct": "alice-correct", "mistakes": "bob-mistakes", "blank": "carol-blank", "cheat": "dave-cheat"}
ROLES = {"correct": "hands in the reference solution", "mistakes": "makes typical mistakes",
         "blank": "hands in the release unchanged", "cheat": "tries to fool the grader"}
SHIPPED_KINDS = ("mistakes", "cheat")
_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


@dataclass(frozen=True)
class Sample:
    """One demo hand-in: kind (a key of STUDENTS), its student id, why it exists, and how to build it."""
    kind: str
    note: str
    build: Callable[[], nbformat.NotebookNode]

    @property
    def student(self) -> str:
        return STUDENTS[self.kind]


def answer_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """The notebook's answer cells (nbgrader `solution: true`) by grade_id, in notebook order."""
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def reference_answers(source_notebook: str | Path) -> dict[str, str]:
    """grade_id -> the source notebook's answer, `### BEGIN/END SOLUTION` lines removed (what a
    student who wrote the reference solution into the stub hands in)."""
    nb = nbformat.read(str(source_notebook), as_version=4)
    return {gid: "\n".join(line for line in cell.source.split("\n") if not _MARKER.match(line))
            for gid, cell in answer_cells(nb).items()}


def fill(release_notebook: str | Path, answers: dict[str, str | None]) -> nbformat.NotebookNode:
    """The release with its answer cells replaced by `answers` (None: left as released); grade_ids
    the release does not have are ignored (a renamed cell leaves the stub)."""
    nb = nbformat.read(str(release_notebook), as_version=4)
    for gid, cell in answer_cells(nb).items():
        if answers.get(gid) is not None:
            cell.source = answers[gid]
    return nb


def shipped(name: str) -> dict | None:
    """autograder/samples/<name>.json, or None when the package ships no samples for it."""
    path = SAMPLES_DIR / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def samples_for(assignment) -> tuple[dict[str, Sample], str]:
    """(kind -> Sample, "") or ({}, why there is no demo for this assignment).

    Needs the release and the source notebook (solutions/); the mistakes and the cheat come only
    when the package ships them for this assignment (the note says so otherwise)."""
    release, source = Path(assignment.release_notebook), Path(assignment.source_notebook)
    if not release.is_file():
        return {}, f"no release notebook {release}"
    if not source.is_file():
        return {}, f"no source notebook {source} (the reference answers come from it)"
    reference = reference_answers(source)
    out = {"correct": Sample("correct", "the reference solution", lambda: fill(release, reference)),
           "blank": Sample("blank", "the release untouched", lambda: nbformat.read(str(release), as_version=4))}
    data = shipped(assignment.name) or {}
    for kind in SHIPPED_KINDS:
        entry = data.get("samples", {}).get(kind)
        if entry:
            answers = {**reference, **entry["answers"]}
            out[kind] = Sample(kind, entry.get("note", kind), lambda a=answers: fill(release, a))
    missing = [k for k in SHIPPED_KINDS if k not in out]
    why = f"no shipped {' or '.join(missing)} sample(s) (autograder/samples/{assignment.name}.json)" if missing else ""
    return {k: out[k] for k in STUDENTS if k in out}, why


def write_samples(name: str, entries: dict[str, dict], directory: Path = SAMPLES_DIR) -> Path:
    """Write autograder/samples/<name>.json: entries = {kind: {"note": str, "answers": {grade_id: source}}}."""
    unknown = sorted(set(entries) - set(SHIPPED_KINDS))
    if unknown:
        raise ValueError(f"only {SHIPPED_KINDS} are shipped, not {unknown}")
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"assignment": name, "samples": entries}, indent=1, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path
