"""The zygote: one process that has imported torch once, from which every kernel is forked.

Why: `import torch` costs about 3 s of CPU, and a kernel started by exec pays it again for every
submission and every restart; on 2 cores that is a third of a small grading. The grader
(autograder/zygote.py) starts this program once per grading process:

    python -E -s -B autograder/sandbox_side/zygote.py CONFIG

with CONFIG a JSON object (the modules to import, the control socket's fd, the grader's helper to
compile for every kernel: `_compile_bootstrap`). It imports the modules,
then waits for requests on the control socket (a SOCK_SEQPACKET socket pair the grader made: nobody
else can reach it). A request is a sandbox SPEC (the same one setup.py gets, plus how to drop
privileges, the kernel's environment, argv and launcher code) and two descriptors: a socket for the
reply and the kernel log. For each request the zygote forks a child, replies with the child's pid
and a pidfd, and later with its exit status.

The child builds the sandbox itself, exactly as the exec path does (sandbox.py's docstring):
  * `setsid` (its own session and process group: the grader's interrupts and kills reach the group);
  * every descriptor but the log closed (the control socket, other requests' sockets: nothing of the
    zygote reaches the kernel), the parent-death signal set to die with the zygote;
  * mode "root"/"userns": `unshare` of the mount, network, PID, IPC and UTS namespaces (and a user
    namespace in mode "userns"), then a fork: the child is process 1 of the new PID namespace and
    runs setup.py's `_setup_and_exec` (new root, reaper), like `unshare --fork --kill-child`;
  * in the kernel's process: rlimits (setup.py), then privileges dropped as setpriv drops them on the
    exec path (bounding set, groups, uid/gid, capabilities, ambient set, securebits in a user
    namespace, no_new_privs), and the result checked in /proc/self/status before any kernel code runs;
  * then the kernel runs in this interpreter (`_run_kernel`): its environment, argv, signal handlers,
    temporary folder and random seeds reset, the launcher code (sandbox.py) run as `__main__`.

The zygote itself never runs student code and never imports the autograder package: standard library
only at module level, the modules of CONFIG at start. Its memory is what every kernel starts from,
so nothing the kernel must not see is ever in it. It exits, killing its children and removing its
private home (CONFIG's "home": what it cached there at import), when the control socket reaches
end-of-file (every grading process holding it is gone, also one killed before it could clean up).
"""
from __future__ import annotations

