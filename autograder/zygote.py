"""Kernels forked from one process that imported torch once (the grader's side of the zygote).

A kernel started by exec imports torch, IPython and matplotlib again: about 3.5 s of CPU for every
submission and every restart, a third of a small grading on 2 cores. The zygote
(sandbox_side/zygote.py) imports them once; each kernel is a fork of it that builds its sandbox
itself (namespaces, root, rlimits, privileges: the same spec as the exec path) and then runs the
kernel in-process. Each kernel still serves one submission and is then gone: a fork starts from the
zygote's clean, just-imported memory, never from another kernel's.

`for_limits(limits)` gives the zygote of this grading process (started on first use, shared by every
sandbox of the process and, in a batch, by the graders forked from the same server: forkgrader.py
passes its control socket on), or None where kernels are started by exec: not Linux, a GPU kernel,
a preload without torch, or $AUTOGRADER_NO_ZYGOTE=1 (to compare, or to rule the zygote out).
`ZygoteProvisioner` is the jupyter_client provisioner (the public subclassing point of
LocalProvisioner) that asks the zygote instead of running the kernel command.
"""
from __future__ import annotations

import ast
import atexit
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jupyter_client.provisioning import LocalProvisioner

from autograder.sandbox import kernel_base_env
from autograder.tamper import parse_cell

ZYGOTE_PROGRAM = Path(__file__).resolve().parent / "sandbox_side" / "zygote.py"
# The grader's helper in the kernel, compiled once by the zygote and left in each kernel's sys.modules
# under BOOTSTRAP_MODULE (sandbox_side/zygote.py `_compile_bootstrap`, kernel_process.py `bootstrap_code`).
DISPATCHER_SOURCE = Path(__file__).resolve().parent / "kernel_side" / "dispatcher.py"
BOOTSTRAP_MODULE = "_dlcourse_grader_bootstrap"
log = logging.getLogger("autograder.kernel")
_zygotes: dict[tuple, "Zygote"] = {}
_lock = threading.Lock()


def preload_for(limits) -> tuple[str, ...] | None:
    """What the zygote imports for kernels with these limits: only modules the kernel imports at
    start anyway (Limits.preload), and none whose import reads the kernel's own environment (the
    course library reads HOME at import, so it is imported in the kernel; its heavy parts here:
    its plots and FLOP counter, and torch._inductor, 0.8 s of CPU per kernel, which FlopCounterMode
    imports on first use, as does torchvision at import and seed_everything's deterministic mode)."""
    if "torch" not in limits.preload:
        return None
    extra = (("torch.utils.flop_counter", "matplotlib.figure", "torch._inductor") if "dlcourse" in limits.preload
             else ())
    # ipykernel.debugger: every kernel imports it at start (IPythonKernel.debugger_class), and with
    # it debugpy's copy of pydevd (kernels' CPU per batch of 8: 0.3 s less; the zygote's: 0.04 s more).
    return ("torch", *extra, "ipykernel.kernelapp", "ipykernel.debugger")


# The course library imports these only inside load_data and get_datasets (dlcourse/data.py), so
# that `import dlcourse` stays fast for students; a notebook's import statements do not show them.
# A kernel whose notebook calls one of those functions imports them (02 and 03: torchvision and
# scikit-learn, about 0.7 s of CPU per kernel). tests/test_engine_sandbox.py checks the list
# against the library's source.
COURSE_LIBRARY_CALLS = {name: ("torchvision", "torchvision.transforms.v2", "sklearn.datasets", "sklearn.model_selection")
                        for name in ("load_data", "get_datasets")}


def notebook_imports(notebook: str | Path) -> tuple[str, ...]:
    """The modules the code cells of `notebook` (an instructor's release notebook) import by name,
    in order, less the course library and the grader: a kernel grading a submission of it imports
    them anyway, so its zygote may import them first (scipy.signal in 01_convolution: 0.64 s of CPU
    per kernel; torchvision in 04-07: 0.9 s). Cells are read as IPython reads them (tamper.parse_cell):
    a magic is no import, and a cell magic's body is not Python code. A call of a course library
    function in COURSE_LIBRARY_CALLS (`dl.load_data(...)`) counts as importing what it imports."""
    try:
        cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return ()
    names: list[str] = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        tree = parse_cell("".join(source) if isinstance(source, list) else str(source))
        if tree is None:
            continue
        for node in ast.walk(tree):
            names += [n for n in _imported_by(node) if n.split(".")[0] not in ("dlcourse", "autograder")
                      and n not in names]
    return tuple(names)


def _imported_by(node: ast.AST) -> list[str]:
    """The modules one syntax node imports: `import a.b`, `from a import b`, or `dl.load_data(...)`."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module] if node.level == 0 and node.module else []
    if isinstance(node, ast.Call):
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        return list(COURSE_LIBRARY_CALLS.get(called, ()))
    return []


def for_assignment(assignment, limits) -> "Zygote | None":
    """for_limits(limits), a new zygote also importing what the assignment's notebook imports."""
    return for_limits(limits, also=notebook_imports(assignment.release_notebook))


def for_limits(limits, also: tuple[str, ...] = ()) -> "Zygote | None":
    """The zygote for kernels with these limits (None: start them by exec). `also`: more modules a
    new zygote imports (for_assignment); a zygote already started is used as it is, since what it
    preloaded changes how fast a kernel's imports are, never what they do."""
    if (not sys.platform.startswith("linux") or limits.gpu or os.environ.get("AUTOGRADER_NO_ZYGOTE")
            or not hasattr(os, "pidfd_open")):
        return None
    preload = preload_for(limits)
    if preload is None:
        return None
    key = (sys.executable, limits.threads, preload)
    with _lock:
        zygote = _zygotes.get(key)
        if zygote is None or zygote.broken:
            if zygote is not None:
                zygote.discard()                    # a zygote that stopped answering is not waited for
            try:
                zygote = _zygotes[key] = Zygote(key, also=also)
            except OSError as e:
                log.warning("the kernel zygote could not be started (%s): kernels start by exec", e)
                return None
        return zygote


