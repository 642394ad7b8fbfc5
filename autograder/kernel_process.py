"""The student's kernel process: started in the sandbox, watched, restarted, stopped.

One kernel at a time per submission (`KernelProcess`). It is an IPython kernel started inside a
`Sandbox` (sandbox.py), talking to the grader over zmq IPC sockets in the sandbox's private
directory, with two clients: the notebook's (with the output channel, see notebook_cells.py) and the
suite's calls' (shell only, see kernel_calls.py). The dispatcher (kernel_side/dispatcher.py) goes in
as soon as the kernel starts, before any cell runs, so it captures the library's functions, not the
notebook's.

What can end a kernel (a crash, os._exit, a segfault, the memory watchdog) is handled here the same
way for the notebook and for the calls: `restart_and_replay` starts a fresh kernel and runs the cells
that had completed again, dropping from the replay a cell that kills or hangs the kernel again.
`death_reason` says to the student why a kernel died.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import threading
import time
import uuid
from pathlib import Path
from queue import Empty

import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelManager
from jupyter_client.session import Session
from jupyter_core.utils import run_sync

from autograder import zygote
from autograder.zygote import BOOTSTRAP_MODULE, DISPATCHER_SOURCE
from autograder.sandbox import Limits, Sandbox

log = logging.getLogger("autograder.kernel")
MAX_MESSAGE = 128 * 2**20


class GraderError(RuntimeError):
    """The grader itself cannot work (the kernel does not start at all): not the student's fault."""


# Only PUBLIC APIs of jupyter_client and nbclient are used here and in notebook_cells.py and
# kernel_calls.py, so that a minor upgrade of either cannot silently change how a submission is
# graded; tests/test_engine_apis.py pins the behaviour relied on: format_kernel_cmd() gives the argv
# that is launched and write_connection_file() runs before the launch; NotebookClient raises
# CellTimeoutError at a cell's `timeout` (with interrupt_on_timeout off), raises DeadKernelError for a
# dead kernel, passes every iopub message of the cell through process_message() (which raises
# CellExecutionComplete at the kernel's "idle") and every output through output(); execute_cell()
# accepts `execution_count`.
class _SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command is the sandbox's, with an IPC connection file it owns."""

    sandbox: Sandbox | None = None
    zygote = None           # autograder.zygote.Zygote: the kernel is forked from it (ZygoteProvisioner)

    def format_kernel_cmd(self, extra_arguments=None):
        return self.sandbox.kernel_command(Path(self.connection_file))

    def write_connection_file(self, **kw):
        super().write_connection_file(**kw)
        self.sandbox._give(Path(self.connection_file))      # the kernel's uid must read it


def bootstrap_code(token: str, directory: Path, *, precompiled: bool = False) -> str:
    """The code that installs kernel_side's dispatcher in the kernel without leaving other globals.

    precompiled: run the copy a kernel forked from the zygote finds compiled in sys.modules
    (sandbox_side/zygote.py, `_compile_bootstrap`) if it was compiled from this very source, and
    take it out of sys.modules; the cell fails (and the grader sends the source) when there is none.
    A kernel compiling the 35 kB source cell cost 25 ms of CPU per start (py-spy). Trust is the same
    either way: the cell runs before any student code, and nothing the dispatcher does is trusted."""
    source, sha = _dispatcher_source()
    install = f"ns['install']({token!r}, {str(directory)!r})"
    if precompiled:
        return (f"(lambda ns, b: (exec(b.CODE if b.SHA == {sha!r} else None, ns), {install}))"
                f"({{'__name__': '_dlcourse_grader'}}, __import__('sys').modules.pop({BOOTSTRAP_MODULE!r}))")
    return (f"(lambda ns: (exec(compile({source!r}, '<dlcourse-grader>', 'exec'), ns), "
            f"{install}))({{'__name__': '_dlcourse_grader'}})")


@functools.cache
def _dispatcher_source() -> tuple[str, str]:
    """kernel_side/dispatcher.py's source and its SHA-256 (the file the zygote compiles), read once
    per grading process rather than at every kernel start."""
    data = DISPATCHER_SOURCE.read_bytes()
    return data.decode(), hashlib.sha256(data).hexdigest()


def short(text, n: int = 300) -> str:
    """`text` on one line of at most n characters (for the student's notes on cells and calls)."""
    text = str(text).replace("\n", " ").strip()
    return text if len(text) <= n else text[: n - 3] + "..."


