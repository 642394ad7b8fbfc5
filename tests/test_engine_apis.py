"""What the grader relies on in jupyter_client and nbclient (pinned in pyproject.toml).

kernel.py and its parts (kernel_process.py, notebook_cells.py, kernel_calls.py) use only their
public APIs: no private method is overridden and no private attribute is read or set, so a minor
upgrade of either can only break grading by changing one of the behaviours below. Each test states
one of them on a plain ipykernel (no sandbox, no torch: seconds), and the last one checks
kernel.py's own use of them end to end. If one of these fails after an upgrade, read its docstring
before changing those files.
"""
from __future__ import annotations

import ast
import asyncio
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from jupyter_client.session import Session
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, CellTimeoutError, DeadKernelError
from nbformat.v4 import new_code_cell, new_notebook

import autograder.kernel as kernel_module

pytestmark = pytest.mark.slow
KERNEL_PY = Path(kernel_module.__file__)
# The session's parts, which talk to jupyter_client and nbclient (see kernel.py's docstring).
KERNEL_FILES = [KERNEL_PY, *(KERNEL_PY.with_name(n) for n in ("kernel_process.py", "notebook_cells.py",
                                                              "kernel_calls.py", "zygote.py"))]


class RecordingManager(AsyncKernelManager):
    """The two public hooks _SandboxKernelManager overrides, recording their order."""

    events: list

    def format_kernel_cmd(self, extra_arguments=None):
        self.events.append(("argv", Path(self.connection_file).is_file()))
        return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file,
                "--IPKernelApp.quiet=True", "--HistoryManager.hist_file=:memory:"]

    def write_connection_file(self, **kw):
        super().write_connection_file(**kw)
        self.events.append(("connection file", Path(self.connection_file).is_file()))


