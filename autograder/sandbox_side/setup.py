"""The sandbox side: the program that builds the kernel's world and then becomes the kernel.

The grader (autograder/sandbox.py) starts it as root of new namespaces (mount, PID, IPC, UTS, and a
user namespace where the grader is not root):

    unshare ... -- python -I -S autograder/sandbox_side/setup.py SPEC

with SPEC a JSON object (what to show, what to make writable, the limits, the kernel's command
line). It builds a fresh read-only root holding only what SPEC allows (`_new_root`), pivots into
it, stays as process 1 of the PID namespace to reap orphans, and execs the kernel with the limits
(`_exec_kernel`).

Standard library only, and nothing of the `autograder` package: `-I -S` leaves the course's
folders and site-packages off sys.path, so this file cannot import anything the kernel could have
touched (tests/test_layout.py checks the imports). The grader imports it for the mount helpers.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
_ST_FLAGS = {os.ST_RDONLY: MS_RDONLY, os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
             getattr(os, "ST_NOATIME", 1024): 1024, getattr(os, "ST_NODIRATIME", 2048): 2048,
             getattr(os, "ST_RELATIME", 4096): 1 << 21}


def _mount(libc, source, target, fstype, flags, data=None) -> None:
    enc = (lambda s: None if s is None else os.fsencode(s))
    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {source} on {target}: {os.strerror(e)}")


def _bind_readonly(libc, fd: int, target: str, readonly: bool = True) -> None:
    _mount(libc, f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0)
    try:
        _mount(libc, None, target, None, flags)
    except OSError:
        # In a user namespace the flags of the original mount are locked: keep them, add ours.
        kept = os.statvfs(target).f_flag
        flags |= sum(bit for st, bit in _ST_FLAGS.items() if kept & st and bit != MS_RDONLY)
        _mount(libc, None, target, None, flags)


MNT_DETACH = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}


class BecomeKernel(BaseException):
    """Raised by a `become` hook (the zygote's, zygote.py) in the process that is to be the kernel: it
    unwinds this file's frames back to the zygote's top level, which then runs the kernel in-process
    instead of exec'ing it. Never caught here."""


def _setup_and_exec(spec: dict, become=None) -> None:
    """Build the root (spec["root"]), then become the kernel: `become(spec)` in the kernel's process
    after the limits are set (default: exec spec["exec"])."""
    become = become or _exec
    libc = ctypes.CDLL(None, use_errno=True)
    if spec["root"]:
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
        _new_root(libc, spec)
    if not spec["reaper"]:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)           # PR_SET_PDEATHSIG: die with the grader
        _exec_kernel(spec, become)
    # We are process 1 of the new PID namespace and stay (namespace) root: the kernel runs as our
    # child. When we exit, the kernel ends every process left in the namespace; we exit when the
    # kernel does, or when unshare dies with the grader (unshare --kill-child). Meanwhile we reap
    # orphans, which the kernel would not.
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # interrupts (killpg) are for the kernel, not us
    kernel = os.fork()
    if kernel == 0:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # an ignored SIGINT would survive exec
        os.environ["JPY_PARENT_PID"] = "1"    # its parent is this reaper: no ipykernel parent poller
        _exec_kernel(spec, become)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == kernel:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def _new_root(libc, spec: dict) -> None:
    """Build the kernel's whole file system view in a fresh tmpfs and make it the root (spec["system_dirs"]: sandbox.SYSTEM_DIRS)."""
    def path_fd(p):
        try:
            return os.open(p, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return None
    system = {}
    for p in spec["system_dirs"]:
        if os.path.islink(p):
            system[p] = ("link", os.readlink(p))
        elif os.path.isdir(p):
            system[p] = ("dir", path_fd(p))
    keep = {p: path_fd(p) for p in spec["keep"]            # already there, unless under a hidden path
            if not any(os.path.commonpath([p, d]) == d for d in spec["system_dirs"])
            or any(os.path.commonpath([p, h]) == h for h in spec["hide"])}
    devices = {d: path_fd(f"/dev/{d}") for d in spec["devices"]}
    sandbox = os.open(spec["dir"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    writable = {p: os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in spec["writable"]}
    host_proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    new = "/tmp"                              # any folder will do as the mount point: it is left below
    _mount(libc, "tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=4096,mode=755")

    def inside(p):
        return os.path.join(new, p.lstrip("/"))

    def bind(fd, target, readonly=True):
        if fd is None:
            return
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        _bind_readonly(libc, fd, target, readonly)

    for p, (kind, what) in system.items():
        if kind == "link":
            os.symlink(what, inside(p))
        else:
            bind(what, inside(p))
    for p in spec["hide"]:                    # inside an OS folder (a course kept under /usr/local, say)
        if os.path.isdir(inside(p)):
            _mount(libc, "tmpfs", inside(p), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    # The private /tmp, /var/tmp and /dev/shm before the kept paths: a venv or a course kept under /tmp
    # (a checkout in /tmp/..., CI's clone) is bound on top of the new /tmp instead of being covered by it.
    def private_tmpfs(under_dev):
        for p, size in spec["tmpfs"].items():
            if p.startswith("/dev/") == under_dev:
                os.makedirs(inside(p), exist_ok=True)
                _mount(libc, "tmpfs", inside(p), "tmpfs", MS_NOSUID | MS_NODEV,
                       f"size={size}m,nr_inodes={spec['inodes']},mode=1777")

    private_tmpfs(under_dev=False)            # /tmp, /var/tmp; /dev/shm goes on the new /dev below
    for p, fd in keep.items():
        bind(fd, inside(p))
    for p in spec["hide"]:
        if os.path.isdir(inside(p)):
            _mount(libc, None, inside(p), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    os.makedirs(inside("/dev"))
    _mount(libc, "tmpfs", inside("/dev"), "tmpfs", MS_NOSUID | MS_NOEXEC, "size=1m,nr_inodes=256,mode=755")
    for name, fd in devices.items():          # plain binds: device nodes need the host's dev flag
        if fd is not None:
            target = inside(f"/dev/{name}")
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(target)
            else:
                open(target, "a").close()
            _mount(libc, f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, inside(f"/dev/{name}"))
    private_tmpfs(under_dev=True)
    # The sandbox folder read-only, with home/ and the run folder writable on top: mount points,
    # which the kernel can neither rename nor replace (EBUSY), even where it owns the folder.
    bind(sandbox, inside(spec["dir"]))
    for p, fd in writable.items():
        bind(fd, inside(p), readonly=False)
    os.makedirs(inside("/proc"))
    try:   # this PID namespace's own /proc: host processes stay invisible
        _mount(libc, "proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        _mount(libc, f"/proc/self/fd/{host_proc}", inside("/proc"), None, MS_BIND | MS_REC)
    _mount(libc, None, new, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=4096,mode=755")
    os.chdir(new)
    number = _PIVOT_ROOT.get(os.uname().machine)
    if number is not None and libc.syscall(number, b".", b".") == 0:
        if libc.umount2(b".", MNT_DETACH) != 0:      # the old root, stacked under the new one
            raise OSError(ctypes.get_errno(), "could not detach the host's root")
    else:
        os.chroot(".")                             # rootfs (initramfs) cannot be pivoted away
    os.chdir("/")
    for fd in [*(v for k, v in system.values() if k == "dir"), *keep.values(), *devices.values(), sandbox,
               *writable.values(), host_proc]:
        if isinstance(fd, int):
            os.close(fd)


def _exec(spec: dict) -> None:
    argv = spec["exec"]
    os.execv(argv[0], argv)


def _exec_kernel(spec: dict, become) -> None:
    try:
        os.chdir(os.path.join(spec["dir"], "home"))
        for limit in (resource.RLIMIT_DATA, resource.RLIMIT_AS):   # the grader's own soft limits are not the kernel's
            soft, hard = resource.getrlimit(limit)
            resource.setrlimit(limit, (hard, hard))
        for name, value in spec["rlimits"].items():
            limit = getattr(resource, f"RLIMIT_{name}")
            soft, hard = resource.getrlimit(limit)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (value, value))
        become(spec)
    except BecomeKernel:
        raise
    except BaseException as e:  # noqa: B036 - in a forked child: report and leave, never return
        print(f"dlcourse sandbox: the kernel could not start: {e!r}", file=sys.stderr)
        os._exit(70)


if __name__ == "__main__":
    try:
        _setup_and_exec(json.loads(sys.argv[1]))
    except Exception as e:  # the grader sees the kernel die at start and reads this in the kernel log
        print(f"dlcourse sandbox setup failed: {e!r}", file=sys.stderr)
        sys.exit(70)
