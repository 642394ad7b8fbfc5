"""The student's kernel session: run the notebook, then answer the hidden suite's calls.

One `KernelSession` per submission. It starts an IPython kernel inside a `Sandbox` (sandbox.py),
talking to it over zmq IPC sockets in the sandbox's private directory, and

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
"""
from __future__ import annotations

import asyncio
import io
import logging
import math
import secrets
import threading
import time
from pathlib import Path
from queue import Empty

import nbformat
import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelManager
from jupyter_client.session import Session
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, CellTimeoutError, DeadKernelError

from autograder.kernel_side import dispatcher as kernel_side
from autograder.proxy import (BadResult, ForbiddenCall, MissingName, StudentCrash, StudentError, StudentTimeout,
                              check_result, decode_result)
from autograder.sandbox import Limits, Sandbox

log = logging.getLogger("autograder.kernel")
MAX_MESSAGE = 128 * 2**20


class GraderError(RuntimeError):
    """The grader itself cannot work (the kernel does not start at all): not the student's fault."""


# Only PUBLIC APIs of jupyter_client and nbclient are used here, so that a minor upgrade of either
# cannot silently change how a submission is graded; tests/test_engine_apis.py pins the behaviour
# relied on: format_kernel_cmd() gives the argv that is launched and write_connection_file() runs
# before the launch; NotebookClient raises CellTimeoutError at a cell's `timeout` (with
# interrupt_on_timeout off), raises DeadKernelError for a dead kernel, passes every iopub message of
# the cell through process_message() (which raises CellExecutionComplete at the kernel's "idle") and
# every output through output(); execute_cell() accepts `execution_count`.
class _SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command is the sandbox's, with an IPC connection file it owns."""

    sandbox: Sandbox | None = None

    def format_kernel_cmd(self, extra_arguments=None):
        return self.sandbox.kernel_command(Path(self.connection_file))

    def write_connection_file(self, **kw):
        super().write_connection_file(**kw)
        self.sandbox._give(Path(self.connection_file))      # the kernel's uid must read it


class _CellRunner(NotebookClient):
    """nbclient, with a cap on the outputs kept (shared by the runners of one notebook: `budget`).

    A runner whose cell timed out is not used again: nbclient leaves that cell's output poller
    running on the runner's client, so the session gives the next cells a new runner and client."""

    def __init__(self, nb, km, kc, *, budget: dict, **kw):
        super().__init__(nb, km=km, allow_errors=True, record_timing=False,
                         interrupt_on_timeout=False, raise_on_iopub_timeout=False, **kw)
        self.kc = kc                # set after __init__, which resets it
        self.outputs_complete = True
        self.budget = budget        # {"bytes": left for all outputs, "truncated": set of cell indices}

    def process_message(self, msg, cell, cell_index):
        try:
            return super().process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            self.outputs_complete = True      # the kernel's "idle" arrived: no output was lost
            raise

    @property
    def output_budget(self) -> int:
        return self.budget["bytes"]

    @output_budget.setter
    def output_budget(self, value: int) -> None:
        self.budget["bytes"] = value

    def output(self, outs, msg, display_id, cell_index):
        size = _message_size(msg)
        if msg["msg_type"] == "stream" and size > self.output_budget > 0:
            keep = self.output_budget                      # the beginning of a long print is kept
            msg = {**msg, "content": {**msg["content"], "text": msg["content"]["text"][:keep]}}
            super().output(outs, msg, display_id, cell_index)
            size, self.output_budget = 1, 0
        if msg["msg_type"] != "error" and size > self.output_budget:
            if cell_index not in self.budget["truncated"]:
                self.budget["truncated"].add(cell_index)
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text="[grader] output truncated: the notebook's outputs exceeded the size limit\n"))
            self.output_budget = 0
            return None
        self.output_budget -= size
        return super().output(outs, msg, display_id, cell_index)


def _message_size(msg) -> int:
    content = msg.get("content", {})
    if "text" in content:
        return len(content["text"])
    if "data" in content:
        return sum(len(str(v)) for v in content["data"].values())
    if "traceback" in content:
        return sum(len(line) for line in content["traceback"])
    return 0


