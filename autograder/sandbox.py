"""Where a student's kernel runs, and what it can and cannot do from there.

The grader never runs student code in its own process. Each submission gets a `Sandbox`: a private
directory, the command that starts an IPython kernel inside it, resource limits, and a way to kill
everything the submission started. Which protections hold depends on who runs the grader; the
mode is detected once (`isolation_mode()`) and recorded in the grading log.

How a kernel starts, in either case from the same SPEC (`_spec`) and with the same result:
  * forked from the kernel zygote (autograder/zygote.py, sandbox_side/zygote.py), a process that
    imported torch, IPython's kernel and matplotlib once: the fork sets up the namespaces itself,
    runs setup.py's root and reaper, drops privileges as setpriv would and checks them in
    /proc/self/status before any kernel code runs (`zygote_request`); or
  * by exec: setpriv, unshare, `python -I -S setup.py SPEC`, setpriv again, a new interpreter
    (`kernel_command`): for GPU kernels, a preload without torch, a zygote that failed, and
    AUTOGRADER_NO_ZYGOTE=1. tests/test_engine_sandbox.py probes both.

As root (mode "root", the CI machine and a grading server):
  * The kernel runs as its own unprivileged uid (61000 + a slot; a lock file per uid keeps parallel
    graders apart), with no supplementary groups, no capabilities and `no_new_privs`.
  * New network namespace: only a loopback interface that is down; no network at all.
  * New mount namespace whose root is a fresh tmpfs, made read-only and pivot_root'ed to: hide by
    allowing. It holds only the operating system's folders (SYSTEM_DIRS: /usr, /bin, /sbin, /lib*,
    /etc, /sys), the virtual environment, the interpreter and the `dlcourse` package, all bound
    read-only, a new /proc, a minimal /dev (null, zero, full, random, urandom; GPUs with gpu=True),
    and the sandbox folder, read-only but for home/ and the current run folder (mount points: the
    kernel can neither rename nor replace them). Nothing else of the host exists for the kernel,
    wherever the course, its suites or other students' work are kept; paths in `hide` that lie
    inside an OS folder (a course under /usr/local, say) are covered by empty tmpfs mounts.
    /tmp, /var/tmp and /dev/shm are small private tmpfs mounts (size and number of files limited;
    nothing left there survives, nothing another grading left there is visible).
  * New IPC and UTS namespaces: System V shared memory, semaphores and message queues die with
    the grading, and the host name is the kernel's own.
  * New PID namespace with its own /proc: the kernel sees no host process. Process 1 of the
    namespace is a small root-side reaper whose child is the kernel; killing it kills every
    process the submission started (none can leave the namespace), and it dies with the grader
    (setpriv --pdeathsig on unshare, unshare --kill-child), so a grader killed with SIGKILL leaves
    nothing running. As a second sweep every process of the uid is killed with kill(-1) run as
    that uid (also at the start, for leftovers of a grader that crashed before this safety net).
  * rlimits: address space (memory limit + 4.5 GiB, because the CUDA build of torch reserves
    ~3.3 GB of virtual memory at import), processes/threads (per uid, so a fork bomb stops at
    `nproc`), file size, open files, no core files. A watchdog in the grader sums the memory
    (PSS, so pages forked children share count once) of the submission's processes twice a
    second and kills the kernel above `memory_mb`; the student is told so.
  * The sandbox folder is a tmpfs mounted by the grader (size disk_mb, disk_files inodes), owned
    by root with mode 0711: the kernel cannot fill the host's disk, and cannot rename or replace
    home/ or a run folder (which its uid owns). The kernel talks to the grader over zmq IPC sockets
    in the run folder; every grader-side file operation there goes through directory descriptors
    opened when the folder was made (openat with O_EXCL|O_NOFOLLOW; only regular files that the uid
    owns are read), so no path component the kernel could change is resolved again.
  * The kernel's PID namespace and its process 1 are held by file descriptors (nsfs fd, pidfd)
    while the grader uses their ids: ids freed by a crashed kernel are reused by the system at
    once, and another grading's kernel must never be taken for ours.

As an ordinary user with unprivileged user namespaces (mode "userns", an instructor's laptop):
  * The same network, mount, PID, IPC and UTS namespaces (through a user namespace in which the
    user is mapped to root only to set up the mounts), the same root view, private tmpfs mounts
    and rlimits (the process limit counts all of the user's processes, so it is set to the current
    count + `nproc`). Before the kernel starts, every capability is dropped for good (bounding
    set cleared, securebits noroot locked, no_new_privs), so student code cannot unmount the
    tmpfs that hides the repository. The kernel runs with the instructor's uid: files outside
    the allowed paths that the instructor can read, the kernel can read too. The sandbox folder is
    on the host's disk (an unprivileged grader cannot mount a tmpfs there): home and the run
    folders are limited per file only.

Without namespaces (mode "none": no `unshare`, or unprivileged user namespaces disabled, as on
Ubuntu 24.04's default AppArmor policy; run the grader as root there, or allow user namespaces):
  * Only rlimits, a private HOME/TMPDIR, an explicit environment and the memory watchdog. Student
    code runs with the grader's uid, CAN read the hidden suites and reach the network; kill = the
    kernel's process tree, its process group, and every process the watchdog ever saw in them (a
    process that double-forks and calls setsid within half a second can escape). The kernel dies
    with the grader (PR_SET_PDEATHSIG). Use this mode only for trusted code;
    `Limits(isolation="none")` forces it.

In every mode the environment is explicit (no inherited secrets, CUDA devices hidden unless
`Limits(gpu=True)`), the grader computes every expected value in its own process, and nothing but
plain data crosses back (see proxy.py).

Not covered: disk space in home and the run folders in mode "userns" and "none" (only the size of
each file is limited); zmq connects to the IPC socket paths in the run folder by name (the kernel
could replace a socket there by a symlink to another socket, which would receive zmq frames); CPU time
beyond the wall-clock limits (a busy loop uses a core until its cell or call times out); and the
forbidden-operation guard (kernel_side/dispatcher.py) runs inside the student's process: it catches every
ordinary route (aliases, torch.ops, nn modules, unfold) and checks itself before and after each
call, and the grader scans the student's code for dispatch internals, but in-process checks can
be defeated by a determined student. The grade itself cannot be: it is computed here, from data.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder.sandbox_side.setup import MS_NODEV, MS_NOSUID, _mount

SETUP_PROGRAM = Path(__file__).resolve().parent / "sandbox_side" / "setup.py"   # runs inside the namespaces
UID_BASE = 61000
UID_SLOTS = 1000
LOCK_DIR_ROOT = Path("/run/dlcourse-grader")
PRIVATE_TMPFS = {"/tmp": None, "/var/tmp": 64, "/dev/shm": 64}   # size in MB (None: Limits.tmp_size_mb)
# Hide by allowing: the kernel's root is a fresh, read-only tmpfs that holds only these folders of
# the operating system (read-only), its own sandbox folder, the venv and the library (`keep`,
# read-only), a new /proc, a minimal /dev and private size-limited /tmp, /var/tmp and /dev/shm.
# Nothing else of the host exists for it (/home, /root, /srv, /opt, /var, /work, /mnt, ...), wherever
# the course, its suites or other students' submissions are kept.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
DEVICES = ("null", "zero", "full", "random", "urandom")
# The notebooks' run sizes (course/dlcourse/runsize.py; a test checks they agree): Limits.run_size puts
# one into the kernel's environment, which shrinks the notebook's demonstrations (never what is graded).
RUN_SIZES = ("tiny", "small", "large")
RUN_SIZE_ENV = "DLCOURSE_RUN_SIZE"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one submission. Times in seconds, sizes in MB unless said otherwise."""

    cell_timeout: float = 120.0        # one notebook cell
    total_timeout: float = 900.0       # the whole notebook
    call_timeout: float = 60.0         # one call from the hidden suite (student.function(timeout=...) overrides)
    suite_timeout: float = 600.0       # all the hidden suite's calls together, restarts included
    startup_timeout: float = 60.0      # kernel start
    interrupt_grace: float = 5.0       # after SIGINT, how long to wait before killing
    memory_mb: int = 2048              # resident memory of all the submission's processes
    grader_memory_mb: int = 8192       # the grading process's own data (RLIMIT_DATA): what the kernel sends
    #                                    cannot grow the grader past it; a breach fails this grading only
    address_space_extra_mb: int = 4608  # + virtual memory torch reserves without using it
    nproc: int = 512                   # processes + threads
    file_size_mb: int = 256
    nofile: int = 1024
    tmp_size_mb: int = 256             # private /tmp
    disk_mb: int = 512                 # the sandbox folder (home, run folders): a size-limited tmpfs as root
    disk_files: int = 20_000           # files and folders in it (and in each private /tmp)
    output_bytes: int = 1_000_000      # notebook outputs kept in the executed notebook
    output_grace: float = 30.0         # after a cell's reply, how long its last outputs may take to arrive
    result_mb: int = 256               # one result file coming back from the kernel
    threads: int = 1                   # OMP/MKL threads in the kernel
    restarts: int = 3                  # kernel restarts during the notebook, and again during the suite
    gpu: bool = False                  # let the kernel see CUDA devices (no address-space limit then)
    preload: tuple[str, ...] = ("torch", "dlcourse")  # imported at kernel start (not into the notebook's
    #       namespace), so the first cell's time limit is not spent importing them, and a kernel started
    #       before its submission (the batch's pool) has done that work already; one that is missing is skipped
    isolation: str = "auto"            # "auto" (best available) or "none"
    readonly_paths: tuple[str, ...] = field(default_factory=tuple)  # extra paths shown read-only (data)
    run_size: str | None = None        # DLCOURSE_RUN_SIZE in the kernel ("tiny" for banks and the demo)

    def __post_init__(self):
        if self.isolation not in ("auto", "none"):
            raise ValueError(f"Limits.isolation must be 'auto' or 'none', not {self.isolation!r}")
        if not all(m.replace(".", "").replace("_", "").isalnum() for m in self.preload):
            raise ValueError(f"Limits.preload must name modules, not {self.preload!r}")
        if self.run_size is not None and self.run_size not in RUN_SIZES:
            raise ValueError(f"Limits.run_size must be one of {', '.join(RUN_SIZES)} or None, not {self.run_size!r}")
        for name in ("cell_timeout", "total_timeout", "call_timeout", "suite_timeout", "startup_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive")


