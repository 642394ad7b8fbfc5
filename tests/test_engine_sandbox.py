"""What the sandbox guarantees, checked from inside it (as root, and as an ordinary user through
unprivileged user namespaces), plus the single-notebook command line end to end."""
from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "toy"))
import toy_kit  # noqa: E402

from autograder import zygote  # noqa: E402
from autograder.runner import _kernel_needs  # noqa: E402
from autograder.sandbox import Limits, Sandbox, isolation_mode  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SECRET_FILE = REPO / "autograder" / "runner.py"
NOBODY = 65534

# Run inside the sandbox; prints one JSON line describing what it could see and do.
PROBE = textwrap.dedent(f"""
    import json, os, resource, socket, subprocess, sys
    out = {{"uid": os.getuid(), "home": os.environ.get("HOME"), "env": sorted(os.environ)}}
    def readable(p):
        try:
            open(p, "rb").read(1)
            return True
        except OSError:
            return False
    out["secret"] = readable({str(SECRET_FILE)!r})
    out["suite"] = readable({str(toy_kit.HERE / "suite" / "test_toy.py")!r})
    out["repo_listing"] = sorted(os.listdir({str(REPO)!r}))
    out["venv"] = readable(sys.executable)
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2).close()
        out["network"] = True
    except OSError:
        out["network"] = False
    out["umount"] = subprocess.run(["umount", {str(REPO)!r}], capture_output=True).returncode
    out["procs"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    out["nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    out["as_gb"] = resource.getrlimit(resource.RLIMIT_AS)[0] / 2**30
    status = dict(line.rstrip("\\n").split(":\t", 1) for line in open("/proc/self/status") if ":\t" in line)
    out["caps"] = {{k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}}
    out["no_new_privs"] = status["NoNewPrivs"]
    out["fds"] = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    import gc
    out["gc"] = [gc.isenabled(), gc.get_freeze_count()]
    open(os.path.join(os.environ["HOME"], "note"), "w").write("home is writable")
    open("/tmp/dlcourse-sandbox-probe", "w").write("private")
    subprocess.Popen(["sleep", "876.5"], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "876.5"])
        os._exit(0)
    print(json.dumps(out))
""")


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def _probe_in_sandbox(forked: bool = False) -> dict:
    """PROBE run in a sandbox: started by exec (sandbox.command), or forked from the kernel zygote
    (autograder/zygote.py: the zygote builds the same sandbox and drops privileges itself)."""
    limits = Limits(memory_mb=1024)
    with Sandbox(limits, hide=[REPO], keep=_kernel_needs()) as sandbox:
        env = {**sandbox.kernel_env(), "HOME": str(sandbox.home)}
        if forked:
            run_dir = sandbox.new_run_dir()
            request = {**sandbox.zygote_request(run_dir / "kernel.json", env), "launcher": PROBE, "argv": []}
            with sandbox.create_file(run_dir / "out") as out:
                kernel = zygote.for_limits(limits).spawn(request, out.fileno(), 60)
            code = kernel.wait(60)
            kernel.close()
            text = sandbox.read_file(run_dir / "out", 2**20, by_kernel=False).decode()
            assert code == 0, text
        else:
            proc = subprocess.run(sandbox.command([sys.executable, "-c", PROBE]), env=env, cwd=sandbox.home,
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            text = proc.stdout
        result = json.loads(text.strip().splitlines()[-1])
        result["mode"] = sandbox.mode
        result["note"] = (sandbox.home / "note").read_text()
    result["leftover"] = _processes_with("876.5")
    return result


def _check(result: dict) -> None:
    assert result["secret"] is False and result["suite"] is False
    assert result["repo_listing"] == [".venv", "course"]          # only what the kernel needs, read-only
    assert result["venv"] is True and result["note"] == "home is writable"
    assert result["network"] is False
    assert result["umount"] != 0                                   # cannot uncover the repository
    assert result["procs"] <= 6                                    # its own PID namespace
    assert result["as_gb"] == pytest.approx(1 + 4.5)
    assert not any(k.startswith(("DLCOURSE_TEST_SECRET", "SSH_", "AWS_", "GITHUB")) for k in result["env"])
    assert result["leftover"] == []                                # setsid and double fork did not escape
    assert not Path("/tmp/dlcourse-sandbox-probe").exists()        # /tmp was private
    assert result["caps"] == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
    assert result["no_new_privs"] == "1"
    assert result["fds"] == [0, 1, 2, 3]        # stdio and the listing itself: nothing of the grader's


FORKED = [pytest.param(False, id="exec"), pytest.param(True, id="zygote")]


@pytest.mark.skipif(os.geteuid() != 0, reason="root mode needs root")
@pytest.mark.parametrize("forked", FORKED)
def test_root_sandbox(monkeypatch, forked):
    monkeypatch.setenv("DLCOURSE_TEST_SECRET", "hunter2")
    result = _probe_in_sandbox(forked)
    assert result["mode"] == "root"
    assert result["uid"] >= 61000 and result["nproc"] == Limits().nproc
    _check(result)
    # The kernel collects its own garbage; forked, it never walks (nor copies) the zygote's objects:
    # torch alone is over 100,000 of them.
    assert result["gc"][0] is True
    assert (result["gc"][1] > 100_000) if forked else (result["gc"][1] == 0)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become nobody")
@pytest.mark.parametrize("forked", FORKED)
def test_user_namespace_sandbox_as_an_ordinary_user(tmp_path, forked):
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_engine_sandbox as t
        print("RESULT", json.dumps(t._probe_in_sandbox({forked!r})))
    """)
    proc = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "HOME": "/tmp", "OMP_NUM_THREADS": "1"}, cwd="/tmp")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, proc.stdout + proc.stderr
    result = json.loads(line[len("RESULT "):])
    if isolation_mode() == "root" and result["mode"] != "userns":
        pytest.skip("unprivileged user namespaces are disabled on this machine")
    assert result["mode"] == "userns"
    _check(result)


@pytest.mark.skipif(isolation_mode() == "none", reason="needs namespaces")
def test_a_grader_killed_with_sigkill_leaves_nothing_running():
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        from autograder.sandbox import Sandbox, Limits
        from autograder.runner import _kernel_needs
        sb = Sandbox(Limits(), hide=[{str(REPO)!r}], keep=_kernel_needs())
        sb.open()
        cmd = sb.command(["/bin/sh", "-c", "sleep 765.4 & sleep 765.4"])
        subprocess.Popen(cmd, env=sb.kernel_env(), start_new_session=True)
        print(sb.dir, flush=True)
        time.sleep(600)
    """)
    grader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        sandbox_dir = Path(grader.stdout.readline().strip())
        assert sandbox_dir.name.startswith("dlcourse-sbx-")
        deadline = time.monotonic() + 20
        while len(_processes_with("765.4")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_processes_with("765.4")) >= 2
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 10
    while _processes_with("765.4") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with("765.4") == []
    shutil.rmtree(sandbox_dir, ignore_errors=True)     # (the next grader on that uid would remove it too)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the grader as nobody")
