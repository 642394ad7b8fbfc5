"""The student's kernel session: run the notebook, then answer the hidden suite's calls.

One `KernelSession` per submission: the one object the runner (runner.py), the pytest plugin
(plugin.py) and the proxies (proxy.py) talk to. It starts an IPython kernel inside a `Sandbox`
(sandbox.py) and

  * executes the merged notebook cell by cell with nbclient (`run_notebook`): errors are allowed,
    each cell has a time limit and the notebook a total one, outputs are capped. A cell that runs
    too long is interrupted; if the kernel does not come back (or dies: sys.exit is harmless,
    os._exit, a segfault or the memory watchdog are not), the kernel is restarted and the cells that
    had completed are replayed, the offending cell skipped, within a restart budget;
  * sends the dispatcher (kernel_side/dispatcher.py) into the kernel as soon as it starts, before any cell
    runs (so it captures the library's functions, not the notebook's), then serves `request(...)`: the request
    goes as a `torch.save` file, the answer comes back as a file read with
    `torch.load(weights_only=True)`, so no object of the student's is ever unpickled here. A call
    that runs too long is interrupted (StudentTimeout; killed and restarted if it ignores the
    interrupt); a kernel that dies is restarted and replayed (StudentCrash) so later tests still run.

Student output during calls is never read: the call client has no iopub channel, and the notebook
client's is closed once the notebook has run, so nothing buffers what the kernel prints then.

The work is split by job, one file each, and this class only puts the parts together:

    kernel_process.py   the kernel process: start, clients, memory watchdog, restart and replay, stop
    notebook_cells.py   the notebook's cells: time limits, output budget, restarts in the notebook
    kernel_calls.py     the suite's calls: requests and results, time bounds, restarts per exercise
"""
from __future__ import annotations

from jupyter_core.utils import run_sync

from autograder.kernel_calls import KernelCalls
from autograder.kernel_process import MAX_MESSAGE, GraderError, KernelProcess, bootstrap_code
from autograder.notebook_cells import NotebookCells
from autograder.sandbox import Limits, Sandbox

__all__ = ["MAX_MESSAGE", "GraderError", "KernelSession", "bootstrap_code"]


class KernelSession:
    """A sandboxed kernel for one submission.

    Inputs: sandbox (opened Sandbox), limits (Limits).
    Public: start(); run_notebook(nb, labels) -> list[str] of student-facing notes; request(...) and
    check_forbid(...) for the proxy; close(). Figures: `timings` (kernel start seconds, notebook
    seconds, calls). Set by the runner and the plugin: `tampering`, `exercise`; read by the runner:
    `notes` (the call phase's, for the student), `tamper_events` (for the instructor).
    """

    def __init__(self, sandbox: Sandbox, limits: Limits | None = None):
        self.sandbox, self.limits = sandbox, limits or Limits()
        self.timings = {"kernel_start": [], "notebook": 0.0, "calls": 0, "call_seconds": 0.0}
        self.process = KernelProcess(self.sandbox, self.limits, self.timings)
        self.cells = NotebookCells(self.process, self.timings)
        self.calls = KernelCalls(self.process, self.timings)

    def start(self) -> None:
        """Start the kernel now (run_notebook otherwise starts it): a pre-started kernel has
        imported torch and the course library before the submission is known."""
        run_sync(self.process.start)()

    def run_notebook(self, nb, labels: list[str]) -> list[str]:
        """Execute `nb` in place (outputs filled in); returns notes for the student."""
        return run_sync(self.cells.run)(nb, labels)

    def check_forbid(self, forbid) -> None:
        self.calls.check_forbid(forbid)

    def request(self, request: dict, *, label: str, timeout: float | None = None, forbid=()):
        """Send one request to the kernel and return its decoded value (or raise a StudentFailure)."""
        return self.calls.request(request, label=label, timeout=timeout, forbid=forbid)

    def close(self) -> None:
        self.process.close()

    # What the runner and the plugin set and read, kept by the part that uses it.
    @property
    def exercise(self) -> str | None:
        return self.calls.exercise

    @exercise.setter
    def exercise(self, value: str | None) -> None:
        self.calls.exercise = value

    @property
    def tampering(self) -> list[str]:
        return self.calls.tampering

    @tampering.setter
    def tampering(self, value: list[str]) -> None:
        self.calls.tampering = value

    @property
    def tamper_events(self) -> list[str]:
        return self.calls.tamper_events

    @property
    def notes(self) -> list[str]:
        return self.calls.notes
