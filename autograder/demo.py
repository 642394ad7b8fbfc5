"""`python -m autograder demo`: the whole instructor workflow on sample submissions, in one command.

1. Release: course/<a>/ from solutions/<a>/ (nbgrader generate_assignment), checked for leaks.
2. Hand-ins: for every assignment with a bank (tests/bank/b<a>.py), four students hand in the
   bank's DEMO cases: alice-correct (the reference solution), bob-mistakes (typical errors),
   carol-blank (the release untouched) and dave-cheat (tries to fool the grader). They are written
   as nbgrader's layout: demo-output/submitted/<student>/<assignment>/<assignment>.ipynb.
3. Grading: the batch grader per assignment (results, feedback and the nbgrader gradebook
   demo-output/gradebook.db, whose autograded/ notebooks formgrader can open).
4. A table of the grades and where to find the feedback.

Assignments without a bank yet are skipped (and named). Running the demo again re-grades only
what changed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
STUDENTS = {"correct": "alice-correct", "mistakes": "bob-mistakes", "blank": "carol-blank",
            "cheat": "dave-cheat"}


def _bank_tools():
    """tests/bank/common.py (the banks live with the tests; the demo reuses them)."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from bank import common
    return common


def load_demo_cases(assignment: str) -> tuple[dict | None, str]:
    """(kind -> Case for the DEMO entries, "") or (None, why this assignment has no demo)."""
    common = _bank_tools()
    bank_file = REPO / "tests" / "bank" / f"b{assignment}.py"
    if not bank_file.is_file():
        return None, f"no bank yet (tests/bank/b{assignment}.py)"
    try:
        module = common.load_bank(assignment)
        common.validate_bank(module)
    except Exception as e:  # noqa: BLE001 - a broken bank skips its assignment, the demo goes on
        return None, f"bank tests/bank/b{assignment}.py does not load: {type(e).__name__}: {e}"
    cases = {c.name: c for c in module.CASES}
    return {kind: cases[name] for kind, name in module.DEMO.items() if kind in STUDENTS}, ""


def write_submissions(assignment: str, cases: dict, submitted: Path) -> dict[str, str]:
    """Write each demo case as submitted/<student>/<assignment>/<assignment>.ipynb.

    Returns student -> the case's note. A notebook is rewritten only when its content changed, so
    the batch grader's "unchanged, keep the grade" applies on a second run.
    """
    notes = {}
    for kind, case in cases.items():
        student = STUDENTS[kind]
        path = submitted / student / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        built = case.build()
        data = bytes(built) if isinstance(built, (bytes, bytearray)) else nbformat.writes(built).encode()
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        notes[student] = case.note or kind
    return notes


def _short(text: str, n: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def note_for(result: dict) -> str:
    """What went wrong for this student, in a few words.

    The grader's reason when it produced no grade; else the first failed hidden test (what the
    feedback leads with); else the first notebook-level error; else "all tests passed".
    """
    if result.get("status") in ("grader-failed", "missing") and result.get("errors"):
        return _short(result["errors"][0])
    failed = [t for t in result.get("tests", []) if not t.get("passed")]
    if failed:
        return _short(f"{len(failed)} test(s) failed, e.g. {failed[0]['name']}: {failed[0].get('message', '')}")
    if result.get("errors"):
        return _short(result["errors"][0])
    return "all tests passed"


ROLES = {"correct": "hands in the reference solution", "mistakes": "makes typical mistakes",
         "blank": "hands in the release unchanged", "cheat": "tries to fool the grader"}


def table(results: dict[str, dict[str, dict]], assignments: list[str]) -> str:
    """A plain-text gradebook: student, score/max per assignment, notes (what the student did).

    results: assignment -> student -> result. A score the grader could not produce is marked "!".
    """
    roles = {student: ROLES[kind] for kind, student in STUDENTS.items()}
    students = sorted({s for per in results.values() for s in per})
    header = ["student", *assignments, "notes"]
    rows = []
    for s in students:
        cells = []
        for a in assignments:
            r = results.get(a, {}).get(s)
            mark = " !" if r and r.get("status") == "grader-failed" else ""
            cells.append(f"{float(r['score']):g}/{float(r['max_score']):g}{mark}" if r else "-")
        rows.append([s, *cells, roles.get(s, "")])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def details(results: dict[str, dict[str, dict]], notes: dict[str, dict[str, str]]) -> str:
    """Per assignment and student: the bank's note on the hand-in and what the grader said first."""
    lines = []
    for a, per in results.items():
        lines.append(f"{a}:")
        for s in sorted(per):
            why = _short(notes.get(a, {}).get(s, ""), 60)
            lines.append(f"  {s:<14} {why}{' -> ' if why else ''}{note_for(per[s])}")
    return "\n".join(lines)


def main(out: Path, settings=None, release: bool = True) -> int:
    """settings: autograder.settings.Settings (default: 2 workers, run size "tiny")."""
    from autograder import batch
    from autograder.settings import Settings
    if settings is None:
        settings = Settings(workers=2).replace(run_size="tiny")
    from autograder import release as rel
    from autograder.assignments import find_assignment
    out = Path(out)
    names = rel.source_assignments(REPO)
    if not names:
        print("demo: no assignments in solutions/ yet")
        return 1
    if release:
        for name in names:
            rel.generate(name, REPO)
            found = rel.leaks(name, REPO)
            print(f"released {name} -> course/{name}/" + (f"  LEAKS: {found}" if found else ""))
            if found:
                return 1
    results: dict[str, dict[str, dict]] = {}
    notes: dict[str, dict[str, str]] = {}
    graded = []
    for name in names:
        try:
            assignment = find_assignment(name)
        except (LookupError, FileNotFoundError) as e:
            print(f"skipping {name}: {e}")
            continue
        cases, why = load_demo_cases(name)
        if cases is None:
            print(f"skipping {name}: {why}")
            continue
        notes[name] = write_submissions(name, cases, out / "submitted")
        print(f"grading {name}: {', '.join(STUDENTS[k] for k in cases)}", flush=True)
        report = batch.grade_directory(assignment, out / "submitted", out=out / "grades" / name,
                                       settings=settings, course_dir=out,
                                       placeholder_tests=batch.suite_tests)
        print(batch.summary(report))
        results[name] = {s: r for s, r in report.results.items() if s in STUDENTS.values()}
        graded.append(name)
    if not graded:
        print("demo: no assignment has a bank of sample submissions yet")
        return 1
    print()
    print(table(results, graded))
    print()
    print(details(results, notes))
    print()
    for name in graded:
        print(f"{name}: feedback {out / 'grades' / name / 'feedback'}/<student>.html (and .md), "
              f"CSV {out / 'grades' / name / 'gradebook.csv'}")
    print(f"nbgrader gradebook: {out / 'gradebook.db'} "
          f"(nbgrader export --CourseDirectory.root={out} --CourseDirectory.db_url=sqlite:///{out / 'gradebook.db'})")
    return 0
