"""One run of the batch grader over a folder of submissions: `Batch` puts the parts together.

It finds the submissions (submissions.py), grades up to `workers` of them at once in worker threads
(grading.py, each in its own grading subprocess from a pool of pre-started ones, grader_process.py
and autograder/pool.py), and, in the main thread only, stores each result (store.py), logs the
faults that are not the student's and builds every output format from the stored results
(report.py, exports.py). On SIGTERM/SIGINT/SIGHUP or any error it kills the running graders and
starts no more, so a batch stopped at any point leaves only complete results behind.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from autograder import zygote
from autograder.batch.exports import Exports
from autograder.batch.grader_process import Children, grader_env, pooled_command
from autograder.batch.grading import SubmissionGrader
from autograder.batch.report import BatchReport, FaultLog, readable_suites_warning
from autograder.batch.store import ResultStore
from autograder.batch.submissions import find_submissions
from autograder.exporters import Entry
from autograder.pool import GraderPool, prestart
from autograder.settings import Settings


class Batch:
    """One run of the batch grader (see `grade_directory`, which makes and runs one)."""

    def __init__(self, assignment, directory, *, out=None, settings: Settings | None = None, workers=None,
                 force=False, course_dir=None, root=None, timeout=None, progress=True,
                 placeholder_tests=None, exports=None):
        """settings: limits and batch options (default Settings(workers=1)); `workers` and `timeout`
        (seconds per submission) override the settings' values. exports: names of output formats
        (autograder/exporters; None: all)."""
        self.assignment, self.name = assignment, assignment.name
        self.directory = Path(directory)
        out = Path(out) if out is not None else Path("grades") / self.name
        settings = settings if settings is not None else Settings(workers=1)
        if workers is not None:
            settings = settings.replace(workers=max(1, int(workers)))
        if timeout is not None:
            settings = settings.replace(submission_timeout=timeout)
        self.settings = settings
        self.workers = settings.workers
        self.root = root
        self.progress = progress
        self.release_path = Path(assignment.release_notebook)
        self.store = ResultStore(out)
        self.exports = Exports(self.name, self.release_path, out, self.directory,
                               Path(course_dir) if course_dir is not None else None, exports)
        self.children = Children()
        self.stopping = threading.Event()
        self.grader = SubmissionGrader(assignment, self.store, settings, root=root, force=force,
                                       placeholder_tests=placeholder_tests, children=self.children,
                                       stopping=self.stopping)

    @property
    def out(self) -> Path:
        return self.store.out

    def run(self) -> BatchReport:
        start = time.perf_counter()
        subs = find_submissions(self.directory, self.name, self.release_path.name)
        self.out.mkdir(parents=True, exist_ok=True)
        command = pooled_command(self.name, root=self.root, settings=self.settings, hide=(self.directory, self.out))
        to_grade = self.grader.to_grade(subs)
        if to_grade:
            # The kernels' zygote (zygote.py) and the graders' fork server (forkgrader.py) each
            # import torch in a process of their own; started first, their imports overlap the
            # suite's collection below instead of following it. Every grader forked from now on
            # forks its kernel from this zygote instead of importing torch in one of its own.
            zygote.for_assignment(self.assignment, self.settings.limits)
            prestart(command)
        self.grader.template                            # noqa: B018 - collect the suite now, once
        # As many graders starting ahead as run at once: while one submission is graded, the next
        # one's grader and sandboxed kernel start (each serves one submission only, see pool.py).
        # The first ones start now, so that their kernels start while this process opens the
        # gradebook below (nbgrader's import and database: about 0.6 s).
        self.grader.pool = GraderPool(command, env=grader_env(), spare=self.workers, on_start=self.children.add,
                                      on_end=self.children.discard)
        self.grader.pool.expect(to_grade)
        try:
            report = BatchReport({}, [], [], [], [], [], self.out, 0.0)
            warning = readable_suites_warning(self.settings)
            if warning:
                report.warnings.append(warning)
                print(f"autograder: {warning}", file=sys.stderr, flush=True)
            log = FaultLog(self.out, self.name, self.settings, report.warnings)
            report.log = log.path
            self.exports.begin(self.grader.template)
        except BaseException:
            self.grader.pool.close()
            raise
        entries: dict[str, Entry] = {}
        bar = tqdm(total=len(subs), desc=f"grading {self.name}", unit="nb", file=sys.stderr,
                   disable=not self.progress, dynamic_ncols=True)
        restore = self.install_signal_handlers()
        pool = ThreadPoolExecutor(max_workers=self.workers)
        try:
            futures = {pool.submit(self.grader.grade_one_safely, s): s for s in subs}
            for fut in as_completed(futures):
                sub = futures[fut]
                outcome, result, executed = fut.result()
                self.store.store(sub, outcome, result, executed)
                if outcome != "skipped":
                    log.record(sub.student, result)
                entries[sub.student] = self.store.entry(sub, result)
                report.export_errors += self.exports.student(entries[sub.student])
                report.results[sub.student] = result
                getattr(report, outcome).append(sub.student)
                bar.set_postfix_str(f"{sub.student}: {result.score:g}/{result.max_score:g}")
                bar.update(1)
        except BaseException:
            self.stopping.set()                 # queued submissions start no grader
            self.children.kill_all()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.grader.pool.close()
            bar.close()
            restore()
            report.export_errors += self.exports.end([entries[s.student] for s in subs if s.student in entries])
            log.close()
        report.outputs = self.exports.outputs()
        self.store.clean_tmp()
        report.seconds = time.perf_counter() - start
        return report

    def install_signal_handlers(self):
        """On SIGTERM/SIGINT/SIGHUP kill the running graders too, then stop (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {}

        def handler(signum, frame):
            self.children.kill_all()
            raise KeyboardInterrupt(f"stopped by signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            old[sig] = signal.signal(sig, handler)

        def restore():
            for sig, h in old.items():
                signal.signal(sig, h)
        return restore


def grade_directory(assignment, directory, **kwargs) -> BatchReport:
    """Grade every submission under `directory` (see `Batch` for the options). -> BatchReport."""
    return Batch(assignment, directory, **kwargs).run()
