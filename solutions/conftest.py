"""nbval on the solution notebooks: at which run size, and how long each notebook took.

Why a run size here: every notebook reads its run size with `dl.run_size("small")`, which
$DLCOURSE_RUN_SIZE overrides (course/dlcourse/runsize.py). The test command (`python3 tasks.py
test`, which CI runs) executes every cell of every notebook at "tiny": each plot, each check and
each exercise's visible test still runs end to end, so a broken notebook or library fails at once,
while the training runs shrink to a few batches. Training at the students' default size ("small")
takes most of a 2-core machine's time for seven notebooks, so it is its own command,
`python3 tasks.py notebooks`, which runs them at "small" and prints each notebook's time (the
budget: about two minutes each on a laptop CPU).

$DLCOURSE_NBVAL_RUN_SIZE chooses the size (default "tiny"). It is put into the environment only
while nbval starts a notebook's kernel, so the project's other tests never see it.
"""
from __future__ import annotations

import os
from collections import defaultdict

import pytest

ENV_VAR = "DLCOURSE_NBVAL_RUN_SIZE"
_seconds: dict[str, float] = defaultdict(float)


def nbval_run_size() -> str:
    return os.environ.get(ENV_VAR, "").strip() or "tiny"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """The kernel of a notebook starts in the setup of its first cell: it inherits this variable."""
    old = os.environ.get("DLCOURSE_RUN_SIZE")
    os.environ["DLCOURSE_RUN_SIZE"] = nbval_run_size()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DLCOURSE_RUN_SIZE", None)
        else:
            os.environ["DLCOURSE_RUN_SIZE"] = old


def pytest_runtest_logreport(report):
    if report.nodeid.startswith("solutions/") and ".ipynb" in report.nodeid:
        _seconds[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _seconds:
        return
    terminalreporter.section(f"solution notebooks under nbval at run size {nbval_run_size()!r}")
    for notebook, seconds in sorted(_seconds.items()):
        terminalreporter.write_line(f"{seconds:7.1f} s  {notebook}")
