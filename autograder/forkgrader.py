"""Grader processes forked from a pre-imported one instead of started from scratch.

Why: a grading process spends its first seconds importing torch, pytest and Jupyter's client
(about 3 s of CPU per submission on the CI machine), and a batch pays that once per submission.
On 2 cores that is CPU the notebooks and suites could use. Python's own engine for this is
`multiprocessing`'s "forkserver" start method: one server process imports the modules once
(`set_forkserver_preload`), and each new process is a `fork()` of it, ready at once.

`spawn(argv, env)` starts `python -m autograder <argv>` that way and returns a `ForkedGrader`, which
behaves like the `subprocess.Popen` the batch used before (stdin, communicate, pid, returncode,
kill): the pool (pool.py) and the batch (batch/) need not know the difference. The grader in it
runs exactly `autograder.cli.main(argv)`, with stdin, stdout and stderr connected to the batch as a
subprocess's pipes would be.

What stays as it was:
  * each grader serves one submission and exits; nothing of one grading reaches the next (the
    server itself never grades; its children start from its clean, just-imported state);
  * a grader leads its own session and process group (the batch kills the group on timeout);
  * a grader dies with the batch: the server exits when the batch does (multiprocessing's
    alive pipe), and the grader asks the kernel to kill it when its parent, the server, dies
    (cli.py's `_die_with_parent`).

Where fork is not available (not Linux), or the grader command is replaced
($AUTOGRADER_GRADER_CMD, the tests' fake grader), the batch starts a plain subprocess as before.
"""
from __future__ import annotations

import atexit
import io
import gc
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref

# Imported once by the server, so every forked grader starts with them loaded. "autograder" comes
# first: importing it keeps nbformat's jsonschema from a slow optional import (autograder/__init__.py).
# The last ones are what a grader imported on first use (0.1-0.6 s of CPU each, measured per
# grader): jupyter_client's kernel spec lookup, torch's first backward(), and the course library
# (which a suite's forbid_calls imports to find the callable: 0.02 s per grader), whose default data
# folder comes from $HOME at import, which every grader inherits unchanged from the batch as this
# server does (grader_env; $DLCOURSE_DATA is read at each call); the exporters, which the command
# line's --export help lists; and autograder.preload, which compiles nbformat's validator.
PRELOAD = ["autograder", "torch", "pytest", "nbformat", "nbclient", "jupyter_client", "autograder.cli",
           "autograder.runner", "autograder.kernel", "autograder.plugin", "autograder.testing", "autograder.proxy",
           "IPython.paths", "torch.fx.experimental.symbolic_shapes", "torch.utils.flop_counter", "matplotlib.pyplot",
           "dlcourse", "autograder.exporters", "autograder.preload"]

READY_TIMEOUT = 120.0          # seconds for a fork to report back (only a machine in trouble takes long)
_context = None
_context_lock = threading.Lock()
_started = False


def available() -> bool:
    return sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()


def _get_context():
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


def _child(argv: list[str], env: dict, ready: socket.socket, stdin: socket.socket, stdout: socket.socket,
           stderr: socket.socket, zygotes=()) -> None:
    """The forked grader: become `python -m autograder <argv>` with the given pipes and environment,
    its kernels forked from the batch's kernel zygotes (zygote.py): (key, control socket) pairs."""
    code = 1
    try:
        os.setsid()                               # its own process group, as start_new_session=True
        # The server's finalizers (torch's operator libraries, mostly) need not run when this grader
        # exits: its memory goes with it. Running them cost 0.035 s of CPU per grader.
        for finalizer in list(getattr(weakref.finalize, "_registry", ())):
            finalizer.atexit = False
        from autograder import zygote
        for key, control in zygotes:
            zygote.adopt(key, control)
        ready.sendall(b"1")                       # the batch may kill the group from now on
        ready.close()
        for fd, sock in ((0, stdin), (1, stdout), (2, stderr)):
            os.dup2(sock.fileno(), fd)
            sock.close()
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", write_through=True)
        os.environ.clear()
        os.environ.update(env)
        # Our parent is the server, not the batch: cli's _die_with_parent ties us to the server,
        # which itself exits when the batch does.
        os.environ["AUTOGRADER_PARENT_PID"] = str(os.getppid())
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sys.argv = ["autograder", *argv]
        # What the server imported stays for the grader's life: frozen, the collector skips it
        # (and does not touch, so copy, the pages this process shares with the server).
        gc.freeze()
        from autograder.cli import main
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - the batch reads stderr and the exit status
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()               # what a normal interpreter exit would run
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


class _Writer:
    """The batch's end of the grader's stdin: text in, end-of-file on close."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def write(self, text: str) -> int:
        self._sock.sendall(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._sock.close()


class _Reader(threading.Thread):
    """Drains one of the grader's output streams into memory (as Popen.communicate would)."""

    def __init__(self, sock: socket.socket):
        super().__init__(daemon=True)
        self._sock, self._chunks = sock, []

    def run(self) -> None:
        with self._sock:
            while True:
                try:
                    data = self._sock.recv(1 << 16)
                except OSError:
                    return
                if not data:
                    return
                self._chunks.append(data)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")


class ForkedGrader:
    """A forked grader with the part of subprocess.Popen's interface the batch and the pool use."""

    def __init__(self, argv: list[str], env: dict):
        ctx = _get_context()
        ready, *pairs = [socket.socketpair() for _ in range(4)]
        from autograder import zygote
        self._process = ctx.Process(target=_child, args=(list(argv), dict(env), ready[1],
                                                         *(child for _, child in pairs), zygote.shared()),
                                    name="autograder-grader")
        self._process.start()
        for _, child in [ready, *pairs]:
            child.close()
        # Like Popen, return only once the grader leads its own process group: a kill of the group
        # sent right after spawn() must not miss it.
        ready[0].settimeout(READY_TIMEOUT)
        try:
            ready[0].recv(1)
        except OSError:
            pass                                  # it died first; its status and stderr say why
        finally:
            ready[0].close()
        self.pid = self._process.pid
        self.args = ["autograder", *argv]
        self.stdin = _Writer(pairs[0][0])
        self._out, self._err = _Reader(pairs[1][0]), _Reader(pairs[2][0])
        self._out.start()
        self._err.start()

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        """Send `input`, close stdin, wait for the grader and its output (TimeoutExpired after
        `timeout` seconds; call again after kill() to collect what it wrote)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if input:
            try:
                self.stdin.write(input)
            except OSError:                       # it exited already: its output says why
                pass
        self.stdin.close()
        for part in (self._process, self._out, self._err):
            part.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            alive = part.exitcode is None if part is self._process else part.is_alive()
            if alive:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self._out.text(), self._err.text()


def prestart() -> None:
    """Start the server now without waiting for it: it imports PRELOAD in a process of its own
    while the caller goes on, and the first spawn() waits only for what is left of those imports."""
    global _started
    from multiprocessing import forkserver
    _get_context()
    forkserver.ensure_running()
    _started = True


def started() -> bool:
    """Whether this process started the server (prestart or spawn): forking from it is then cheap."""
    return _started


def spawn(argv: list[str], env: dict) -> ForkedGrader:
    """`python -m autograder <argv>` forked from the pre-imported server (see the module docstring)."""
    global _started
    _started = True
    return ForkedGrader(argv, env)