# --------------------------------------------------------------------------------------------
# Which isolation this machine allows (detected once per process)
# --------------------------------------------------------------------------------------------

_MODE: str | None = None


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def isolation_mode() -> str:
    """'root', 'userns' or 'none' (see the module docstring); probed once per process."""
    global _MODE
    if _MODE is None:
        unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
        if not (unshare and setpriv and sys.platform.startswith("linux")):
            _MODE = "none"
        elif os.geteuid() == 0 and _works([unshare, *_NS_FLAGS, "true"]):
            _MODE = "root"
        elif _works([unshare, "--user", "--map-root-user", *_NS_FLAGS, "true"]):
            _MODE = "userns"
        else:
            _MODE = "none"
    return _MODE


_NS_FLAGS = ["--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--propagation", "private"]


# --------------------------------------------------------------------------------------------
# The per-submission sandbox (grader side)
# --------------------------------------------------------------------------------------------

# Run in the kernel before any student code: one write to stdout/stderr keeps at most `limit`
# characters, so an honest print('x' * 10**8) costs neither the kernel nor the grader much. (A
# hostile kernel can bypass it; the grader's zmq sockets also refuse messages over 128 MB.)
_CAP_WRITES = """\
import ipykernel.iostream as _io
def _capped(write, limit={limit}):
    def capped(self, text):
        if isinstance(text, str) and len(text) > limit:
            text = text[:limit] + f"\\n[output truncated in the kernel: {{len(text)}} characters written]\\n"
        return write(self, text)
    return capped
_io.OutStream.write = _capped(_io.OutStream.write)
del _io, _capped
"""
_LAUNCH = "from ipykernel import kernelapp\nkernelapp.launch_new_instance()"
_NO_CWD = "import sys\nif sys.path and sys.path[0] == '':\n    del sys.path[0]\n"


