"""Read a submission, check it, and merge it with the release notebook.

The release notebook is the authority: the merged notebook follows the RELEASE's cell order.

  * answer cells (nbgrader `solution: true`, code or markdown) come from the submission, matched by
    grade_id (a duplicated id: the last copy; a missing one: the release stub stays);
  * every other release cell (read-only and visible test cells, and the plain text and code cells
    between them) comes from the release, so edited, deleted or reordered cells are undone;
  * the student's own cells (and edited copies of plain release cells) are kept, placed after the
    release cell that precedes them in the submission;
  * outputs are stripped.

Unusable submissions raise `SubmissionError` with a reason written for the student.
"""
from __future__ import annotations

import copy
import json
import re
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat


class SubmissionError(Exception):
    """The submission cannot be graded; str(e) says why, for the student."""


MAX_NOTEBOOK_MB = 64       # a submitted notebook's size (outputs are stripped; code is small)
MAX_JSON_DEPTH = 64        # nesting of the notebook's JSON (nbformat's own schema needs about 8)


def _json_depth_exceeds(value, limit: int) -> bool:
    """True if containers nest deeper than `limit` (iterative: no recursion on hostile input)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth >= limit:
                return True
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def read_notebook(path: Path | str) -> nbformat.NotebookNode:
    """Parse a submitted .ipynb (any nbformat 4.x or 3, upgraded to 4); SubmissionError if unusable.

    Bounded: files over MAX_NOTEBOOK_MB and JSON nested deeper than MAX_JSON_DEPTH are refused
    before anything (nbformat, copying, merging) walks them."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_MB * 2**20:
        raise SubmissionError(f"the submitted file is too large ({size / 2**20:.0f} MB; at most "
                              f"{MAX_NOTEBOOK_MB} MB): clear the notebook's outputs and submit again")
    with open(path, "rb") as f:
        data = f.read(MAX_NOTEBOOK_MB * 2**20 + 1)
    if not data.strip():
        raise SubmissionError("the submitted file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmissionError("the submitted file is not a text file (not a Jupyter notebook)") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"the submitted file is not valid notebook JSON; it may be truncated or damaged "
                              f"({e.msg} at line {e.lineno}, column {e.colno})") from None
    except (RecursionError, MemoryError):
        raise SubmissionError("the submitted file's JSON is nested too deeply to be a notebook") from None
    if _json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise SubmissionError(f"the submitted file's JSON is nested more than {MAX_JSON_DEPTH} levels deep; "
                              f"it is not a notebook Jupyter wrote")
    if not isinstance(raw, dict) or not ("cells" in raw or "worksheets" in raw):
        raise SubmissionError("the submitted file is JSON but not a Jupyter notebook (it has no cells)")
    try:
        with warnings.catch_warnings():      # nbformat repairs duplicate ids etc. with a warning
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # nbformat raises many kinds for malformed structures
        raise SubmissionError(f"the submitted file is not a readable Jupyter notebook ({_short(e)})") from None
    if not isinstance(nb.get("cells"), list):
        raise SubmissionError("the submitted notebook has no list of cells")
    for i, cell in enumerate(nb.cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw") \
                or not isinstance(cell.get("source", ""), str):
            raise SubmissionError(f"cell {i + 1} of the submitted notebook is damaged")
        cell.setdefault("metadata", nbformat.NotebookNode())
        cell.setdefault("source", "")
    return nb


def nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def grade_id(cell) -> str | None:
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def is_answer(cell) -> bool:
    return nbgrader_meta(cell).get("solution") is True and grade_id(cell) is not None


@dataclass
class Merged:
    nb: nbformat.NotebookNode
    labels: list[str]                                  # per merged cell, e.g. "cell 12 (your cell after 'add')"
    notes: list[str] = field(default_factory=list)     # for the student's `errors`
    student_code: list[str] = field(default_factory=list)   # code the student wrote (for the tamper scan)
    answered: int = 0                                  # answer cells changed from the release stub


def _norm(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def merge(release: nbformat.NotebookNode, submission: nbformat.NotebookNode, assignment: str = "") -> Merged:
    """Merge a submission into the release (see the module docstring)."""
    rel_cells = release.cells
    gid_at = {grade_id(c): i for i, c in enumerate(rel_cells) if grade_id(c)}
    answer_ids = [grade_id(c) for c in rel_cells if is_answer(c)]
    plain_by_id = {c.get("id"): i for i, c in enumerate(rel_cells) if not grade_id(c) and c.get("id")}
    plain_by_source: dict[str, list[int]] = {}
    for i, c in enumerate(rel_cells):
        if not grade_id(c):
            plain_by_source.setdefault(_norm(c.source), []).append(i)

    answers: dict[str, object] = {}
    seen_count: dict[str, int] = {}
    seen_order: list[int] = []            # release positions of the nbgrader cells, in submission order
    restored: list[str] = []
    extras: dict[int, list] = {}          # release index -> student cells placed after it (-1: at the top)
    anchor = -1
    for cell in submission.cells:
        gid = grade_id(cell)
        if gid in gid_at:
            anchor = gid_at[gid]
            seen_count[gid] = seen_count.get(gid, 0) + 1
            if seen_count[gid] == 1:
                seen_order.append(anchor)
            rel = rel_cells[anchor]
            if is_answer(rel):
                answers[gid] = cell
            elif _norm(cell.source) != _norm(rel.source) and gid not in restored:
                restored.append(gid)
            continue
        matched = plain_by_id.get(cell.get("id"))
        if matched is not None:
            anchor = matched
            if _norm(cell.source) != _norm(rel_cells[matched].source):
                extras.setdefault(anchor, []).append(cell)       # an edited plain cell: keep both
            continue
        same = plain_by_source.get(_norm(cell.source))
        if same and cell.cell_type == rel_cells[same[0]].cell_type:
            anchor = same.pop(0)
            continue
        extras.setdefault(anchor, []).append(cell)

    if answer_ids and not answers:
        raise SubmissionError(
            f"none of this notebook's answer cells belong to assignment {assignment or 'this assignment'!r} "
            f"(its answer cells are {', '.join(repr(a) for a in answer_ids[:8])}); is it the right file?")

    notes = []
    for gid, n in seen_count.items():
        if n > 1 and gid in answers:
            notes.append(f"answer cell {gid!r} appears {n} times in your notebook; the last copy was graded")
    missing = [g for g in answer_ids if g not in answers]
    if missing:
        notes.append(f"answer cell(s) {', '.join(map(repr, missing))} were not found in your notebook; the "
                     f"empty stubs from the release were used")
    deleted = [grade_id(c) for c in rel_cells if grade_id(c) and not is_answer(c) and grade_id(c) not in seen_count]
    moved = seen_order != sorted(seen_order)
    if restored or deleted or moved:
        what = [f"edited: {', '.join(map(repr, restored[:6]))}" if restored else "",
                f"deleted: {', '.join(map(repr, deleted[:6]))}" if deleted else "",
                "some were moved" if moved else ""]
        notes.append("read-only cells were restored from the release (" + "; ".join(w for w in what if w) + ")")

    merged_cells, origins = [], []          # origin: ("answer"|"release"|"student", grade_id, anchor)
    answered = 0
    for cell in extras.get(-1, []):
        merged_cells.append(_student_cell(cell))
        origins.append(("student", None, -1))
    for i, rel in enumerate(rel_cells):
        gid = grade_id(rel)
        if gid in answers:
            sub = answers[gid]
            cell = copy.deepcopy(rel)
            cell.source = sub.get("source", "")
            if rel.cell_type == "markdown" and "attachments" in sub:
                cell["attachments"] = copy.deepcopy(sub["attachments"])
            if sub.cell_type != rel.cell_type:
                notes.append(f"answer cell {gid!r} was a {sub.cell_type} cell in your notebook; it was graded as "
                             f"a {rel.cell_type} cell")
            if _norm(cell.source) != _norm(rel.source):
                answered += 1
            merged_cells.append(cell)
            origins.append(("answer", gid, i))
        else:
            merged_cells.append(copy.deepcopy(rel))
            origins.append(("release", gid, i))
        for extra in extras.get(i, []):
            merged_cells.append(_student_cell(extra))
            origins.append(("student", None, i))

    student_extra_code = [c for c, o in zip(merged_cells, origins) if o[0] == "student" and c.cell_type == "code"
                          and c.source.strip()]
    if answer_ids and answered == 0 and not student_extra_code:
        raise SubmissionError("every answer cell is unchanged from the release (an empty submission)")

    _unique_ids(merged_cells)
    for cell in merged_cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb = copy.deepcopy(release)
    nb.cells = merged_cells
    student_code = [c.source for c, o in zip(merged_cells, origins)
                    if c.cell_type == "code" and o[0] in ("answer", "student")]
    return Merged(nb=nb, labels=_labels(merged_cells, origins, rel_cells), notes=notes,
                  student_code=student_code, answered=answered)


def _student_cell(cell):
    new = copy.deepcopy(cell)
    new.get("metadata", {}).pop("nbgrader", None)     # a student cell never claims to be graded
    if new.cell_type == "code":
        new.setdefault("outputs", [])
    return new


def _unique_ids(cells) -> None:
    seen = set()
    for cell in cells:
        cid = cell.get("id")
        if not isinstance(cid, str) or not re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", cid) or cid in seen:
            cid = uuid.uuid4().hex[:8]
            cell["id"] = cid
        seen.add(cid)


def _labels(cells, origins, rel_cells) -> list[str]:
    """How the student finds a merged cell: "cell 12 (your cell after 'conv2d_naive')"."""
    def last_gid_before(rel_index):
        for j in range(rel_index, -1, -1):
            if grade_id(rel_cells[j]):
                return grade_id(rel_cells[j])
        return None

    labels = []
    for n, (cell, (kind, gid, anchor)) in enumerate(zip(cells, origins), start=1):
        if kind == "answer":
            labels.append(f"cell {n} (answer {gid!r})")
        elif kind == "release" and gid:
            labels.append(f"cell {n} ({gid!r})")
        else:
            before = last_gid_before(anchor) if anchor >= 0 else None
            whose = "your cell" if kind == "student" else "the notebook's cell"
            where = (f"after {before!r}" if before else "at the top" if anchor < 0 and kind == "student"
                     else "before the first exercise")
            labels.append(f"cell {n} ({whose} {where})")
    return labels


def _short(e, n=200) -> str:
    text = str(e).replace("\n", " ")
    return text if len(text) <= n else text[: n - 3] + "..."