async def start(tmp_path):
    km = RecordingManager(transport="ipc", ip=str(tmp_path / "k"), connection_file=str(tmp_path / "kernel.json"))
    km.events = []
    await km.start_kernel(cwd=str(tmp_path), env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1"})
    kc = km.client(session=Session(key=km.session.key, signature_scheme=km.session.signature_scheme))
    kc.start_channels(stdin=False, control=False)
    await kc.wait_for_ready(timeout=60)
    return km, kc


async def reply(client):
    return await client.shell_channel.get_msg(timeout=30)


async def stop(km, *clients):
    for kc in clients:
        kc.stop_channels()
    await km.shutdown_kernel(now=True)
    await km.cleanup_resources()


def test_the_kernel_command_and_connection_file_hooks(tmp_path):
    """format_kernel_cmd() is the argv launched, called after write_connection_file() wrote the file
    (the sandbox hands that file to the kernel's uid there); provisioner.pid is the launched process
    (the sandbox kills and measures it); a second client with a session of its own gets its own
    replies (the call client beside the notebook's)."""
    async def go():
        km, kc = await start(tmp_path)
        try:
            assert km.events == [("connection file", True), ("argv", True)]
            cmdline = Path(f"/proc/{km.provisioner.pid}/cmdline").read_bytes().split(b"\0")
            assert b"ipykernel_launcher" in cmdline and str(tmp_path / "kernel.json").encode() in cmdline
            other = km.client(session=Session(key=km.session.key, signature_scheme=km.session.signature_scheme))
            other.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
            try:
                mine, theirs = kc.kernel_info(), other.kernel_info()
                assert (await reply(other))["parent_header"]["msg_id"] == theirs    # its first message
                while (await reply(kc))["parent_header"]["msg_id"] != mine:         # earlier ones: wait_for_ready's
                    pass
            finally:
                other.stop_channels()
        finally:
            await stop(km, kc)
    asyncio.run(go())


class RecordingProvisioner(LocalProvisioner):
    """What ZygoteProvisioner (autograder/zygote.py) overrides: launch_kernel, which sets `process`."""

    async def launch_kernel(self, cmd, **kwargs):
        self.parent.events.append(("launch", sorted(k for k in ("env", "cwd", "stdout") if k in kwargs)))
        return await super().launch_kernel(cmd, **kwargs)


def test_a_provisioner_set_before_the_start_is_used(tmp_path):
    """A provisioner assigned to km.provisioner before start_kernel() is the one that launches the
    kernel (the factory's is made only when there is none), its launch_kernel() gets the Popen
    keyword arguments (env, cwd, stdout: the zygote passes the log on), and interrupt_kernel() sends
    SIGINT to the group of provisioner.pgid (the forked kernel's group) through send_signal()."""
    async def go():
        km = RecordingManager(transport="ipc", ip=str(tmp_path / "k"), connection_file=str(tmp_path / "kernel.json"))
        km.events = []
        km.kernel_id = "pinned"
        km.provisioner = RecordingProvisioner(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km)
        log = open(tmp_path / "log", "wb")
        await km.start_kernel(cwd=str(tmp_path), env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1"}, stdout=log,
                              stderr=log)
        kc = km.client(session=Session(key=km.session.key, signature_scheme=km.session.signature_scheme))
        kc.start_channels(stdin=False, control=False)
        try:
            await kc.wait_for_ready(timeout=60)
            assert isinstance(km.provisioner, RecordingProvisioner)
            assert ("launch", ["cwd", "env", "stdout"]) in km.events
            assert km.provisioner.pgid == os.getpgid(km.provisioner.pid)
            kc.execute("import time; time.sleep(30)")
            await asyncio.sleep(1)
            await km.interrupt_kernel()
            while True:
                msg = await reply(kc)
                if msg["content"].get("status") == "error":
                    assert msg["content"]["ename"] == "KeyboardInterrupt"
                    break
        finally:
            await stop(km, kc)
            log.close()
    asyncio.run(go())


class Runner(NotebookClient):
    """The public hooks _CellRunner overrides, recording what passes through them."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen, self.idle = [], 0

    def process_message(self, msg, cell, cell_index):
        try:
            return super().process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            self.idle += 1
            raise

    def output(self, outs, msg, display_id, cell_index):
        self.seen.append(msg["msg_type"])
        return super().output(outs, msg, display_id, cell_index)


def test_cell_execution_timeouts_and_dead_kernels(tmp_path):
    """NotebookClient (allow_errors, interrupt_on_timeout off): every output goes through output(),
    the kernel's "idle" through process_message() as CellExecutionComplete; execution_count= is
    kept; a cell past `timeout` (the trait, read per cell) raises CellTimeoutError; after closing the
    client of the timed-out cell and interrupting the kernel, a new client and runner see the next
    cell's outputs complete; a kernel that dies raises DeadKernelError."""
    nb = new_notebook(cells=[new_code_cell("print('hello')"), new_code_cell("import time\ntime.sleep(60)"),
                             new_code_cell("print('after')\n1 / 0"), new_code_cell("import os\nos._exit(1)")])

    async def go():
        km, kc = await start(tmp_path)
        clients = [kc]
        try:
            runner = Runner(nb, km=km, allow_errors=True, interrupt_on_timeout=False,
                            raise_on_iopub_timeout=False, record_timing=False, iopub_timeout=5)
            runner.kc = kc                       # after __init__, which resets it
            runner.timeout = 20
            await runner.async_execute_cell(nb.cells[0], 0, execution_count=7)
            assert nb.cells[0].outputs[0]["text"] == "hello\n" and nb.cells[0].execution_count == 7
            assert runner.seen == ["stream"] and runner.idle == 1
            runner.timeout = 1
            with pytest.raises(CellTimeoutError):
                await runner.async_execute_cell(nb.cells[1], 1, execution_count=8)
            await km.interrupt_kernel()
            kc.stop_channels()                     # ends the output poller nbclient left running
            new = km.client(session=Session(key=km.session.key, signature_scheme=km.session.signature_scheme))
            new.start_channels(stdin=False, control=False)
            clients.append(new)
            await new.wait_for_ready(timeout=60)
            runner = Runner(nb, km=km, allow_errors=True, interrupt_on_timeout=False,
                            raise_on_iopub_timeout=False, record_timing=False, iopub_timeout=5)
            runner.kc = new
            runner.timeout = 20
            await runner.async_execute_cell(nb.cells[2], 2, execution_count=9)
            assert [o.output_type for o in nb.cells[2].outputs] == ["stream", "error"]
            assert nb.cells[2].outputs[0]["text"] == "after\n" and runner.idle == 1
            with pytest.raises(DeadKernelError):
                await runner.async_execute_cell(nb.cells[3], 3, execution_count=10)
        finally:
            await stop(km, *clients)
    asyncio.run(go())


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_kernel_py_uses_no_private_api_of_jupyter_client_or_nbclient(path):
    """No overridden _method of their classes, no `._name` read or set on their objects."""
    tree = ast.parse(path.read_text())
    theirs = {"AsyncKernelManager", "NotebookClient", "LocalProvisioner"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and {getattr(b, "id", None) for b in node.bases} & theirs:
            private = [f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and f.name.startswith("_") and not f.name.startswith("__")]
            assert not private, f"{node.name} overrides private methods {private}"
    clients = {"kc", "ckc", "km", "client", "old", "runner", "provisioner"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            assert name not in clients, f"line {node.lineno}: private attribute {node.attr} of {name}"


def test_the_session_survives_a_timed_out_cell(tmp_path):
    """kernel.py's own use of the above: a cell that times out is interrupted, and the next cells'
    outputs are all there (none read and dropped by the timed-out cell's poller)."""
    from autograder.kernel import KernelSession
    from autograder.sandbox import Limits, Sandbox
    limits = Limits(isolation="none", preload=(), cell_timeout=2, interrupt_grace=5)
    nb = new_notebook(cells=[new_code_cell("import time\nwhile True:\n    time.sleep(0.01)"),
                             *[new_code_cell(f"print('cell {i}')") for i in range(3)]])
    with Sandbox(limits) as sandbox:
        session = KernelSession(sandbox, limits)
        try:
            notes = session.run_notebook(nb, [f"cell {i}" for i in range(4)])
        finally:
            session.close()
    assert notes == ["cell 0 ran longer than 2 s and was interrupted"]
    assert [c.outputs[0]["text"] for c in nb.cells[1:]] == [f"cell {i}\n" for i in range(3)]
    assert nbformat.validate(nb) is None
