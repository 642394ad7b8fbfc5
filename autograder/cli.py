"""`python -m autograder <command>`: the instructor's commands.

    grade <assignment> <notebook.ipynb> [--json]       grade one notebook (JSON: the engine's format)
    grade <assignment> <directory> [--workers N]       grade every submission (see autograder/batch/)
    release [assignment ...]                           course/<a>/ from solutions/<a>/ (nbgrader)
    bundle [--out dlcourse-student.zip]                the student bundle (course/ without caches)
    demo                                               release, grade sample submissions, show grades
    bench [assignment]                                 our grader vs nbgrader autograde, 1 vs 2 workers
    gradescope <assignment> [--out FILE.zip]           a Gradescope autograder zip for the assignment

Exit status: 0 when the command did its job (a broken submission still gets a grade, so grading
it is a success); 2 when it could not run (unknown assignment, missing file), with one line on
stderr saying why.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """The command cannot run; the message is the one line printed on stderr."""


def _assignment(name: str, root: str | None):
    from autograder.assignments import find_assignment
    try:
        return find_assignment(name, root=root)
    except (LookupError, ValueError, FileNotFoundError) as e:
        raise UsageError(str(e.args[0] if e.args else e)) from None


def _die_with_parent() -> None:
    """Die when the batch that started us dies (it sets AUTOGRADER_PARENT_PID; Linux only).

    A batch killed with SIGKILL cannot stop its graders itself; this asks the kernel to do it.
    """
    want = os.environ.get("AUTOGRADER_PARENT_PID")
    if not want or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != want:      # the parent died before the request took effect
        os._exit(1)


# ---------------------------------------------------------------------------------------------
# grade
# ---------------------------------------------------------------------------------------------
def cmd_grade(args) -> int:
    if args.path == "-":
        return _grade_one(args, None)
    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"no such file or directory: {path}")
    if path.is_dir():
        return _grade_directory(args, path)
    return _grade_one(args, path)


def cmd_tests(args) -> int:
    """What the hidden suite checks and for how many points, collected without grading anything."""
    assignment = _assignment(args.assignment, args.root)
    from autograder.batch.suite import collect_tests
    from autograder.kernel import GraderError
    try:
        tests = collect_tests(assignment)
    except GraderError as e:
        print(f"autograder: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(tests))
        return 0
    for t in tests:
        print(f"{t['max_points']:5g}  {t['name']}" + (f"  ({t['cell']})" if t.get("cell") else "")
              + (f"\n       {t['description']}" if t.get("description") else ""))
    print(f"{sum(t['max_points'] for t in tests):5g}  total, {len(tests)} tests")
    return 0


def _settings(args):
    from autograder.settings import SettingsError, from_args
    try:
        return from_args(args)
    except SettingsError as e:
        raise UsageError(str(e)) from None


def _limit_own_memory(mb: int) -> None:
    """Cap this grading process's data (heap and anonymous mappings, RLIMIT_DATA soft limit): an
    allocation beyond it raises MemoryError, so nothing a kernel sends can grow the grader past it.
    The kernel does not inherit the cap (the sandbox resets it before applying the kernel's own)."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        want = mb * 2**20
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (want, hard))
    except (ImportError, ValueError, OSError):      # not Linux/Unix: no cap
        pass