class KernelProcess:
    """The sandboxed kernel of one submission and its two clients.

    Inputs: sandbox (opened Sandbox), limits (Limits), timings (the session's figures: each start's
    seconds go to timings["kernel_start"]).
    State shared by the notebook's cells and the suite's calls: km, kc (the notebook's client,
    with outputs), ckc (the calls' client), run_dir, token (the dispatcher's name in the kernel),
    replay (the cells that completed), broken (why calls cannot be served any more).
    """

    def __init__(self, sandbox: Sandbox, limits: Limits, timings: dict):
        self.sandbox, self.limits, self.timings = sandbox, limits, timings
        self.km = self.kc = self.ckc = None
        self.run_dir: Path | None = None
        self.token = "_dlcourse_grader_" + secrets.token_hex(8)
        self.replay: list[tuple[str, str]] = []   # (label, source) of the cells that completed, in order
        self.replay_notes: list[str] = []
        self.broken: str | None = None     # why calls cannot be served any more
        self.bootstrapped = self.guard_warm = False
        self.bootstrapped_from: str | None = None    # "zygote" (its compiled copy) or "source" (see bootstrap)
        self.notebook_done = False         # after the notebook, the output channel is closed
        self._memory_exceeded = False
        self._watch_stop = threading.Event()
        self._kill_lock = threading.Lock()
        # Our zmq sockets refuse messages over MAX_MESSAGE (zmq drops the connection; see
        # NotebookCells._reconnect_outputs), so a gigabyte print cannot exhaust the grader's memory.
        self._zmq = zmq.asyncio.Context()
        self._zmq.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self._watchdog: threading.Thread | None = None

    async def start(self) -> None:
        await self.stop()
        self.run_dir = self.sandbox.new_run_dir()
        self._memory_exceeded = False
        km = _SandboxKernelManager(transport="ipc", ip=str(self.run_dir / "k"),
                                   connection_file=str(self.run_dir / "kernel.json"), kernel_name="python3")
        km.sandbox = self.sandbox
        km.zygote = zygote.for_limits(self.limits)
        if km.zygote is not None:     # a provisioner set before the start is the one used (test_engine_apis)
            km.kernel_id = str(uuid.uuid4())
            km.provisioner = zygote.ZygoteProvisioner(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km)
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
            kc = await self.new_client(km, iopub=True)
        except Exception as e:
            tail = self.kernel_log_tail()
            raise GraderError(f"the student kernel did not start: {e!r}\n{tail}") from None
        finally:
            log_fd.close()
        ckc = await self.new_client(km, iopub=False)
        if self.notebook_done:      # a restart during the calls: nobody reads the outputs any more
            kc.stop_channels()
        self.km, self.kc, self.ckc = km, kc, ckc
        self.bootstrapped = self.guard_warm = False
        self._start_watchdog()
        # The dispatcher goes in before any student code: what it captures (torch.save/load, the
        # thread starter, a snapshot of the modules it runs on) is the library's, not the notebook's.
        status = await self.bootstrap(self.limits.startup_timeout)
        if status != "ok":
            await self.stop()
            raise GraderError(f"the grader's helper could not be installed in a new kernel ({status})\n"
                              f"{self.kernel_log_tail()}")
        self.bootstrapped = True
        self.timings["kernel_start"].append(round(time.monotonic() - t0, 3))

    async def new_client(self, km, *, iopub: bool):
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

    async def replace_output_client(self) -> None:
        """A new notebook client for the next cells. The old one is closed, which also ends the
        output poller nbclient leaves running after a timeout (it would otherwise read, and drop,
        the next cells' outputs)."""
        old = self.kc
        self.kc = await self.new_client(self.km, iopub=True)
        old.stop_channels()
        await asyncio.sleep(0)                  # let the closed channel's poller end

    async def stop(self) -> None:
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

    # ---------------------------------------------------------------- memory
    def _start_watchdog(self) -> None:
        """Kill the kernel when the submission's processes together hold more than memory_mb."""
        self._watch_stop = stop = threading.Event()
        limit = self.limits.memory_mb * 2**20

        def watch():    # also lets mode "none" remember the kernel's children (sandbox.processes)
            while not stop.wait(0.5):
                if self.sandbox.exceeds_memory(limit):
                    with self._kill_lock:
                        if not stop.is_set():       # still the kernel this watchdog was started for
                            self._memory_exceeded = True
                            self.sandbox.kill_all()
                    return

        self._watchdog = threading.Thread(target=watch, name="dlcourse-memory-watchdog", daemon=True)
        self._watchdog.start()

    def left_too_much_memory(self) -> bool:
        """Checked after every cell, so that a cell which keeps more than memory_mb alive is the one
        blamed (and left out of replays), not whichever cell or call runs when the watchdog wakes."""
        if not self.sandbox.exceeds_memory(self.limits.memory_mb * 2**20):
            return False
        with self._kill_lock:
            self._watch_stop.set()
            self._memory_exceeded = True
            self.sandbox.kill_all()
        return True

    def death_reason(self) -> str:
        if self._memory_exceeded:
            return f"it used more than {self.limits.memory_mb} MB of memory"
        return "the kernel crashed (exit, segmentation fault, or out of resources)"

    def kernel_log_tail(self, n: int = 2000) -> str:
        try:
            data = self.sandbox.read_file(self.run_dir / "kernel.log", 64 * 2**20, by_kernel=False)
            return data[-n:].decode(errors="replace")
        except (OSError, ValueError):
            return ""

    # ---------------------------------------------------------------- talking to the kernel
    async def alive(self) -> bool:
        return self.km is not None and await self.km.is_alive()

    async def wait_reply(self, client, msg_id: str, timeout: float) -> dict | str:
        """The shell reply to msg_id, or "dead" / "timeout"."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                msg = await client.shell_channel.get_msg(timeout=min(0.5, left))
            except Empty:
                if not await self.alive():
                    return "dead"
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    async def interrupt(self) -> bool:
        """SIGINT the kernel; True if it answers again within the grace period."""
        try:
            await self.km.interrupt_kernel()
        except Exception:
            return False
        msg_id = self.ckc.kernel_info()
        reply = await self.wait_reply(self.ckc, msg_id, self.limits.interrupt_grace)
        return isinstance(reply, dict)

    async def bootstrap(self, timeout: float) -> str:
        """Install the dispatcher (bootstrap_code): the zygote's compiled copy when the kernel was
        forked from one, else (or when that fails) the source. 'ok', 'error', 'timeout' or 'dead'."""
        deadline = time.monotonic() + timeout
        if self.km is not None and self.km.zygote is not None:
            status = await self.run_quiet(bootstrap_code(self.token, self.run_dir, precompiled=True), timeout)
            if status != "error":
                self.bootstrapped_from = "zygote"
                return status
        self.bootstrapped_from = "source"
        return await self.run_quiet(bootstrap_code(self.token, self.run_dir), max(1.0, deadline - time.monotonic()))

    async def run_quiet(self, code: str, timeout: float) -> str:
        """Run code without keeping outputs: 'ok', 'error', 'timeout' or 'dead'."""
        msg_id = self.ckc.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        reply = await self.wait_reply(self.ckc, msg_id, timeout)
        return reply if isinstance(reply, str) else reply["content"].get("status", "error")

    # ---------------------------------------------------------------- restarts
    async def restart_and_replay(self, deadline: float | None = None) -> bool:
        """Fresh kernel, then the completed cells again. A cell that kills or hangs the kernel during
        the replay (one that left a huge tensor behind, say) is dropped from the replay and the
        kernel started once more, so one bad cell cannot make every later restart fail too.
        Returns False if the replay could not be completed."""
        for attempt in range(self.limits.restarts + 1):
            try:
                await self.start()
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
                if await self.run_quiet(code, left) in ("dead", "timeout") or self.left_too_much_memory():
                    failed = i
                    break
            if failed is None:
                return True
            label, _ = self.replay.pop(failed)
            self.replay_notes.append(f"{label} was left out when the notebook was run again after a restart "
                                     f"(it crashed or hung the kernel again)")
            log.warning("replay: %s failed and was dropped", label)
        return False

    def take_replay_notes(self) -> list[str]:
        """The notes of the last replays (cells left out), once."""
        notes, self.replay_notes = self.replay_notes, []
        return notes

    # ---------------------------------------------------------------- end
    def close(self) -> None:
        if self._zmq.closed:
            return
        try:
            run_sync(self.stop)()
        finally:
            self._watch_stop.set()
            self._zmq.destroy(linger=0)
