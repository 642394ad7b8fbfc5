"""`python -m autograder demo`: the whole instructor workflow on sample submissions, in one command.

1. Release: course/<a>/ from solutions/<a>/ (nbgrader generate_assignment), checked for leaks.
2. Hand-ins: for every assignment, four students hand in the package's sample submissions
   (autograder/samples.py): alice-correct (the reference solution), bob-mistakes (typical errors),
   carol-blank (the release untouched) and dave-cheat (tries to fool the grader). They are written
   as nbgrader's layout: demo-output/submitted/<student>/<assignment>/<assignment>.ipynb.
3. Grading: the batch grader per assignment, with run size "tiny" (results, feedback and the
   nbgrader gradebook demo-output/gradebook.db, whose autograded/ notebooks formgrader can open).
4. A table of the grades, every grader fault (instructors only), and where the feedback is.

The samples are package data, so an installed package runs the demo on a course root (`--root`);
nothing is imported from tests/. Running the demo again re-grades only what changed.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

from autograder.samples import ROLES, STUDENTS, Sample, samples_for

REPO = Path(__file__).resolve().parent.parent


def write_submissions(assignment: str, samples: dict[str, Sample], submitted: Path) -> dict[str, str]:
    """Write each sample as submitted/<student>/<assignment>/<assignment>.ipynb.

    Returns student -> the sample's note. A notebook is rewritten only when its content changed, so
    the batch grader's "unchanged, keep the grade" applies on a second run.
    """
    notes = {}
    for sample in samples.values():
        path = submitted / sample.student / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = nbformat.writes(sample.build()).encode()
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        notes[sample.student] = sample.note
    return notes


def _short(text: str, n: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def note_for(result) -> str:
    """What went wrong for this student, in a few words.

    The grader's reason when it produced no grade; else the first failed hidden test (what the
    feedback leads with); else the first notebook-level error; else "all tests passed".
    """
    if result.status in ("grader-failed", "missing", "refused") and result.errors:
        return _short(result.errors[0])
    failed = [t for t in result.tests if not t.passed]
    if failed:
        return _short(f"{len(failed)} test(s) failed, e.g. {failed[0].name}: {failed[0].message}")
    if result.errors:
        return _short(result.errors[0])
    return "all tests passed"


def table(results: dict[str, dict[str, dict]], assignments: list[str]) -> str:
    """A plain-text gradebook: student, score/max per assignment, notes (what the student did).

    results: assignment -> student -> GradeResult. A score the grader could not produce, or one with a
    grader fault (printed below the table), is marked "!".
    """
    roles = {student: ROLES[kind] for kind, student in STUDENTS.items()}
    students = sorted({s for per in results.values() for s in per})
    header = ["student", *assignments, "notes"]
    rows = []
    for s in students:
        cells = []
        for a in assignments:
            r = results.get(a, {}).get(s)
            mark = " !" if r and (r.status == "grader-failed" or r.faults) else ""
            cells.append(f"{r.score:g}/{r.max_score:g}{mark}" if r else "-")
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


def faults(results: dict[str, dict]) -> str:
    """Every fault that is not a student's (what only the instructor sees), or a line saying there was none."""
    lines = [f"  {a} / {s}: {f.line()}" for a, per in results.items() for s in sorted(per) for f in per[s].faults]
    if not lines:
        return "grader faults (instructors only): none"
    return "\n".join(["grader faults (instructors only; tracebacks in grades/<assignment>/logs/):", *lines])


def main(out: Path, settings=None, release: bool = True, root: Path | None = None,
         only: list[str] | None = None) -> int:
    """settings: autograder.settings.Settings (default: 2 workers, run size "tiny"); root: the course
    root (solutions/, course/, autograder/suites/; default: this repository); only: these assignments."""
    from autograder import batch
    from autograder import release as rel
    from autograder.assignments import find_assignment
    from autograder.settings import Settings
    if settings is None:
        settings = Settings(workers=2).replace(run_size="tiny")
    out = Path(out)
    root = Path(root) if root is not None else REPO
    names = [n for n in rel.source_assignments(root) if not only or n in only]
    if not names:
        print(f"demo: no assignments in {root / 'solutions'} yet")
        return 1
    if release:
        for name in names:
            rel.generate(name, root)
            found = rel.leaks(name, root)
            print(f"released {name} -> course/{name}/" + (f"  LEAKS: {found}" if found else ""))
            if found:
                return 1
    results: dict[str, dict] = {}
    notes: dict[str, dict[str, str]] = {}
    graded = []
    for name in names:
        try:
            assignment = find_assignment(name, root=root)
        except (LookupError, FileNotFoundError) as e:
            print(f"skipping {name}: {e}")
            continue
        samples, why = samples_for(assignment)
        if not samples:
            print(f"skipping {name}: {why}")
            continue
        if why:
            print(f"{name}: {why}")
        notes[name] = write_submissions(name, samples, out / "submitted")
        print(f"grading {name}: {', '.join(s.student for s in samples.values())}", flush=True)
        report = batch.grade_directory(assignment, out / "submitted", out=out / "grades" / name,
                                       settings=settings, course_dir=out, root=root,
                                       placeholder_tests=batch.suite_tests)
        print(batch.summary(report))
        results[name] = {s: r for s, r in report.results.items() if s in STUDENTS.values()}
        graded.append(name)
    if not graded:
        print("demo: no assignment could be demonstrated")
        return 1
    print()
    print(table(results, graded))
    print()
    print(details(results, notes))
    print()
    print(faults(results))
    print()
    for name in graded:
        print(f"{name}: feedback {out / 'grades' / name / 'feedback'}/<student>.html (and .md), "
              f"CSV {out / 'grades' / name / 'gradebook.csv'}")
    print(f"nbgrader gradebook: {out / 'gradebook.db'} "
          f"(nbgrader export --CourseDirectory.root={out} --CourseDirectory.db_url=sqlite:///{out / 'gradebook.db'})")
    return 0