import builtins
import ctypes
import gc
import hashlib
import importlib
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import sys
import types

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 1, 4, 24, 28
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
# setpriv --securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked
USERNS_SECUREBITS = 1 | 2 | 4 | 8 | 32
MAX_REQUEST = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_sockets: list[socket.socket] = []           # detached in every child: none may close a kernel's fd later


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _load_setup():
    """sandbox_side/setup.py, loaded by path (this program runs without the autograder package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "setup.py")
    spec = importlib.util.spec_from_file_location("_dlcourse_sandbox_setup", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup = _load_setup()


# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------

def serve(control_fd: int, home: str | None = None) -> None:
    """Answer requests until the control socket closes; returns only in a forked kernel (as the
    exception setup.BecomeKernel, raised through here)."""
    control = socket.socket(fileno=control_fd)
    _sockets.append(control)
    zygote = os.getpid()
    children: dict[int, socket.socket | None] = {}   # pid -> reply socket (None: the grader let go)
    # A child's exit wakes the loop at once (its status is what the grader waits for after a kill).
    wake_r, wake_w = socket.socketpair()
    _sockets.extend((wake_r, wake_w))
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        watched = {s.fileno(): s for s in (control, wake_r, *filter(None, children.values()))}
        poller = select.poll()                         # not select(): no limit on descriptor numbers
        for fd in watched:
            poller.register(fd, select.POLLIN)
        ready = [watched[fd] for fd, _ in poller.poll(5000)]
        _reap(children)
        for sock in ready:
            if sock is wake_r:
                try:
                    wake_r.recv(4096)
                except OSError:
                    pass
            elif sock is control:
                try:
                    msg, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 2)
                except OSError:
                    msg, fds = b"", []
                if not msg:                            # every grading process is gone
                    for pid in children:
                        _kill(pid)
                    if home:                           # rmtree does not follow symbolic links
                        shutil.rmtree(home, ignore_errors=True)
                    os._exit(0)
                _fork_kernel(msg, fds, children, zygote)
            else:                                      # the grader let go of that kernel: make sure it is gone
                pid = next((p for p, s in children.items() if s is sock), None)
                if pid is None:                        # reaped meanwhile
                    continue
                try:
                    gone = not sock.recv(16)
                except OSError:
                    gone = True
                if gone:
                    _kill(pid)
                    children[pid] = None
                    sock.close()
                    _sockets.remove(sock)


def _fork_kernel(msg: bytes, fds: list[int], children: dict, zygote: int) -> None:
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return
    reply = socket.socket(fileno=fds[0])
    _sockets.append(reply)
    log = fds[1]
    try:
        spec = json.loads(msg)
    except ValueError:
        os.close(log)
        reply.close()
        _sockets.remove(reply)
        return
    pid = os.fork()
    if pid == 0:
        _child(spec, log, zygote)                     # never returns, but as setup.BecomeKernel
    os.close(log)
    pidfd = os.pidfd_open(pid)
    try:
        socket.send_fds(reply, [json.dumps({"pid": pid}).encode()], [pidfd])
    except OSError:
        _kill(pid)
    finally:
        os.close(pidfd)
    children[pid] = reply


def _reap(children: dict) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reply = children.pop(pid, None)
        if reply is not None:
            try:
                reply.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
            except OSError:
                pass
            reply.close()
            _sockets.remove(reply)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)               # not reaped yet: the pid is still this child's
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------
# The child: the sandbox, then the kernel
# ------------------------------------------------------------------------------------------------

def _child(spec: dict, log: int, zygote: int) -> None:
    try:
        signal.set_wakeup_fd(-1)                      # the zygote's wake-up socket is closed below
        os.setsid()                                   # as start_new_session=True on the exec path
        for sock in _sockets:
            sock.detach()
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))   # the control socket and every other request's
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts (killpg) are for the kernel
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        if os.getppid() != zygote:
            os._exit(70)
        if spec["mode"] != "none":
            _unshare(spec["mode"])
            inside = os.fork()
            if inside:                                # like `unshare --fork`: wait, exit with its status
                while True:
                    try:
                        _, status = os.waitpid(inside, 0)
                        break
                    except InterruptedError:
                        continue
                code = os.waitstatus_to_exitcode(status)
                os._exit(code if code >= 0 else 128 - code)
            me = os.getppid()
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")   # --kill-child
            if os.getppid() != me:
                os._exit(70)
        setup._setup_and_exec(spec, become=_become)
        os._exit(70)
    except setup.BecomeKernel:
        raise
    except BaseException as e:  # noqa: B036 - a forked child reports and leaves, never returns
        print(f"dlcourse zygote: the kernel could not start: {e!r}", file=sys.stderr, flush=True)
        os._exit(70)


def _unshare(mode: str) -> None:
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if mode == "userns":
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare")
    if mode == "userns":                              # like `unshare --map-root-user`
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


def _become(spec: dict) -> None:
    """In the kernel's process, after setup.py set the rlimits: drop privileges, then unwind to the top."""
    drop_privileges(spec["drop"], spec.get("uid"))
    raise setup.BecomeKernel(spec)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_privileges(how: str, uid: int | None) -> None:
    """What setpriv does on the exec path (sandbox.Sandbox._privilege_drop), then checked.

    how "root": --reuid=uid --regid=uid --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all
    how "userns": --no-new-privs --inh-caps=-all --ambient-caps=-all --bounding-set=-all --securebits=
                  +noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked
    how "none": nothing."""
    if how == "none":
        return
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):                       # needs CAP_SETPCAP: before the uid changes
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(CAPBSET_DROP)")
    if how == "userns":
        _check(_libc.prctl(PR_SET_SECUREBITS, USERNS_SECUREBITS, 0, 0, 0), "prctl(SET_SECUREBITS)")
    elif how == "root":
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)                   # clears the permitted and effective sets
    else:
        raise ValueError(f"unknown privilege drop {how!r}")
    data = (_CapData * 2)()                           # every set empty, inheritable included
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data), "capset")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(CAP_AMBIENT_CLEAR_ALL)")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    if how == "root":
        # A uid change leaves the process non-dumpable (its /proc files owned by root); an exec would
        # have made it dumpable again. Its memory is the zygote's, which holds nothing secret.
        _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(SET_DUMPABLE)")
    check_privileges(how, uid)