def shared() -> list[tuple[tuple, socket.socket]]:
    """(key, control socket) of this process's zygotes, for graders forked from it (forkgrader.py)."""
    with _lock:
        return [(key, z.control) for key, z in _zygotes.items() if not z.broken]


def adopt(key, control: socket.socket) -> None:
    """Use a zygote another process started (a forked grader: the server's; `key` as shared() gave it)."""
    with _lock:
        _zygotes[key] = Zygote(key, control=control)


class Zygote:
    """The zygote process and its control socket (a SOCK_SEQPACKET pair: each request is one message)."""

    def __init__(self, key: tuple, control: socket.socket | None = None, also: tuple[str, ...] = ()):
        self.key, self.broken = key, False
        self.process, self.home = None, None
        self.preload = list(key[2])             # what it imported (one adopted from a server: at least this)
        self._send_lock = threading.Lock()
        if control is not None:
            self.control = control
            return
        executable, threads, _ = key
        self.preload += [m for m in also if m not in self.preload]
        home = self.home = tempfile.mkdtemp(prefix="dlcourse-zygote-")
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {"preload": self.preload, "control_fd": theirs.fileno(), "home": home,
                  "bootstrap": str(DISPATCHER_SOURCE), "bootstrap_module": BOOTSTRAP_MODULE}
        try:
            self.process = subprocess.Popen(
                [executable, "-E", "-s", "-B", str(ZYGOTE_PROGRAM), json.dumps(config)],
                pass_fds=[theirs.fileno()], env=kernel_base_env(home, threads), cwd=home, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            theirs.close()
        atexit.register(self.close)

    def close(self, wait: float = 10.0) -> None:
        """End-of-file on the control socket: the zygote kills its children and exits (killed after
        `wait` seconds if it has not). Its private home goes too."""
        try:
            self.control.close()
        except OSError:
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)

    def discard(self) -> None:
        """Close a broken zygote (one that did not answer) without waiting for it to exit."""
        self.close(wait=0.0)

    def spawn(self, request: dict, log_fd: int, timeout: float) -> "ZygoteKernel":
        """Fork a kernel for `request` (Sandbox.zygote_request) with its output going to log_fd."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            try:
                with self._send_lock:
                    socket.send_fds(self.control, [json.dumps(request).encode()], [theirs.fileno(), log_fd])
            finally:
                theirs.close()
            mine.settimeout(timeout)
            msg, fds, _, _ = socket.recv_fds(mine, 4096, 1)
        except OSError as e:
            mine.close()
            self.broken = True
            raise OSError(f"the kernel zygote did not answer: {e!r}") from None
        if not msg or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            mine.close()
            self.broken = True
            raise OSError("the kernel zygote did not start the kernel")
        mine.settimeout(None)
        return ZygoteKernel(json.loads(msg)["pid"], fds[0], mine)


class ZygoteKernel:
    """A forked kernel's first process, with the parts of subprocess.Popen the provisioner uses.

    It is not our child (the zygote is its parent), so it is watched and signalled through a pidfd,
    which can never reach a later process with the same pid; its exit status comes from the zygote."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, pidfd: int, reply: socket.socket):
        self.pid, self._pidfd, self._reply = pid, pidfd, reply
        self.returncode: int | None = None
        deadline = time.monotonic() + 5               # it calls setsid first thing: its group is then its pid
        while time.monotonic() < deadline and self.poll() is None:
            try:
                if os.getpgid(pid) == pid:
                    break
            except OSError:
                break
            time.sleep(0.002)

    def poll(self) -> int | None:
        if self.returncode is None and self._pidfd is not None:
            if select.select([self._pidfd], [], [], 0)[0]:
                self.returncode = self._exit_status()
        return self.returncode

    def _exit_status(self) -> int:
        try:
            self._reply.settimeout(1.0)               # the zygote reaps it at once
            msg = self._reply.recv(4096)
            return int(json.loads(msg)["exit"]) if msg else -signal.SIGKILL
        except (OSError, ValueError, KeyError, TypeError):
            return -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """Let go of it: the zygote kills it if it still runs."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
            self._reply.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class ZygoteProvisioner(LocalProvisioner):
    """LocalProvisioner whose kernel is forked by the zygote (its manager: kernel_process's
    _SandboxKernelManager, which has `sandbox` and `zygote`). Signals go to the kernel's process
    group as LocalProvisioner sends them; waiting, polling and killing go through the pidfd."""

    async def launch_kernel(self, cmd: list[str], **kwargs):
        km = self.parent
        request = km.sandbox.zygote_request(Path(km.connection_file), kwargs["env"])
        out = kwargs.get("stdout")
        fd = out if isinstance(out, int) else out.fileno()
        try:
            self.process = km.zygote.spawn(request, fd, km.sandbox.limits.startup_timeout)
        except OSError as e:                          # the exec path still works: use it
            log.warning("%s; this kernel starts by exec", e)
            return await super().launch_kernel(cmd, **kwargs)
        self.pid = self.pgid = self.process.pid
        self.cwd = kwargs.get("cwd")
        return self.connection_info

    async def wait(self):
        process = self.process
        try:
            return await super().wait()
        finally:
            if process is not None and process.returncode is not None:
                process.close()

    async def cleanup(self, restart: bool = False) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.process.close()
        await super().cleanup(restart=restart)