def bootstrap_code(token: str, directory: Path) -> str:
    """The code that installs kernel_side's dispatcher in the kernel without leaving other globals."""
    source = Path(kernel_side.__file__).read_text()
    return (f"(lambda ns: (exec(compile({source!r}, '<dlcourse-grader>', 'exec'), ns), "
            f"ns['install']({token!r}, {str(directory)!r})))({{'__name__': '_dlcourse_grader'}})")


class KernelSession:
    """A sandboxed kernel for one submission.

    Inputs: sandbox (opened Sandbox), limits (Limits).
    Public: run_notebook(nb, labels) -> list[str] of student-facing notes; request(...) for the
    proxy; close(). Figures: `timings` (kernel start seconds, notebook seconds, calls).
    """

    def __init__(self, sandbox: Sandbox, limits: Limits | None = None):
        self.sandbox, self.limits = sandbox, limits or Limits()
        self.km = self.kc = self.ckc = None
        self.run_dir: Path | None = None
        self.token = "_dlcourse_grader_" + secrets.token_hex(8)
        self.replay: list[tuple[str, str]] = []   # (label, source) of the cells that completed, in order
        self.replay_notes: list[str] = []
        self.nb_restarts = 0
        # The suite's restarts are counted per exercise (the test cell being graded, set by the
        # plugin): an exercise whose calls keep crashing the kernel spends its own budget, and the
        # next exercise still gets a fresh kernel and its own restarts.
        self.exercise: str | None = None
        self.call_restarts: dict[str | None, int] = {}
        self.exhausted: set[str | None] = set()
        self.broken: str | None = None     # why calls cannot be served any more
        self.bootstrapped = self.guard_warm = False
        self.notebook_done = False         # after the notebook, the output channel is closed
        self.tampering: list[str] = []     # set by the runner: suspicious names in student code
        self.tamper_events: list[str] = []  # guard tampering seen during calls (for the instructor)
        self.notes: list[str] = []         # student-facing notes from the call phase
        self.hung: dict[tuple, str] = {}   # function -> the message of its call that timed out
        self._suite_deadline: float | None = None   # set by the first call: start + limits.suite_timeout
        self.timings = {"kernel_start": [], "notebook": 0.0, "calls": 0, "call_seconds": 0.0}
        self._request_id = 0
        self._memory_exceeded = False
        self._watch_stop = threading.Event()
        self._kill_lock = threading.Lock()
        # Our zmq sockets refuse messages over MAX_MESSAGE (zmq drops the connection; see
        # _reconnect_outputs), so a gigabyte print cannot exhaust the grader's memory.
        self._zmq = zmq.asyncio.Context()
        self._zmq.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self._watchdog: threading.Thread | None = None

    # ---------------------------------------------------------------- kernel life cycle
    def start(self) -> None:
        """Start the kernel now (run_notebook otherwise starts it): a pre-started kernel has
        imported torch and the course library before the submission is known."""
        run_sync(self._start)()

    async def _start(self) -> None:
        await self._stop()
        self.run_dir = self.sandbox.new_run_dir()
        self._memory_exceeded = False
        km = _SandboxKernelManager(transport="ipc", ip=str(self.run_dir / "k"),
                                   connection_file=str(self.run_dir / "kernel.json"), kernel_name="python3")
        km.sandbox = self.sandbox
        log_fd = self.sandbox.create_file(self.run_dir / "kernel.log")   # handed to the kernel process
        t0 = time.monotonic()
        try:
            try:
                await km.start_kernel(env=self.sandbox.kernel_env(self.run_dir), cwd=str(self.sandbox.home),
                                      stdout=log_fd, stderr=log_fd)
            finally:     # remembered for killing and the watchdog, also when the start failed
                pid = getattr(km.provisioner, "pid", None)
                if pid:
                    self.sandbox.track(pid)
            kc = await self._new_client(km, iopub=True)
        except Exception as e:
            tail = self._kernel_log_tail()
            raise GraderError(f"the student kernel did not start: {e!r}\n{tail}") from None
        finally:
            log_fd.close()
        ckc = await self._new_client(km, iopub=False)
        if self.notebook_done:      # a restart during the calls: nobody reads the outputs any more
            kc.stop_channels()
        self.km, self.kc, self.ckc = km, kc, ckc
        self.bootstrapped = self.guard_warm = False
        self._start_watchdog()
        # The dispatcher goes in before any student code: what it captures (torch.save/load, the
        # thread starter, a snapshot of the modules it runs on) is the library's, not the notebook's.
        status = await self._run_quiet(bootstrap_code(self.token, self.run_dir), self.limits.startup_timeout)
        if status != "ok":
            await self._stop()
            raise GraderError(f"the grader's helper could not be installed in a new kernel ({status})\n"
                              f"{self._kernel_log_tail()}")
        self.bootstrapped = True
        self.timings["kernel_start"].append(round(time.monotonic() - t0, 3))

    async def _new_client(self, km, *, iopub: bool):
        """A client of `km`'s kernel with a session of its own: two clients sharing one session id
        would share one zmq routing identity, and the kernel's shell socket answers only one of
        them. With iopub (the notebook's client), returns once the kernel answers and its output
        channel is connected; without (the call client), only the shell channel is opened."""
        client = km.client(context=self._zmq,
                           session=Session(key=km.session.key, signature_scheme=km.session.signature_scheme))
        client.allow_stdin = False
        if iopub:
            client.start_channels(stdin=False, control=False)
            await client.wait_for_ready(timeout=self.limits.startup_timeout)
        else:
            client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        return client

    async def _stop(self) -> None:
        with self._kill_lock:          # a watchdog that has not fired yet now never will for this kernel
            self._watch_stop.set()
        for client in (self.kc, self.ckc):
            if client is not None:
                client.stop_channels()
        self.sandbox.kill_all()
        if self.km is not None:
            try:
                await self.km.shutdown_kernel(now=True)
            except Exception:                      # already dead; only the clean-up matters
                pass
            await self.km.cleanup_resources()
        self.km = self.kc = self.ckc = None

    def _start_watchdog(self) -> None:
        """Kill the kernel when the submission's processes together hold more than memory_mb."""
        self._watch_stop = stop = threading.Event()
        limit = self.limits.memory_mb * 2**20

        def watch():    # also lets mode "none" remember the kernel's children (sandbox.processes)
            while not stop.wait(0.5):
                if self.sandbox.memory_bytes() > limit:
                    with self._kill_lock:
                        if not stop.is_set():       # still the kernel this watchdog was started for
                            self._memory_exceeded = True
                            self.sandbox.kill_all()
                    return

        self._watchdog = threading.Thread(target=watch, name="dlcourse-memory-watchdog", daemon=True)
        self._watchdog.start()

    def _left_too_much_memory(self) -> bool:
        """Checked after every cell, so that a cell which keeps more than memory_mb alive is the one
        blamed (and left out of replays), not whichever cell or call runs when the watchdog wakes."""
        if self.sandbox.memory_bytes() <= self.limits.memory_mb * 2**20:
            return False
        with self._kill_lock:
            self._watch_stop.set()
            self._memory_exceeded = True
            self.sandbox.kill_all()
        return True

    def _kernel_log_tail(self, n: int = 2000) -> str:
        try:
            data = self.sandbox.read_file(self.run_dir / "kernel.log", 64 * 2**20, by_kernel=False)
            return data[-n:].decode(errors="replace")
        except (OSError, ValueError):
            return ""

    async def _alive(self) -> bool:
        return self.km is not None and await self.km.is_alive()

    async def _wait_reply(self, client, msg_id: str, timeout: float) -> dict | str:
        """The shell reply to msg_id, or "dead" / "timeout"."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                msg = await client.shell_channel.get_msg(timeout=min(0.5, left))
            except Empty:
                if not await self._alive():
                    return "dead"
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    async def _interrupt(self) -> bool:
        """SIGINT the kernel; True if it answers again within the grace period."""
        try:
            await self.km.interrupt_kernel()
        except Exception:
            return False
        msg_id = self.ckc.kernel_info()
        reply = await self._wait_reply(self.ckc, msg_id, self.limits.interrupt_grace)
        return isinstance(reply, dict)

    async def _run_quiet(self, code: str, timeout: float) -> str:
        """Run code without keeping outputs: 'ok', 'error', 'timeout' or 'dead'."""
        msg_id = self.ckc.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        reply = await self._wait_reply(self.ckc, msg_id, timeout)
        return reply if isinstance(reply, str) else reply["content"].get("status", "error")

    async def _restart_and_replay(self, deadline: float | None = None) -> bool:
        """Fresh kernel, then the completed cells again. A cell that kills or hangs the kernel during
        the replay (one that left a huge tensor behind, say) is dropped from the replay and the
        kernel started once more, so one bad cell cannot make every later restart fail too.
        Returns False if the replay could not be completed."""
        for attempt in range(self.limits.restarts + 1):
            try:
                await self._start()
            except GraderError as e:   # it started once: what changed since is the submission's doing
                log.error("kernel restart failed: %s", e)
                self.broken = "the kernel could not be started again after it had crashed"
                return False
            failed = None
            for i, (label, code) in enumerate(self.replay):
                left = self.limits.cell_timeout if deadline is None else min(self.limits.cell_timeout,
                                                                             deadline - time.monotonic())
                if left <= 0:
                    return False
                if await self._run_quiet(code, left) in ("dead", "timeout") or self._left_too_much_memory():
                    failed = i
                    break
            if failed is None:
                return True
            label, _ = self.replay.pop(failed)
            self.replay_notes.append(f"{label} was left out when the notebook was run again after a restart "
                                     f"(it crashed or hung the kernel again)")
            log.warning("replay: %s failed and was dropped", label)
        return False

    # ---------------------------------------------------------------- the notebook
    def run_notebook(self, nb, labels: list[str]) -> list[str]:
        """Execute `nb` in place (outputs filled in); returns notes for the student."""
        return run_sync(self._run_notebook)(nb, labels)

    async def _run_notebook(self, nb, labels) -> list[str]:
        lim, notes = self.limits, []
        if self.km is None:
            await self._start()
        t0 = time.monotonic()
        deadline = t0 + lim.total_timeout
        budget = {"bytes": lim.output_bytes, "truncated": set()}

        def new_runner():
            # iopub_timeout: how long a cell's last outputs may still arrive after its reply (decoding
            # a big print takes a while on a busy machine); the cell's own time limit is separate.
            return _CellRunner(nb, self.km, self.kc, budget=budget,
                               iopub_timeout=max(1, math.ceil(lim.output_grace)))
        runner = new_runner()
        count = 0
        code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
        for pos, index in enumerate(code_cells):
            cell, label = nb.cells[index], labels[index]
            left = deadline - time.monotonic()
            if left < 1:
                notes.append(f"the notebook ran longer than {lim.total_timeout:g} s in total; {label} and the "
                             f"{len(code_cells) - pos - 1} code cells after it were not run")
                break
            runner.timeout = max(1, math.floor(min(lim.cell_timeout, left)))
            count += 1
            runner.outputs_complete = False
            try:
                await runner.async_execute_cell(cell, index, execution_count=count)
                if self._left_too_much_memory():
                    raise DeadKernelError("memory")
                if not runner.outputs_complete:
                    await self._reconnect_outputs(cell)
                    runner = new_runner()
                    notes.append(f"{label}: some of its outputs were too large and were dropped")
            except CellTimeoutError:
                limit = runner.timeout
                what = (f"ran longer than {limit:g} s" if limit >= lim.cell_timeout else
                        f"was still running when the notebook's total time ({lim.total_timeout:g} s) ran out")
                _add_grader_output(cell, f"this cell {what} and was stopped")
                if await self._interrupt():
                    notes.append(f"{label} {what} and was interrupted")
                    await self._replace_output_client()
                    runner = new_runner()
                    continue
                notes.append(f"{label} {what} and was stopped (the kernel was restarted and the cells "
                             f"before it were run again)")
                if not await self._restart_in_notebook(notes, deadline):
                    break
                runner = new_runner()
                continue
            except DeadKernelError:
                why = self._death_reason()
                _add_grader_output(cell, f"the kernel died while running this cell: {why}")
                notes.append(f"{label}: {why}; the kernel was restarted and the cells before it were run again")
                if not await self._restart_in_notebook(notes, deadline):
                    break
                runner = new_runner()
                continue
            self.replay.append((label, cell.source))
            error = next((o for o in cell.outputs if o.get("output_type") == "error"
                          and o.get("ename") != "GraderStop"), None)
            if error is not None:
                evalue = _short(error.get("evalue", ""))
                notes.append(f"{label} raised {error.get('ename', 'an error')}" + (f": {evalue}" if evalue else ""))
        self.timings["notebook"] = round(time.monotonic() - t0, 3)
        # Close the output channel: what the kernel prints during the suite's calls would otherwise
        # pile up in this process's zmq queue, unread (a flood grew the grader to gigabytes).
        self.notebook_done = True
        if self.kc is not None:
            self.kc.stop_channels()
        notes += self.replay_notes
        self.replay_notes = []
        return notes

    async def _reconnect_outputs(self, cell) -> None:
        """The kernel's "idle" never came: a message over MAX_MESSAGE made zmq drop the output
        channel (it does not reconnect by itself). Connect a fresh one for the next cells."""
        log.warning("outputs of a cell were lost (a message over %d MB?); reconnecting", MAX_MESSAGE >> 20)
        _add_grader_output(cell, "some outputs of this cell were too large and were dropped")
        await self._replace_output_client()

    async def _replace_output_client(self) -> None:
        """A new notebook client for the next cells. The old one is closed, which also ends the
        output poller nbclient leaves running after a timeout (it would otherwise read, and drop,
        the next cells' outputs)."""
        old = self.kc
        self.kc = await self._new_client(self.km, iopub=True)
        old.stop_channels()
        await asyncio.sleep(0)                  # let the closed channel's poller end

    async def _restart_in_notebook(self, notes, deadline) -> bool:
        self.nb_restarts += 1
        if self.nb_restarts > self.limits.restarts:
            notes.append(f"the kernel was restarted {self.limits.restarts} times; the rest of the notebook "
                         f"was not run")
            await self._stop()
            return False
        ok = await self._restart_and_replay(deadline)
        if self.broken:
            notes.append(f"{self.broken}; the rest of the notebook was not run")
            return False
        if not ok:
            notes.append("after the restart, the earlier cells could not all be run again")
        return True

    def _death_reason(self) -> str:
        if self._memory_exceeded:
            return f"it used more than {self.limits.memory_mb} MB of memory"
        return "the kernel crashed (exit, segmentation fault, or out of resources)"

    # ---------------------------------------------------------------- calls from the suite
    def check_forbid(self, forbid) -> None:
        unknown = [g for g in forbid if g not in kernel_side.GROUPS]
        if unknown:
            raise ValueError(f"unknown forbidden op group(s) {unknown}; known: {sorted(kernel_side.GROUPS)}")

    def request(self, request: dict, *, label: str, timeout: float | None = None, forbid=()):
        """Send one request to the kernel and return its decoded value (or raise a StudentFailure)."""
        if forbid and self.tampering:
            raise ForbiddenCall(f"{label} was not graded: the notebook uses torch internals that can switch off "
                                f"the grader's checks ({', '.join(self.tampering[:5])})")
        # A hang costs one timeout: a function whose call timed out fails at once, with the same
        # message, every later time it is called (a hidden suite calls one function many times).
        key = _function_key(request, label)
        if key in self.hung:
            raise StudentTimeout(self.hung[key])
        t0 = time.monotonic()
        if self._suite_deadline is None:
            self._suite_deadline = t0 + self.limits.suite_timeout
        left = self._suite_deadline - t0
        if left < 1:
            raise StudentTimeout(f"{label} was not called: the time for all of the grader's calls to your "
                                 f"notebook ({self.limits.suite_timeout:g} s) ran out")
        limit = timeout or self.limits.call_timeout
        try:
            result = run_sync(self._request)(request, label, min(limit, left))
        except StudentTimeout as e:
            if key is not None and getattr(e, "timed_out", False):
                self.hung[key] = str(e)
            raise
        finally:
            self.timings["calls"] += 1
            self.timings["call_seconds"] += time.monotonic() - t0
        return self._interpret(result, label)

    def _seconds_left(self, at_most: float) -> float:
        """at_most, or less when the suite's time (limits.suite_timeout) runs out sooner."""
        if self._suite_deadline is None:
            return at_most
        return max(0.0, min(at_most, self._suite_deadline - time.monotonic()))

    async def _ensure_ready(self) -> None:
        if self.broken:
            raise StudentCrash(self.broken)
        if self.exercise in self.exhausted:
            raise StudentCrash(self._exhausted_note())
        if self.km is None or not await self._alive():
            await self._restart_for_calls("the kernel was not running")
        if not self.bootstrapped:
            status = await self._run_quiet(bootstrap_code(self.token, self.run_dir), max(1.0, self._seconds_left(60)))
            if status != "ok":
                self.broken = ("the grader's helper could not run in your kernel (did the notebook replace "
                               "Python built-ins or torch functions?)")
                raise StudentCrash(self.broken)
            self.bootstrapped = True

    def _exhausted_note(self) -> str:
        where = f" while grading {self.exercise}" if self.exercise else ""
        return (f"the kernel was restarted {self.limits.restarts} times{where}; not restarted again for "
                f"this exercise")

    async def _restart_for_calls(self, why: str) -> None:
        used = self.call_restarts[self.exercise] = self.call_restarts.get(self.exercise, 0) + 1
        if used > self.limits.restarts:
            self.exhausted.add(self.exercise)
            await self._stop()           # the next exercise starts a fresh kernel on its own budget
            raise StudentCrash(self._exhausted_note())
        if not await self._restart_and_replay(self._suite_deadline):
            if self.broken:
                raise StudentCrash(self.broken)
            self.notes.append("after a restart during grading, the notebook's cells could not all be run again")
        self.notes += self.replay_notes
        self.replay_notes = []
        log.info("kernel restarted for calls: %s", why)

    async def _request(self, request: dict, label: str, timeout: float) -> dict:
        import torch
        await self._ensure_ready()
        if request.get("forbid") and not self.guard_warm:
            self.guard_warm = True
            await self._run_quiet(f"{self.token}.warm()", max(1.0, self._seconds_left(120)))
        self._request_id += 1
        rid = f"{self._request_id}_{secrets.token_hex(6)}"     # unguessable: nothing can be planted there
        buffer = io.BytesIO()
        torch.save(request, buffer)
        try:
            self.sandbox.write_file(self.run_dir / f"req_{rid}.pt", buffer.getvalue())
        except OSError as e:         # the student's code removed or locked the kernel's working folder
            await self._restart_for_calls(f"request file: {e}")
            raise StudentCrash(f"{label} could not be called: your code damaged the kernel's working folder; "
                               f"the kernel was restarted") from None
        msg_id = self.ckc.execute(f"{self.token}({rid!r})", silent=True, store_history=False,
                                  allow_stdin=False, stop_on_error=False)
        reply = await self._wait_reply(self.ckc, msg_id, timeout)
        if reply == "timeout":
            error = StudentTimeout(f"{label} did not finish within {timeout:g} s and was stopped")
            error.timed_out = True
            if not await self._interrupt():
                try:
                    await self._restart_for_calls(f"{label} ignored the interrupt")
                except StudentCrash:
                    pass                       # later calls find the kernel broken; this one timed out
            raise error
        if reply == "dead":
            why = self._death_reason()
            await self._restart_for_calls(why)
            raise StudentCrash(f"{label}: {why}; the kernel was restarted")
        if reply["content"].get("status") != "ok":
            # The dispatcher itself failed (student code broke what it needs): start afresh.
            await self._restart_for_calls(f"the dispatcher failed: {reply['content'].get('ename')}")
            raise StudentError(f"{label} could not be called: the grader's helper in your kernel failed "
                               f"({_short(reply['content'].get('ename', ''))}); the kernel was restarted")
        return self._read_result(rid, label)

    def _read_result(self, rid: str, label: str) -> dict:
        import torch
        path = self.run_dir / f"res_{rid}.pt"
        try:
            data = self.sandbox.read_file(path, self.limits.result_mb * 2**20)
        except ValueError as e:
            raise BadResult(f"{label}: the result could not be read back ({e})") from None
        try:
            result = torch.load(io.BytesIO(data), weights_only=True)
        except Exception as e:  # UnpicklingError and friends: not plain data
            raise BadResult(f"{label} returned data the grader does not accept ({_unsupported(e)}); "
                            f"expected tensors, numbers, strings or lists/tuples/dicts of these") from None
        finally:
            try:
                self.sandbox.remove_file(path)
            except OSError:
                pass
        result = check_result(result, label, self.limits.result_mb * 2**20)
        if not isinstance(result, dict) or not isinstance(result.get("status"), str):
            raise BadResult(f"{label}: the result came back in an unexpected form")
        if result.get("restored"):      # for the instructor: the notebook had replaced grading internals
            restored = result["restored"]
            names = ", ".join(str(n) for n in restored[:5]) if isinstance(restored, list) else ""
            self.tamper_events.append(_short(f"{label}: the notebook had replaced torch, pickle or process internals "
                                             f"(put back before the call): {names}"))
        return result

    def _interpret(self, result: dict, label: str):
        status = result["status"]
        if status == "ok":
            return decode_result(result.get("value"), self, label)
        if status == "missing":
            raise MissingName(f"the notebook does not define {_short(result.get('name', label), 80)} (did its cell "
                              f"run without errors?)")
        if status == "interrupted":
            raise StudentTimeout(f"{label} was interrupted")
        if status == "forbidden":
            ops = result.get("ops")
            found = [(str(item[0])[:200], str(item[1])[:50]) for item in (ops if isinstance(ops, list) else [])[:20]
                     if isinstance(item, (list, tuple)) and len(item) == 2]
            calls = sorted({op for op, group in found if group == "call"})
            if calls:
                raise ForbiddenCall(f"{label} called {_short(', '.join(calls), 300)}, which this exercise does not "
                                    f"allow: write this part yourself")
            ops = ", ".join(sorted({f"{op} ({group})" for op, group in found}))
            raise ForbiddenCall(f"{label} used a forbidden operation: {_short(ops, 300)}")
        if status == "tampered":
            self.tamper_events.append(f"{label}: {_short(result.get('reason', ''))}")
            raise ForbiddenCall(f"{label}: the grading guard was disabled ({_short(result.get('reason', ''))})")
        if status == "error":
            type_name = _short(result.get("type", "Exception"), 100)
            message = _short(result.get("message", ""), 500)
            tb = [str(x) for x in result.get("traceback", [])][-8:]
            text = f"{label} raised {type_name}: {message}"
            if type_name == "NotImplementedError":
                text += " (not implemented yet?)"
            if tb:
                text += "\n" + "\n".join("  " + line for line in tb)
            raise StudentError(text, type_name=type_name, error_message=message, traceback=tb)
        raise BadResult(f"{label}: the result came back in an unexpected form")

    # ---------------------------------------------------------------- end
    def close(self) -> None:
        if self._zmq.closed:
            return
        try:
            run_sync(self._stop)()
        finally:
            self._watch_stop.set()
            self._zmq.destroy(linger=0)


def _function_key(request: dict, label: str) -> tuple | None:
    """What counts as "the same function" for a call request: a notebook global by name (and
    method), an object's method by its type and name (every instance of a class shares the code
    that hung); None for requests that are not calls."""
    if request.get("op") != "call":
        return None
    kind, key = request["target"]
    return ("name", key, request.get("method")) if kind == "name" else ("object", label)


def _add_grader_output(cell, text: str) -> None:
    cell.setdefault("outputs", []).append(nbformat.v4.new_output(
        "error", ename="GraderStop", evalue=text, traceback=[f"[grader] {text}"]))


def _short(text, n: int = 300) -> str:
    text = str(text).replace("\n", " ").strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def _unsupported(error: Exception) -> str:
    """The type named in a weights_only refusal, e.g. 'an object of type __main__.Liar'."""
    import re
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    return f"an object of type {m.group(1)}" if m else "not plain data"