def check_privileges(how: str, uid: int | None) -> None:
    """Refuse to run the kernel unless /proc/self/status shows every privilege gone."""
    with open("/proc/self/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    wrong = [k for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb") if int(status.get(k, "1"), 16) != 0]
    if status.get("NoNewPrivs") != "1":
        wrong.append("NoNewPrivs")
    if how == "root":
        for key in ("Uid", "Gid"):
            if status.get(key, "").split() != [str(uid)] * 4:
                wrong.append(key)
        if status.get("Groups", "x").strip():
            wrong.append("Groups")
    if wrong:
        raise RuntimeError(f"privileges not dropped: {', '.join(wrong)}")


# ------------------------------------------------------------------------------------------------
# The kernel
# ------------------------------------------------------------------------------------------------

def _compile_bootstrap(path: str | None, name: str | None) -> types.ModuleType | None:
    """The grader's helper (autograder/kernel_side/dispatcher.py at `path`), compiled once here: a
    module `name` holding its code object (CODE) and the SHA-256 of the source it came from (SHA).
    Every kernel finds it in sys.modules; the grader's first cell takes it out and runs it
    (kernel_process.py, `bootstrap_code`) instead of sending 35 kB of source that each kernel
    would compile again."""
    if not path or not name:
        return None
    try:
        with open(path, "rb") as f:
            source = f.read()
        module = types.ModuleType(name)
        module.CODE = compile(source, "<dlcourse-grader>", "exec")
        module.SHA = hashlib.sha256(source).hexdigest()
        return module
    except (OSError, SyntaxError, ValueError):
        return None                                   # the grader sends the source, as to a kernel started by exec


def _run_kernel(spec: dict, bootstrap: types.ModuleType | None = None) -> None:
    """Run the kernel in this (forked) interpreter as `python -c LAUNCHER ARGV` would."""
    parent = os.environ.get("JPY_PARENT_PID")       # set by setup.py's reaper for its child
    os.environ.clear()
    os.environ.update(spec["env"])
    if parent is not None:
        os.environ["JPY_PARENT_PID"] = parent
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import tempfile
    tempfile.tempdir = None                           # the kernel's TMPDIR, not the zygote's
    if "numpy" in sys.modules:                        # numpy's global generator: not shared by every kernel
        sys.modules["numpy"].random.seed()
    sys.argv = ["-c", *spec["argv"]]
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    if bootstrap is not None:
        sys.modules[bootstrap.__name__] = bootstrap
    gc.enable()                                       # main() froze the zygote's objects (why: there)
    exec(compile(spec["launcher"], "<string>", "exec"), main.__dict__)


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p not in ("", here)]
    # What the zygote imports is every kernel's for life. Frozen (gc.freeze), the kernels' garbage
    # collector never walks it: walking a million objects would cost each full collection time and
    # write to every page holding one, which the kernel would then copy from the zygote (a fork
    # shares pages only until they are written). Collection stays off until the freeze, so that no
    # collection leaves freed holes among those objects, as the gc module's documentation advises.
    gc.disable()
    for name in config["preload"]:
        try:
            importlib.import_module(name)
        except Exception:     # noqa: BLE001 - not installed, or broken at import: the kernel imports it itself
            pass
    bootstrap = _compile_bootstrap(config.get("bootstrap"), config.get("bootstrap_module"))
    gc.freeze()
    try:
        serve(config["control_fd"], config.get("home"))
    except setup.BecomeKernel as kernel:
        spec = kernel.args[0]
    else:
        return
    _run_kernel(spec, bootstrap)


if __name__ == "__main__":
    main(sys.argv)