def test_cli_prints_one_json_object_as_an_ordinary_user():
    """`python -m autograder grade toy s.ipynb --json --root R`, run by nobody: exactly one JSON object
    on stdout, even when the notebook writes to the kernel's fds 1 and 2."""
    root = Path(tempfile.mkdtemp(prefix="dlcourse-cli-"))
    try:
        shutil.copytree(toy_kit.HERE / "suite", root / "autograder" / "suites" / "toy")
        (root / "course" / "toy").mkdir(parents=True)
        shutil.copy(toy_kit.HERE / "release" / "toy.ipynb", root / "course" / "toy" / "toy.ipynb")
        nb = toy_kit.insert_after(toy_kit.submission(), "add",
                                  "import os, sys\nprint('hello')\nos.write(1, b'fd1\\n')\nos.write(2, b'fd2\\n')\n"
                                  "sys.__stdout__.write('dunder stdout\\n')")
        (root / "s.ipynb").write_text(nbformat.writes(nb))
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        proc = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               sys.executable, "-m", "autograder", "grade", "toy", str(root / "s.ipynb"), "--json",
                               "--root", str(root)], capture_output=True, text=True, timeout=180, cwd=REPO,
                              env={"PATH": os.environ["PATH"], "HOME": str(root), "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 1, proc.stdout
        result = json.loads(lines[0])
        assert result["score"] == result["max_score"] == 7.0, result
        assert "fd1" not in proc.stdout and "hello" not in proc.stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_without_namespaces_grading_still_works_and_kills_the_kernels_children(tmp_path):
    """Mode "none" (no user namespaces, e.g. Ubuntu's default policy): rlimits and killing only."""
    from autograder.runner import grade_notebook
    nb = toy_kit.insert_after(toy_kit.submission(), "add",
                              "import subprocess\nsubprocess.Popen(['sleep', '654.3'], start_new_session=True)")
    path = tmp_path / "s.ipynb"
    path.write_text(nbformat.writes(nb))
    details: dict = {}
    result = grade_notebook(toy_kit.toy_assignment(), path, limits=Limits(isolation="none"), details=details)
    assert details["isolation"] == "none"
    assert result["score"] == result["max_score"] == 7.0, result
    assert _processes_with("654.3") == []


SHM_PROBE = textwrap.dedent("""
    import ctypes, json, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    key = 0x7d1c0de
    out = {"ipc": os.readlink("/proc/self/ns/ipc"), "uts": os.readlink("/proc/self/ns/uts")}
    if sys.argv[1] == "create":
        shm = libc.shmget(key, 4096, 0o1666)               # IPC_CREAT | rw for everyone
        addr = libc.shmat(shm, None, 0)
        ctypes.memmove(addr, b"answers of the previous student", 31)
        out["created"] = shm >= 0
    else:
        shm = libc.shmget(key, 0, 0o666)
        out["found"] = shm >= 0
        if shm >= 0:
            out["read"] = ctypes.string_at(libc.shmat(shm, None, 0), 31).decode()
    print(json.dumps(out))
""")


def _run_in_sandbox(code: str, *args: str) -> dict:
    with Sandbox(Limits(memory_mb=512), hide=[REPO], keep=_kernel_needs()) as sandbox:
        proc = subprocess.run(sandbox.command([sys.executable, "-c", code, *args]), env=sandbox.kernel_env(),
                              cwd=sandbox.home, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(isolation_mode() == "none", reason="needs namespaces")
def test_system_v_shared_memory_does_not_outlive_a_grading():
    """A System V segment is not freed when its creator exits: in the host's IPC namespace it would be
    read by the next submission. Each kernel gets its own IPC (and UTS) namespace."""
    first = _run_in_sandbox(SHM_PROBE, "create")
    second = _run_in_sandbox(SHM_PROBE, "look")
    assert first["created"] is True
    assert second["found"] is False, second
    assert os.readlink("/proc/self/ns/ipc") not in (first["ipc"], second["ipc"])   # (ids are reused once freed)
    assert first["uts"] != os.readlink("/proc/self/ns/uts")
    assert f"{0x7d1c0de:10d}" not in Path("/proc/sysvipc/shm").read_text()      # nothing left on the host


def _wait_for(predicate, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(isolation_mode() == "none", reason="needs namespaces")
def test_a_crashed_kernels_clean_up_never_kills_another_gradings_kernel():
    """The cause of the rare kernel death under load: a sandbox remembered its kernel's PID namespace
    by id; when that kernel died, the system reused the id for the next namespace created, often
    another grading's kernel starting at that moment, and the first sandbox's clean-up (and memory
    watchdog) then killed that kernel as its own. Here grading A's kernel dies, grading B starts one,
    and A cleans up: B's kernel must live on."""
    a = Sandbox(Limits(), hide=[REPO], keep=_kernel_needs())
    b = Sandbox(Limits(), hide=[REPO], keep=_kernel_needs())
    a.open()
    b.open()
    try:
        proc_a = subprocess.Popen(a.command(["sleep", "543.21"]), env=a.kernel_env(), cwd=a.home)
        a.track(proc_a.pid)
        assert _wait_for(lambda: a.processes() and a._ns_id is not None)
        # A's kernel dies by itself (a crash). processes() lists the namespace's init too, and killing
        # it ends everything in the namespace, so a later pid in the list may be gone already.
        for pid in [*a.processes(), a._ns_init]:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        proc_a.wait(timeout=20)
        proc_b = subprocess.Popen(b.command(["sleep", "543.22"]), env=b.kernel_env(), cwd=b.home)
        b.track(proc_b.pid)
        assert _wait_for(lambda: _processes_with("543.22") and b.processes() and b._ns_id is not None)
        a.kill_all()                               # A restarts its kernel: its clean-up runs now
        a.memory_bytes()                           # and its watchdog looks at "its" processes
        time.sleep(0.5)
        assert _processes_with("543.22"), "grading A killed grading B's kernel"
        assert proc_b.poll() is None
        assert not set(a.processes()) & set(b.processes())
    finally:
        b.close()
        a.close()
    assert _processes_with("543.2") == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="root mode needs root")
def test_the_sandbox_sees_and_ends_its_namespace_and_its_uid_outside_it_and_nothing_else():
    """What the memory watchdog counts and kill_all ends: every process in the kernel's PID namespace
    (its init runs as root) and every process of the sandbox's uid outside it (as an earlier grading
    with that uid could have left behind), also one that made itself non-dumpable, so that the files
    in its /proc folder belong to root; the uid sweep (kill -1 as that uid) ends those. Nothing else
    on the machine, not even a process of the grader's own uid."""
    sandbox = Sandbox(Limits(), hide=[REPO], keep=_kernel_needs())
    sandbox.open()
    outside = bystander = None
    try:
        assert sandbox.mode == "root"
        kernel = subprocess.Popen(sandbox.command(["sleep", "654.31"]), env=sandbox.kernel_env(), cwd=sandbox.home)
        sandbox.track(kernel.pid)
        hidden = "import ctypes, time\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\ntime.sleep(654.32)"   # not dumpable
        outside = subprocess.Popen([shutil.which("setpriv"), f"--reuid={sandbox.uid}", f"--regid={sandbox.uid}",
                                    "--clear-groups", sys.executable, "-I", "-c", hidden], start_new_session=True)
        bystander = subprocess.Popen(["sleep", "654.33"])
        assert _wait_for(lambda: _processes_with("654.31") and sandbox.processes() and sandbox._ns_id is not None
                         and os.stat(f"/proc/{outside.pid}/status").st_uid == 0)      # prctl done
        found = set(sandbox.processes())
        sleeper = [p for p in _processes_with("654.31") if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sleep")]
        assert {*sleeper, sandbox._ns_init, outside.pid} <= found and kernel.pid not in found   # not the launcher
        assert bystander.pid not in found and os.getpid() not in found
        sandbox.kill_all()
        assert outside.wait(timeout=10) == -9
        assert _processes_with("654.31") == [] and bystander.poll() is None
    finally:
        sandbox.close()
        for proc in (outside, bystander):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="plants a link to a root-only folder; needs root")
def test_a_run_folder_replaced_by_a_symlink_never_redirects_the_root_grader(tmp_path):
    """From a cell, the kernel tries to rename its run folder (and the sandbox folder above it) and
    put a symlink to a root-only folder in its place; the grader (root) then writes its request files
    for the suite's calls. Nothing may appear in the root-only folder, and grading goes on."""
    from autograder.runner import grade_notebook
    target = Path(tempfile.mkdtemp(prefix="dlcourse-root-only-", dir="/var/tmp"))
    os.chmod(target, 0o700)
    plant = textwrap.dedent(f"""
        import os
        from ipykernel.connect import get_connection_file
        run = os.path.dirname(get_connection_file())
        planted = []
        for victim in (run, os.path.dirname(run)):
            try:
                os.rename(victim, victim + ".moved")
                os.symlink({str(target)!r}, victim)
                planted.append(victim)
            except OSError as e:
                print("refused:", e)
        print("planted:", planted)
    """)
    nb = toy_kit.insert_after(toy_kit.submission(), "add", plant)
    path = tmp_path / "s.ipynb"
    path.write_text(nbformat.writes(nb))
    executed = tmp_path / "executed.ipynb"
    try:
        result = grade_notebook(toy_kit.toy_assignment(), path, limits=Limits(call_timeout=30),
                                executed_path=executed)
        assert os.listdir(target) == [], "the root grader wrote where the kernel pointed it"
        assert "planted: []" in executed.read_text()
        assert result["score"] == 7.0, result
    finally:
        shutil.rmtree(target, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="creates folders under /var, /srv and /opt")
def test_a_course_kept_anywhere_is_out_of_the_kernels_sight():
    """Hide by allowing: a course (hidden suite, other students' submissions) under /var/lib, /srv or
    /opt, none of which the grader was told to hide, is neither readable nor named in the kernel's
    /proc/self/mountinfo."""
    import secrets
    places = [Path(f"/var/lib/dlcourse-course-{secrets.token_hex(4)}"),
              Path(f"/srv/dlcourse-course-{secrets.token_hex(4)}"),
              Path(f"/opt/dlcourse-course-{secrets.token_hex(4)}")]
    files = []
    try:
        for place in places:
            for rel in ("autograder/suites/a/test_a.py", "submitted/bob/a/a.ipynb"):
                f = place / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("SECRET-COURSE-FILE")
                files.append(str(f))
            for p in [place, *place.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
        probe = textwrap.dedent(f"""
            import json, os
            found = []
            for f in {files!r}:
                for p in (f, os.path.dirname(f), os.path.dirname(os.path.dirname(f))):
                    try:
                        found.append((p, sorted(os.listdir(p)) if os.path.isdir(p) else open(p).read()))
                    except OSError:
                        pass
            mounts = open("/proc/self/mountinfo").read()
            print(json.dumps({{"found": found, "named": [f for f in {[str(p) for p in places]!r} if f in mounts],
                               "top": sorted(os.listdir("/"))}}))
        """)
        result = _run_in_sandbox(probe)
        assert result["found"] == [] and result["named"] == [], result
        assert not {"srv", "opt", "home", "root", "mnt"} & set(result["top"]), result["top"]
    finally:
        for place in places:
            shutil.rmtree(place, ignore_errors=True)


DISK_PROBE = textwrap.dedent("""
    import errno, json, os
    out = {}
    for where in (os.environ["HOME"], "/tmp", "/dev/shm"):
        written, err = 0, None
        try:
            for i in range(64):                      # at most 64 MB, whatever happens
                with open(os.path.join(where, f"big{i}"), "wb") as f:
                    f.write(b"x" * 2**20)
                written += 1
        except OSError as e:
            err = errno.errorcode.get(e.errno)
        out[where] = [written, err]
        for i in range(64):
            try:
                os.unlink(os.path.join(where, f"big{i}"))
            except OSError:
                pass
    made, err = 0, None
    try:
        for i in range(2000):
            open(os.path.join(os.environ["HOME"], f"f{i}"), "w").close()
            made += 1
    except OSError as e:
        err = errno.errorcode.get(e.errno)
    out["files"] = [made, err]
    print(json.dumps(out))
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="the size-limited sandbox folder is mounted by the root grader")
def test_the_kernels_writable_space_is_bounded_in_bytes_and_files():
    limits = Limits(memory_mb=512, disk_mb=16, disk_files=300, tmp_size_mb=8)
    with Sandbox(limits, hide=[REPO], keep=_kernel_needs()) as sandbox:
        proc = subprocess.run(sandbox.command([sys.executable, "-c", DISK_PROBE]), env=sandbox.kernel_env(),
                              cwd=sandbox.home, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        home = str(sandbox.home)
        assert sandbox.disk_bounded
        assert os.statvfs(sandbox.dir).f_blocks * os.statvfs(sandbox.dir).f_frsize <= 16 * 2**20   # not the disk
    assert result[home][1] == "ENOSPC" and result[home][0] <= 16, result
    assert result["/tmp"][1] == "ENOSPC" and result["/tmp"][0] <= 8, result
    assert result["/dev/shm"][1] == "ENOSPC", result
    assert result["files"][1] == "ENOSPC" and result["files"][0] < 300, result


@pytest.mark.skipif(zygote.for_limits(Limits()) is None, reason="no kernel zygote here (not Linux, or switched off)")
def test_a_broken_zygote_is_replaced_and_its_process_ended():
    """A zygote that stopped answering (spawn marks it broken) is replaced at the next kernel start,
    and its process is killed with its private home removed, not left running beside the new one.
    Oracle: the operating system's view of the old process (waitpid) and of its home folder."""
    old = zygote.for_limits(Limits())
    old.broken = True
    new = zygote.for_limits(Limits())
    assert new is not old and not new.broken and new.process.poll() is None
    assert old.process.returncode is not None                  # reaped: it exited or was killed
    assert old.home and not Path(old.home).exists()
    assert zygote.for_limits(Limits()) is new                  # the new one serves from now on


@pytest.mark.skipif(zygote.for_limits(Limits()) is None, reason="no kernel zygote here (not Linux, or switched off)")
def test_a_zygote_whose_grader_was_killed_exits_and_removes_its_home():
    """A batch killed with SIGKILL runs no clean-up of its own: its zygote, seeing end-of-file on
    the control socket, must still exit and remove its private home, or every killed batch leaves
    a folder in /tmp of the grading server. Oracle: the folder and the process, seen from here."""
    code = ("import os, sys, time\n"
            "from autograder import zygote\n"
            "from autograder.sandbox import Limits\n"
            "z = zygote.for_limits(Limits())\n"
            "print(z.home, z.process.pid, flush=True)\n"
            "time.sleep(600)\n")
    grader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        home, pid = grader.stdout.readline().split()
        assert Path(home).is_dir()
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 120                          # it may still be importing torch
    while (Path(home).exists() or Path(f"/proc/{pid}").exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(home).exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_notebook_imports_are_what_the_code_cells_import_by_name(tmp_path):
    """Oracle: the import statements written into the notebook below."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("import not_code"),
                nbformat.v4.new_code_cell("import json, os.path as p\n%matplotlib inline\n!pip list\n"
                                          "from email import message\nfrom . import nearby\n"
                                          "import dlcourse as dl\nfrom dlcourse.data import x\nimport autograder\n"
                                          "def f():\n    import csv\n"),
                nbformat.v4.new_code_cell("%%time\nimport never_parsed"),
                nbformat.v4.new_code_cell("import json\nimport html.parser")]
    path = tmp_path / "release.ipynb"
    nbformat.write(nb, path)
    assert zygote.notebook_imports(path) == ("json", "os.path", "email", "csv", "html.parser")
    nb.cells.append(nbformat.v4.new_code_cell("train_iter, val_iter = dl.load_data('digits', batch_size=64)"))
    nbformat.write(nb, path)
    assert zygote.notebook_imports(path) == ("json", "os.path", "email", "csv", "html.parser",
                                             *zygote.COURSE_LIBRARY_CALLS["load_data"])
    assert zygote.notebook_imports(tmp_path / "missing.ipynb") == ()


def test_the_course_library_calls_list_what_its_data_functions_import():
    """Oracle: the import statements inside the functions of dlcourse/data.py (the library imports
    its data sets' dependencies there, and only there), read from its source."""
    source = (REPO / "course" / "dlcourse" / "data.py").read_text()
    found = set()
    for function in (n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and not node.module.startswith("dlcourse"):
                for a in node.names:                   # `from torchvision.transforms import v2`: a module
                    full = f"{node.module}.{a.name}"
                    found.add(full if _is_module(full) else node.module)
    for name in ("load_data", "get_datasets"):
        assert set(zygote.COURSE_LIBRARY_CALLS[name]) == found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.skipif(zygote.for_limits(Limits()) is None, reason="no kernel zygote here (not Linux, or switched off)")
def test_a_new_zygote_imports_what_the_notebook_imports():
    """Oracle: the zygote process's memory map, which lists scipy.signal's compiled extension only
    once that module was imported there (nothing else in the zygote imports scipy.signal)."""
    z = zygote.Zygote(zygote.for_limits(Limits()).key, also=("scipy.signal",))     # a second one, for this test
    try:
        assert z.preload[-1] == "scipy.signal" and "torch" in z.preload
        maps = Path(f"/proc/{z.process.pid}/maps")
        deadline = time.monotonic() + 120
        while "scipy/signal/" not in maps.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "scipy/signal/" in maps.read_text()
    finally:
        z.close()
    assert z.process.returncode is not None and not Path(z.home).exists()


@pytest.mark.skipif(zygote.for_limits(Limits()) is None, reason="no kernel zygote here (not Linux, or switched off)")
def test_a_forked_kernel_runs_the_zygotes_compiled_helper_and_falls_back_to_the_source():
    """A kernel forked from the zygote installs the grader's helper from the copy the zygote compiled
    (sandbox_side/zygote.py `_compile_bootstrap`), which the first cell takes out of sys.modules; a
    kernel without it (here: the copy is gone, as after a notebook ran in it) gets the source; either
    way the dispatcher is installed under its token. Oracle: the kernel's own namespace, read back."""
    from autograder.assignments import find_assignment
    from autograder.runner import WarmKernel
    assignment = find_assignment("01_convolution")
    warm = WarmKernel(assignment, Limits())
    try:
        process = warm.session.process
        assert process.bootstrapped and process.bootstrapped_from == "zygote"
        assert _kernel_value(process, "__import__('sys').modules.get('_dlcourse_grader_bootstrap') is None") is True
        assert _kernel_value(process, f"callable({process.token})") is True
        process.bootstrapped = False                     # installed again: the compiled copy is gone now
        process.token += "_again"
        assert asyncio.run(process.bootstrap(60)) == "ok"
        assert process.bootstrapped_from == "source"
        assert _kernel_value(process, f"callable({process.token})") is True
        assert _kernel_value(process, "6 * 7") == 42
    finally:
        warm.close()


def _kernel_value(process, expression: str):
    """The value of `expression` in the kernel's namespace, saved by the kernel and read back here."""
    import torch
    code = f"import torch\ntorch.save({expression}, {str(process.run_dir / 'probe.pt')!r})"
    assert asyncio.run(process.run_quiet(code, 60)) == "ok"
    return torch.load(process.run_dir / "probe.pt", weights_only=True)