def _grade_one(args, path: Path | None) -> int:
    """Grade one notebook; path None: the batch's pooled grader (pool.py), which starts its
    sandboxed kernel first and then reads the notebook to grade from stdin."""
    _die_with_parent()
    assignment = _assignment(args.assignment, args.root)
    settings = _settings(args)
    # The kernels' zygote first: it imports torch for the kernel on the other core while this
    # process imports torch and pytest itself below (a grader forked in a batch has the batch's).
    from autograder import zygote
    zygote.for_assignment(assignment, settings.limits)
    from autograder.runner import grade_submission
    _limit_own_memory(settings.limits.grader_memory_mb)
    warm, executed = None, args.executed
    if path is None:
        from autograder.pool import read_job
        from autograder.runner import WarmKernel
        try:
            warm = WarmKernel(assignment, settings.limits, hide=args.hide or ())
        except Exception as e:  # noqa: BLE001 - graded below in a fresh sandbox, which says why if it fails too
            print(f"autograder: the pre-started kernel failed: {type(e).__name__}: {e}", file=sys.stderr)
        job = read_job(sys.stdin)
        if job is None:                      # the batch needs no more graders
            if warm is not None:
                warm.close()
            return 0
        path, executed = job
        if not path.is_file():
            if warm is not None:
                warm.close()
            raise UsageError(f"no such file: {path}")
    try:
        result = grade_submission(assignment, path, limits=settings.limits, executed_path=executed,
                                  warm=warm, hide=args.hide or ())
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except MemoryError:
        print(f"autograder: grading failed: the grader used more than its own memory limit "
              f"(grader_memory_mb = {settings.limits.grader_memory_mb}) for this submission", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the grader itself failed: one line (contract), no traceback
        if os.environ.get("AUTOGRADER_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"autograder: grading failed: {type(e).__name__}: {first} "
              f"(AUTOGRADER_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    if not os.environ.get("AUTOGRADER_PARENT_PID"):
        # Run by hand: faults that are not the student's go to the instructor's terminal. Under a
        # batch they travel in the JSON's instructor notes (and the batch prints and logs them).
        for fault in result.faults:
            label = "WARNING" if fault.kind == "isolation" else "grader fault"
            print(f"autograder: {label}: {fault.line()}", file=sys.stderr)
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
    else:
        from autograder import feedback
        titles = _titles(assignment)
        sys.stdout.write(feedback.render_markdown(result.student_view(), cell_titles=titles))
    return 0


def _titles(assignment) -> dict:
    import nbformat
    from autograder import feedback
    try:
        return feedback.exercise_titles(nbformat.read(str(assignment.release_notebook), as_version=4))
    except (OSError, ValueError):
        return {}


def course_root_of(directory: Path) -> Path | None:
    """The nbgrader course folder whose submissions these are, or None.

    <root>/submitted (or <root> itself, holding submitted/) is nbgrader's layout: its scores go to
    <root>/gradebook.db and <root>/autograded/, where formgrader and `nbgrader export` look. Any
    other folder (a flat folder of notebooks, a test's temporary folder) leaves every gradebook
    alone unless --course-dir names one.
    """
    directory = directory.resolve()
    if directory.name == "submitted":
        return directory.parent
    if (directory / "submitted").is_dir():
        return directory
    return None


def _grade_directory(args, path: Path) -> int:
    from autograder import batch
    from autograder.batch import suite_tests
    assignment = _assignment(args.assignment, args.root)
    settings = _settings(args)
    from autograder import exporters
    try:
        exporters.select(args.export)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not Path(assignment.release_notebook).is_file():
        raise UsageError(f"release notebook {assignment.release_notebook} is missing "
                         f"(run `python -m autograder release {assignment.name}`)")
    course_dir = None if args.no_gradebook else (Path(args.course_dir) if args.course_dir
                                                 else course_root_of(path))
    out = Path(args.out) if args.out else Path("grades") / assignment.name
    try:
        report = batch.grade_directory(assignment, path, out=out, settings=settings, force=args.force,
                                       course_dir=course_dir, root=args.root,
                                       progress=not args.no_progress, placeholder_tests=suite_tests,
                                       exports=args.export)
    except batch.LayoutError as e:
        raise UsageError(str(e)) from None
    print(batch.summary(report))
    return 1 if report.export_errors else 0


# ---------------------------------------------------------------------------------------------
# the other commands
# ---------------------------------------------------------------------------------------------
def cmd_release(args) -> int:
    from autograder import release
    names = args.assignments or release.source_assignments(REPO)
    if not names:
        raise UsageError(f"no assignments in {REPO / 'solutions'}")
    for name in names:
        if not (REPO / "solutions" / name / f"{name}.ipynb").is_file():
            raise UsageError(f"no source notebook solutions/{name}/{name}.ipynb")
    status = 0
    for name in names:
        try:
            dest = release.generate(name, REPO)
        except RuntimeError as e:
            print(f"autograder: {e}", file=sys.stderr)
            return 1
        found = release.leaks(name, REPO)
        for line in found:
            print(f"LEAK {line}", file=sys.stderr)
        status = status or (1 if found else 0)
        print(f"released {name} -> {dest.relative_to(REPO)}" + (" (LEAKS, see above)" if found else ""))
    return status


def cmd_bundle(args) -> int:
    from autograder import bundle
    out = bundle.build(REPO / "course", Path(args.out))
    names = bundle.members(out)
    print(f"wrote {out} ({len(names)} files, {out.stat().st_size / 1024:.0f} KiB)")
    return 0


def cmd_demo(args) -> int:
    from autograder import demo
    settings = _settings(args)
    if args.setting_run_size is None:
        settings = settings.replace(run_size="tiny")     # the demo's notebooks run smoke-sized demonstrations
    return demo.main(out=Path(args.out), settings=settings, release=not args.no_release,
                     root=Path(args.root) if args.root else None, only=args.assignments or None)


def cmd_bench(args) -> int:
    from autograder import bench
    settings = _settings(args)
    return bench.main(args.assignment, n=args.n, out=Path(args.out) if args.out else None, settings=settings,
                      steady=args.steady)


def cmd_gradescope(args) -> int:
    from autograder import gradescope
    assignment = _assignment(args.assignment, args.root)
    settings = _settings(args)
    out = Path(args.out or f"{assignment.name}-gradescope.zip")
    path, names = gradescope.build(assignment, out, settings=settings)
    print(f"wrote {path} ({len(names)} files, {path.stat().st_size / 1024:.0f} KiB): upload it as the "
          f"assignment's autograder on Gradescope (Configure Autograder > Zip file upload)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from autograder.settings import add_arguments as add_settings_arguments
    p = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    g = sub.add_parser("grade", help="grade one notebook or a folder of submissions")
    g.add_argument("assignment", help="assignment name, e.g. 01_convolution")
    g.add_argument("path", help="a notebook, or a folder (nbgrader's submitted/ layout or flat <student>.ipynb); "
                                "'-': start the kernel, then read the job from stdin (the batch's pool)")
    g.add_argument("--json", action="store_true", help="one notebook: print the result as JSON")
    g.add_argument("--executed", metavar="PATH", help="one notebook: save the executed notebook here")
    g.add_argument("--root", metavar="DIR", help="where the assignment lives (default: this repository)")
    g.add_argument("--hide", metavar="DIR", action="append",
                   help="one notebook: another folder the student's kernel must not see (repeatable)")
    g.add_argument("--force", action="store_true", help="folder: grade again even if unchanged")
    g.add_argument("--out", metavar="DIR", help="folder: where results go (default grades/<assignment>)")
    g.add_argument("--no-gradebook", action="store_true",
                   help="folder: do not write nbgrader's gradebook.db and autograded/")
    g.add_argument("--course-dir", metavar="DIR",
                   help="folder: nbgrader course folder for gradebook.db and autograded/ (default: the "
                        "folder holding submitted/ when grading nbgrader's layout, else none)")
    g.add_argument("--no-progress", action="store_true", help="folder: no progress bar")
    from autograder import exporters
    g.add_argument("--export", action="append", metavar="FORMAT",
                   help=f"folder: output format(s), repeat or comma-separate (default: all of "
                        f"{', '.join(exporters.names())})")
    add_settings_arguments(g)
    g.set_defaults(func=cmd_grade)

    t = sub.add_parser("tests", help="list the hidden suite's tests and their points (collected, not run)")
    t.add_argument("assignment", help="assignment name, e.g. 01_convolution")
    t.add_argument("--json", action="store_true", help="print them as a JSON list (name, cell, max_points, description)")
    t.add_argument("--root", metavar="DIR", help="where the assignment lives (default: this repository)")
    t.set_defaults(func=cmd_tests)

    r = sub.add_parser("release", help="generate course/<a>/ from solutions/<a>/ with nbgrader")
    r.add_argument("assignments", nargs="*", help="default: every assignment in solutions/")
    r.set_defaults(func=cmd_release)

    b = sub.add_parser("bundle", help="zip what students get: course/ without caches and data")
    b.add_argument("--out", default="dlcourse-student.zip")
    b.set_defaults(func=cmd_bundle)

    d = sub.add_parser("demo", help="release, grade sample submissions of every assignment, show grades")
    d.add_argument("--out", default="demo-output", help="where the demo writes (default: ./demo-output)")
    d.add_argument("--no-release", action="store_true", help="use course/ as it is")
    d.add_argument("--root", metavar="DIR", help="the course root (default: this repository)")
    d.add_argument("assignments", nargs="*", help="default: every assignment in solutions/")
    add_settings_arguments(d)
    d.set_defaults(setting_workers=2)
    d.set_defaults(func=cmd_demo)

    be = sub.add_parser("bench", help="our grader against nbgrader autograde, and 1 vs 2 workers, side by side")
    be.add_argument("assignment", nargs="?", help="default: the first assignment with a bank")
    be.add_argument("--n", type=int, default=8, help="submissions each grader grades (>= 2)")
    be.add_argument("--out", help="keep the bench's files here (default: a temporary folder)")
    be.add_argument("--steady", action="store_true",
                    help="also grade 2n submissions with 1 and W workers: the time each added submission "
                         "takes, without the batch's fixed start-up, and the throughput ratio from it")
    add_settings_arguments(be)
    be.set_defaults(func=cmd_bench)

    gs = sub.add_parser("gradescope", help="write a Gradescope autograder zip (setup.sh, run_autograder, suite, release)")
    gs.add_argument("assignment", help="assignment name, e.g. 01_convolution")
    gs.add_argument("--out", metavar="FILE", help="default: <assignment>-gradescope.zip")
    gs.add_argument("--root", metavar="DIR", help="where the assignment lives (default: this repository)")
    add_settings_arguments(gs, batch=False)
    gs.set_defaults(func=cmd_gradescope)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"autograder: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autograder: interrupted", file=sys.stderr)
        return 130