def _proc_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


_STATUS_KEYS = ("State", "Uid", "PPid")


def _read_status(pid: int) -> dict[str, str]:
    """The fields State, Uid and PPid of /proc/<pid>/status ({} when the process is gone). Only
    these lines are parsed: the watchdog reads every process's status twice a second and after
    every cell, and parsing all ~55 lines took half of that scan's time."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            data = b"\n" + f.read()
    except OSError:
        return {}
    found = {}
    for key in _STATUS_KEYS:
        start = data.find(b"\n" + key.encode() + b":\t")
        if start >= 0:
            start += len(key) + 3
            end = data.find(b"\n", start)
            found[key] = data[start:end if end >= 0 else len(data)].decode(errors="replace")
    return found


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _owner(pid: int) -> int | None:
    """The owner of /proc/<pid>: the process's effective uid, also when it is not dumpable (then only
    the files in the folder belong to root; see Sandbox.processes)."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def kernel_base_env(home: str, threads: int, *, gpu: bool = False) -> dict[str, str]:
    """What every kernel's environment holds, in a sandbox or in the zygote it is forked from
    (zygote.py): the interpreter's PATH, a UTF-8 locale, a headless matplotlib, caches and
    configuration under `home`, no network downloads (DLCOURSE_OFFLINE), `threads` BLAS/OpenMP
    threads, two malloc arenas (less memory per thread), no progress bars, and no GPU unless `gpu`.
    One function, so that the zygote imports torch under the same settings as the kernels run with."""
    t = str(threads)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home,
        "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.config/matplotlib",
        "XDG_CACHE_HOME": f"{home}/.cache", "XDG_CONFIG_HOME": f"{home}/.config",
        "DLCOURSE_OFFLINE": "1", "MALLOC_ARENA_MAX": "2",
        "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t, "TQDM_DISABLE": "1",
    }
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


class Sandbox:
    """One submission's private directory, kernel command and process killer.

    Inputs:
      limits: Limits
      hide: paths the kernel must not see (the repository root, the submissions' folder, ...)
      keep: paths under `hide` that the kernel needs, shown read-only (venv, dlcourse package)
    Use as a context manager; `close()` kills everything and removes the directory.
    """

    def __init__(self, limits: Limits, *, hide=(), keep=()):
        self.limits = limits
        self.mode = "none" if limits.isolation == "none" else isolation_mode()
        self.hide = _outermost(Path(p).resolve() for p in hide)   # only matters inside SYSTEM_DIRS
        interpreter = [Path(sys.base_prefix).resolve(), Path(os.path.realpath(sys.executable)).parent]
        self.keep = sorted({str(Path(p).resolve()) for p in (*keep, *limits.readonly_paths, *interpreter)})
        self.uid: int | None = None
        self._lock_fd: int | None = None
        self.dir: Path | None = None
        self.launcher_pid: int | None = None   # the process jupyter started (unshare, or the kernel)
        self._ns_init: int | None = None       # host pid of the PID namespace's process 1
        self._seen: dict[int, float] = {}      # mode "none": processes seen in the kernel's tree
        self._ns_id: str | None = None
        # Held open while _ns_id / _ns_init / launcher_pid are in use: a namespace's id (its inode
        # number) and a pid are reused by the system as soon as they are freed, and another grading's
        # kernel started in that moment would otherwise be taken for ours and killed.
        self._ns_fd: int | None = None
        self._ns_init_fd: int | None = None
        self._launcher_fd: int | None = None
        self._ns_lock = threading.RLock()
        self._dir_fd: int | None = None
        self._run_fds: dict[Path, int] = {}
        self.disk_bounded = False              # the sandbox folder is a size-limited tmpfs (root mode)
        self._runs = 0

    # ---- life cycle ------------------------------------------------------------------------
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self) -> None:
        """The sandbox folder. As root it is a size-limited tmpfs (disk_mb, disk_files) owned by root
        with mode 0711: the kernel's uid owns only home/ and the run folders inside it, so it can
        neither rename nor replace them, and it cannot fill the host's disk. Every later grader-side
        file operation in it goes through directory file descriptors opened here (no path is
        resolved again), see write_file/read_file/remove_file."""
        prefix = "dlcourse-sbx-"
        if self.mode == "root":
            self.uid = self._claim_uid()
            self._sweep_uid()          # a grader that crashed may have left processes and files behind
            prefix = f"dlcourse-sbx-{self.uid}-"
            for old in Path(tempfile.gettempdir()).glob(prefix + "*"):
                _umount(old)
                shutil.rmtree(old, ignore_errors=True)
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.dir, 0o700)
        if self.mode == "root":
            lim = self.limits
            try:
                _mount(ctypes.CDLL(None, use_errno=True), "tmpfs", str(self.dir), "tmpfs", MS_NOSUID | MS_NODEV,
                       f"size={lim.disk_mb}m,nr_inodes={lim.disk_files},mode=711,uid=0,gid=0")
                self.disk_bounded = True
            except OSError:
                os.chmod(self.dir, 0o711)
        self._dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        for sub in ("home", "tmp"):
            os.mkdir(sub, 0o700, dir_fd=self._dir_fd)
            if self.uid is not None:
                os.chown(sub, self.uid, self.uid, dir_fd=self._dir_fd, follow_symlinks=False)

    def close(self) -> None:
        try:
            self.kill_all()
        finally:
            for fd in [*self._run_fds.values(), self._dir_fd]:
                if fd is not None:
                    os.close(fd)
            self._run_fds, self._dir_fd = {}, None
            if self.dir is not None:
                _umount(self.dir)
                shutil.rmtree(self.dir, ignore_errors=True)   # fd-based: planted symlinks are not followed
                self.dir = None
            self._forget_ns()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def hides(self, path) -> bool:
        """Whether the kernel cannot see `path`: it is outside every folder its root view shows (the
        OS's folders unless covered by `hide`, `keep`, its own sandbox folder)."""
        if self.mode == "none":
            return False
        p = Path(path).resolve()
        shown = [Path(k) for k in self.keep] + ([self.dir.resolve()] if self.dir is not None else [])
        if any(p.is_relative_to(k) for k in shown):
            return False
        in_os = any(p.is_relative_to(Path(d).resolve()) for d in SYSTEM_DIRS)
        return not in_os or any(p.is_relative_to(h) for h in self.hide)

    @property
    def home(self) -> Path:
        return self.dir / "home"

    def _give(self, *paths: Path) -> None:
        """Hand freshly created paths to the sandbox uid (root mode)."""
        if self.uid is not None:
            for p in paths:
                os.chown(p, self.uid, self.uid, follow_symlinks=False)

    def _claim_uid(self) -> int:
        lock_dir = LOCK_DIR_ROOT
        try:
            lock_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            lock_dir = Path(tempfile.gettempdir()) / "dlcourse-grader-uids"
            lock_dir.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(lock_dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise RuntimeError(f"{lock_dir} is not a private root-owned directory; refusing to use it")
        import pwd
        for slot in range(UID_SLOTS):
            uid = UID_BASE + slot
            try:
                pwd.getpwuid(uid)
                continue                        # a real account: never borrow it
            except KeyError:
                pass
            fd = os.open(lock_dir / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._lock_fd = fd
            return uid
        raise RuntimeError(f"all {UID_SLOTS} sandbox uids are in use")

    # ---- the kernel command -------------------------------------------------------------
    def new_run_dir(self) -> Path:
        """A fresh directory for one kernel start (connection file, sockets, request files).

        Created only when no process of the submission is alive, so nothing can have planted
        links in it."""
        self.kill_all()
        self._runs += 1
        name = f"run{self._runs}"
        os.mkdir(name, 0o700, dir_fd=self._dir_fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir_fd)
        if self.uid is not None:
            os.fchown(fd, self.uid, self.uid)
        for old in self._run_fds.values():
            os.close(old)
        self._run_fds = {self.dir / name: fd}
        self._forget_ns()
        return self.dir / name

    def kernel_env(self, run_dir: Path | None = None) -> dict[str, str]:
        """The kernel's whole environment. IPython's and Jupyter's configuration folders live in the
        run directory, which is new at every kernel start: startup scripts or config files that
        student code writes there cannot run at the next start (and the interpreter runs with -E -s:
        no user site-packages or .pth files either)."""
        conf = str(run_dir or self.dir / "conf")
        env = kernel_base_env(str(self.home), self.limits.threads, gpu=self.limits.gpu)
        env.update({
            "TMPDIR": "/tmp" if self.mode != "none" else str(self.dir / "tmp"),
            "TORCH_HOME": f"{self.home}/.cache/torch", "IPYTHONDIR": f"{conf}/ipython",
            "JUPYTER_CONFIG_DIR": f"{conf}/jupyter", "JUPYTER_DATA_DIR": f"{conf}/jupyter-data",
            "JUPYTER_RUNTIME_DIR": f"{conf}/jupyter-runtime", "JUPYTER_PLATFORM_DIRS": "1",
        })
        if self.limits.run_size is not None:
            env[RUN_SIZE_ENV] = self.limits.run_size
        return env

    def _launcher(self, connection_file: Path) -> tuple[str, list[str]]:
        """The kernel's launcher code and its arguments: `python -c LAUNCHER ARGS` starts it."""
        preload = "".join(f"try:\n    import {m}\nexcept ImportError:\n    pass\n" for m in self.limits.preload)
        launcher = f"{_NO_CWD}{preload}{_CAP_WRITES.format(limit=max(1, self.limits.output_bytes // 2))}{_LAUNCH}"
        return launcher, ["-f", str(connection_file), "--HistoryManager.hist_file=:memory:", "--IPKernelApp.quiet=True"]

    def kernel_command(self, connection_file: Path) -> list[str]:
        """argv that starts `python -m ipykernel_launcher -f connection_file` inside the sandbox."""
        launcher, args = self._launcher(connection_file)
        # -E -s: no PYTHON* variables, no user site-packages (.pth files in the student's home);
        # the working folder is left off sys.path until IPython adds it back after our imports.
        return self.command([sys.executable, "-E", "-s", "-B", "-c", launcher, *args])

    def zygote_request(self, connection_file: Path, env: dict[str, str]) -> dict:
        """What the zygote (sandbox_side/zygote.py) needs to start this sandbox's kernel by a fork:
        the sandbox spec of `command`, how to drop privileges (the same as `_privilege_drop`), the
        kernel's environment, and its launcher code and arguments."""
        launcher, args = self._launcher(connection_file)
        spec = self._spec([])
        spec.update(mode=self.mode, drop=self.mode, uid=self.uid, env=dict(env), launcher=launcher, argv=args)
        return spec

    def command(self, argv: list[str]) -> list[str]:
        """argv wrapped so that it runs inside the sandbox: namespaces, mounts, rlimits, uid."""
        spec = self._spec(self._privilege_drop() + list(argv))
        setup = [sys.executable, "-I", "-S", str(SETUP_PROGRAM), json.dumps(spec)]
        # setpriv --pdeathsig: unshare dies with the grader, and takes the namespace with it
        wrap = [shutil.which("setpriv"), "--pdeathsig", "KILL", "--", shutil.which("unshare")]
        if self.mode == "root":
            return [*wrap, *_NS_FLAGS, "--", *setup]
        if self.mode == "userns":
            return [*wrap, "--user", "--map-root-user", *_NS_FLAGS, "--", *setup]
        return setup

    def _spec(self, exec_argv: list[str]) -> dict:
        """setup.py's SPEC: what the kernel's root shows, what is writable, the rlimits, what to exec."""
        lim = self.limits
        nproc = lim.nproc
        if self.mode != "root":         # RLIMIT_NPROC counts every process of the real uid
            nproc += sum(1 for pid in _proc_pids() if _read_status(pid).get("Uid", "").split()[:1] == [str(os.getuid())])
        mb = 2**20
        isolated = self.mode != "none"
        spec = {
            "dir": str(self.dir),
            "root": isolated,
            "hide": [str(p) for p in self.hide if isolated and any(p.is_relative_to(d) for d in SYSTEM_DIRS)],
            "keep": self.keep if isolated else [],
            "writable": [str(self.dir / "home"), *(str(p) for p in self._run_fds)] if isolated else [],
            "devices": [*DEVICES, *(_gpu_devices() if lim.gpu else [])],
            "tmpfs": ({p: (lim.tmp_size_mb if s is None else min(s, lim.tmp_size_mb)) for p, s in PRIVATE_TMPFS.items()}
                      if isolated else {}),
            "inodes": lim.disk_files,
            "system_dirs": list(SYSTEM_DIRS),
            "reaper": self.mode != "none",
            "rlimits": {
                "NPROC": nproc, "FSIZE": lim.file_size_mb * mb, "NOFILE": lim.nofile, "CORE": 0,
                # A CUDA context reserves tens of GB of address space: with a GPU only the watchdog
                # limits memory (host memory; GPU memory is not counted).
                **({} if lim.gpu else {"AS": (lim.memory_mb + lim.address_space_extra_mb) * mb}),
            },
            "exec": exec_argv,
        }
        return spec

    def _privilege_drop(self) -> list[str]:
        setpriv = shutil.which("setpriv")
        if self.mode == "root":
            return [setpriv, f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                    "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]
        if self.mode == "userns":
            return [setpriv, "--no-new-privs", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
                    "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked",
                    "--"]
        return []

    # ---- files shared with the kernel -------------------------------------------------------
    def _at(self, path: Path) -> tuple[int, str]:
        """(directory fd, name) for a file directly inside the current run folder: the folder was
        opened when it was made, so no component of the path is looked up again."""
        fd = self._run_fds.get(Path(path).parent)
        name = Path(path).name
        if fd is None or name in ("", ".", "..") or "/" in name:
            raise OSError(errno.EINVAL, f"{path} is not in the current run folder")
        return fd, name

    def create_file(self, path: Path):
        """A new file in the run folder for the grader to write (the kernel's log): a binary file object."""
        dir_fd, name = self._at(path)
        return os.fdopen(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                 dir_fd=dir_fd), "wb")

    def remove_file(self, path: Path) -> None:
        dir_fd, name = self._at(path)
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass

    def write_file(self, path: Path, data: bytes) -> None:
        """Create `path` (in a run dir) for the kernel to read; never follows a planted link."""
        dir_fd, name = self._at(path)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            if self.uid is not None:
                os.fchown(fd, self.uid, self.uid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def read_file(self, path: Path, max_bytes: int, *, by_kernel: bool = True) -> bytes:
        """Read a file the kernel wrote (by_kernel=False: one the grader made, the kernel's log).
        Raises ValueError with a reason if it is not acceptable."""
        try:
            dir_fd, name = self._at(path)
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            raise ValueError("no result was written") from None
        except OSError as e:
            raise ValueError(f"the result file could not be opened ({errno.errorcode.get(e.errno, e.errno)})") from None
        try:
            st = os.fstat(fd)
            owner = self.uid if self.uid is not None and by_kernel else os.getuid()
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != owner:
                raise ValueError("the result is not a plain file written by the kernel")
            if st.st_size > max_bytes:
                raise ValueError(f"the result is too large ({st.st_size / 2**20:.0f} MB)")
            chunks, left = [], st.st_size + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 24))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
            if len(data) > max_bytes:
                raise ValueError("the result is too large")
            return data
        finally:
            os.close(fd)

    # ---- processes ----------------------------------------------------------------------
    def track(self, launcher_pid: int) -> None:
        """Remember the process the kernel manager started (for killing and the watchdog)."""
        with self._ns_lock:
            self._forget_ns()
            self.launcher_pid = launcher_pid
            self._launcher_fd = _pidfd(launcher_pid)

    def _forget_ns(self) -> None:
        """Drop the kernel's namespace and processes (all dead now); their ids may be reused from here on."""
        with self._ns_lock:
            for fd in (self._ns_fd, self._ns_init_fd, self._launcher_fd):
                if fd is not None:
                    os.close(fd)
            self._ns_fd = self._ns_init_fd = self._launcher_fd = None
            self._ns_init = self._ns_id = None
            if self.mode != "none":
                self.launcher_pid = None

    def _find_ns(self) -> None:
        with self._ns_lock:
            if self._ns_id is not None or self._launcher_fd is None or self.mode == "none":
                return
            launcher = self.launcher_pid
            try:
                with open(f"/proc/{launcher}/task/{launcher}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = [pid for pid in _proc_pids() if _read_status(pid).get("PPid") == str(launcher)]
            mine = _pid_ns(os.getpid())
            for kid in kids:
                try:
                    kid_fd = os.pidfd_open(kid)
                except OSError:
                    continue
                try:
                    ns_fd = os.open(f"/proc/{kid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    os.close(kid_fd)
                    continue
                ns = f"pid:[{os.fstat(ns_fd).st_ino}]"
                # Still the launcher's child, and the launcher still ours: the pid was not reused
                # between reading the list and opening it.
                if (ns != mine and _read_status(kid).get("PPid") == str(launcher)
                        and _alive(self._launcher_fd)):
                    self._ns_init, self._ns_id, self._ns_fd, self._ns_init_fd = kid, ns, ns_fd, kid_fd
                    return
                os.close(ns_fd)
                os.close(kid_fd)

    def processes(self) -> list[int]:
        """Host pids of the submission's live processes (zombies excluded)."""
        self._find_ns()
        me = os.getpid()
        if self.mode == "none":
            return [pid for pid in self._tree() if pid != me]
        # Every pid on the machine is looked at, after every cell and twice a second, so the test
        # that rules most of them out is the cheapest there is: the name of its pid namespace (one
        # readlink) and the owner of its /proc folder (one stat: the folder always belongs to the
        # process's effective uid, dumpable or not, which Linux keeps so for this very use, see
        # task_dump_owner in fs/proc/base.c; the files in it belong to root when it is not dumpable).
        # Only the few that pass have their status read, to leave zombies out. Reading every status
        # instead took 8 us a pid, three times the readlink and stat together.
        found = []
        for pid in _proc_pids():
            if pid == me:
                continue
            if not ((self._ns_id is not None and _pid_ns(pid) == self._ns_id)
                    or (self.uid is not None and _owner(pid) == self.uid)):
                continue
            st = _read_status(pid)
            if st and not st.get("State", "").startswith(("Z", "X")):
                found.append(pid)
        return found

    def _tree(self) -> list[int]:
        """Mode "none": the kernel, its descendants, and whatever was ever seen among them or in its
        process group and is still alive (remembered with its start time, so a reused pid is not hit)."""
        import psutil
        found = {}
        if self.launcher_pid is not None:
            try:
                root = psutil.Process(self.launcher_pid)
                for p in (root, *root.children(recursive=True)):
                    found[p.pid] = p
            except psutil.Error:
                pass
            for p in psutil.process_iter():
                try:
                    if os.getpgid(p.pid) == self.launcher_pid:
                        found[p.pid] = p
                except (OSError, psutil.Error):
                    pass
        for pid, created in list(self._seen.items()):
            try:
                p = psutil.Process(pid)
                if p.create_time() == created:
                    found.setdefault(pid, p)
            except psutil.Error:
                del self._seen[pid]
        alive = []
        for pid, p in found.items():
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    self._seen[pid] = p.create_time()
                    alive.append(pid)
            except psutil.Error:
                pass
        return alive

    def exceeds_memory(self, limit: int) -> bool:
        """Whether the submission's processes together hold more than `limit` bytes of memory_bytes().

        Their resident sizes are added first (/proc/<pid>/statm, a counter the kernel keeps); only
        when those exceed the limit is the exact PSS summed. Reading a PSS walks the process's page
        tables: about 30 ms of CPU for a kernel with torch loaded, and the watchdog asks twice a
        second for every grading. Each process's PSS is at most its resident size, so the answer
        is the same as comparing memory_bytes() itself."""
        pids = self.processes()
        if sum(map(_resident_bytes, pids)) <= limit:
            return False
        return self.memory_bytes(pids) > limit

    def memory_bytes(self, pids: list[int] | None = None) -> int:
        """Memory of all the submission's processes: the sum of their proportional set sizes (PSS),
        so pages that forked children share with their parent are counted once, not per process."""
        total = 0
        for pid in self.processes() if pids is None else pids:
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1]) * 1024
                            break
            except (OSError, ValueError, IndexError):
                pass
        return total

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process of the submission; returns when none is left (or after timeout)."""
        self._find_ns()
        first = self.processes() if self.mode == "none" else []     # before the tree falls apart
        for pid in first:
            _kill(pid, signal.SIGSTOP)
        with self._ns_lock:
            for fd in (self._ns_init_fd, self._launcher_fd):
                _kill_fd(fd)
        for pid in first:
            _kill(pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.uid is not None:
                self._sweep_uid()
            left = self.processes()
            if not left or time.monotonic() > deadline:
                break
            for pid in left:
                _kill(pid, signal.SIGSTOP)     # frozen processes cannot fork any more
            for pid in left:
                _kill(pid)
            time.sleep(0.02)
        if not left and self.mode != "none":
            self._forget_ns()

    def _sweep_uid(self) -> None:
        """kill(-1, SIGKILL) as the sandbox uid: every process of that uid at once, in any namespace.

        The shell's built-in kill makes that one system call (POSIX: pid -1 is every process the
        caller may signal); a Python interpreter to make it cost 15 ms against 3 ms, and a grading
        sweeps at least twice (its kernel's close and its sandbox's)."""
        subprocess.run([shutil.which("setpriv"), f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                        "/bin/sh", "-c", "kill -s KILL -- -1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"}, timeout=30)


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _resident_bytes(pid: int) -> int:
    """Resident set size of a process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _kill(pid: int | None, sig: int = signal.SIGKILL) -> None:
    if pid:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _kill_fd(pidfd: int | None, sig: int = signal.SIGKILL) -> None:
    """Signal through a pidfd: never reaches another process that got the same pid later."""
    if pidfd is not None:
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except OSError:
            pass


def _alive(pidfd: int | None) -> bool:
    if pidfd is None:
        return False
    try:
        signal.pidfd_send_signal(pidfd, 0)
        return True
    except OSError:
        return False


def _gpu_devices() -> list[str]:
    """/dev entries a CUDA kernel needs (nvidia*, dri/...)."""
    try:
        names = [n for n in os.listdir("/dev") if n.startswith("nvidia")]
    except OSError:
        names = []
    return sorted(names) + (["dri"] if os.path.isdir("/dev/dri") else [])


def _umount(path) -> None:
    """Detach a mount (the sandbox folder's tmpfs), if there is one."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(os.fsencode(str(path)), 2)        # MNT_DETACH; fails harmlessly when nothing is mounted


def _outermost(paths) -> list[Path]:
    """Drop paths inside other paths of the list, and paths that must never be hidden."""
    never = {Path("/"), *map(Path, SYSTEM_DIRS), Path("/proc"), Path("/dev"), Path("/tmp"),
             Path(sys.base_prefix).resolve()}
    result: list[Path] = []
    for p in sorted(set(paths), key=lambda q: len(q.parts)):
        if p in never or any(p.is_relative_to(q) for q in result) or not p.is_dir():
            continue
        if Path(sys.base_prefix).resolve().is_relative_to(p):
            continue            # would hide the interpreter itself
        result.append(p)
    return result
