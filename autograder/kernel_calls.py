"""Serving the hidden suite's calls into the student's kernel, after the notebook has run.

Each `request(...)` (from the proxies of proxy.py) goes to the dispatcher in the kernel
(kernel_side/dispatcher.py) as a `torch.save` file; the answer comes back as a file read with
`torch.load(weights_only=True)`, so no object of the student's is ever unpickled here, and it is
checked against the result limits before it is decoded. Student output during calls is never
read: the call client has no iopub channel.

Time is bounded twice: a call that runs too long is interrupted (StudentTimeout; killed and the
kernel restarted if it ignores the interrupt), a function whose call timed out fails at once on
every later call, and all calls together get limits.suite_timeout. A kernel that dies is restarted
and the notebook's cells replayed (StudentCrash), so later tests still run; restarts are counted
per exercise, so one exercise that keeps crashing the kernel cannot use up the next one's.
"""
from __future__ import annotations

import io
import secrets
import time

from jupyter_core.utils import run_sync

from autograder.kernel_process import KernelProcess, bootstrap_code, log, short
from autograder.kernel_side import dispatcher as kernel_side
from autograder.proxy import (BadResult, ForbiddenCall, MissingName, StudentCrash, StudentError, StudentTimeout,
                              check_result, decode_result)


class KernelCalls:
    """The suite's calls into `process`'s kernel (see the module docstring).

    Inputs: process (the KernelProcess), timings (the session's figures: calls counted in
    timings["calls"] and timed in timings["call_seconds"]). Set from outside: `exercise` (the test
    cell being graded, by the plugin) and `tampering` (suspicious names in the student's code, by
    the runner). Read from outside: `notes` (for the student) and `tamper_events` (for the
    instructor).
    """

    def __init__(self, process: KernelProcess, timings: dict):
        self.process, self.limits, self.timings = process, process.limits, timings
        # The suite's restarts are counted per exercise (the test cell being graded, set by the
        # plugin): an exercise whose calls keep crashing the kernel spends its own budget, and the
        # next exercise still gets a fresh kernel and its own restarts.
        self.exercise: str | None = None
        self.call_restarts: dict[str | None, int] = {}
        self.exhausted: set[str | None] = set()
        self.tampering: list[str] = []     # set by the runner: suspicious names in student code
        self.tamper_events: list[str] = []  # guard tampering seen during calls (for the instructor)
        self.notes: list[str] = []         # student-facing notes from the call phase
        self.hung: dict[tuple, str] = {}   # function -> the message of its call that timed out
        self._suite_deadline: float | None = None   # set by the first call: start + limits.suite_timeout
        self._request_id = 0

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
        p = self.process
        if p.broken:
            raise StudentCrash(p.broken)
        if self.exercise in self.exhausted:
            raise StudentCrash(self._exhausted_note())
        if p.km is None or not await p.alive():
            await self._restart_for_calls("the kernel was not running")
        if not p.bootstrapped:
            status = await p.bootstrap(max(1.0, self._seconds_left(60)))
            if status != "ok":
                p.broken = ("the grader's helper could not run in your kernel (did the notebook replace "
                            "Python built-ins or torch functions?)")
                raise StudentCrash(p.broken)
            p.bootstrapped = True

    def _exhausted_note(self) -> str:
        where = f" while grading {self.exercise}" if self.exercise else ""
        return (f"the kernel was restarted {self.limits.restarts} times{where}; not restarted again for "
                f"this exercise")

    async def _restart_for_calls(self, why: str) -> None:
        p = self.process
        used = self.call_restarts[self.exercise] = self.call_restarts.get(self.exercise, 0) + 1
        if used > self.limits.restarts:
            self.exhausted.add(self.exercise)
            await p.stop()               # the next exercise starts a fresh kernel on its own budget
            raise StudentCrash(self._exhausted_note())
        if not await p.restart_and_replay(self._suite_deadline):
            if p.broken:
                raise StudentCrash(p.broken)
            self.notes.append("after a restart during grading, the notebook's cells could not all be run again")
        self.notes += p.take_replay_notes()
        log.info("kernel restarted for calls: %s", why)

    async def _request(self, request: dict, label: str, timeout: float) -> dict:
        import torch
        p = self.process
        await self._ensure_ready()
        if request.get("forbid") and not p.guard_warm:
            p.guard_warm = True
            await p.run_quiet(f"{p.token}.warm()", max(1.0, self._seconds_left(120)))
        self._request_id += 1
        rid = f"{self._request_id}_{secrets.token_hex(6)}"     # unguessable: nothing can be planted there
        buffer = io.BytesIO()
        torch.save(request, buffer)
        try:
            p.sandbox.write_file(p.run_dir / f"req_{rid}.pt", buffer.getvalue())
        except OSError as e:         # the student's code removed or locked the kernel's working folder
            await self._restart_for_calls(f"request file: {e}")
            raise StudentCrash(f"{label} could not be called: your code damaged the kernel's working folder; "
                               f"the kernel was restarted") from None
        msg_id = p.ckc.execute(f"{p.token}({rid!r})", silent=True, store_history=False,
                               allow_stdin=False, stop_on_error=False)
        reply = await p.wait_reply(p.ckc, msg_id, timeout)
        if reply == "timeout":
            error = StudentTimeout(f"{label} did not finish within {timeout:g} s and was stopped")
            error.timed_out = True
            if not await p.interrupt():
                try:
                    await self._restart_for_calls(f"{label} ignored the interrupt")
                except StudentCrash:
                    pass                       # later calls find the kernel broken; this one timed out
            raise error
        if reply == "dead":
            why = p.death_reason()
            await self._restart_for_calls(why)
            raise StudentCrash(f"{label}: {why}; the kernel was restarted")
        if reply["content"].get("status") != "ok":
            # The dispatcher itself failed (student code broke what it needs): start afresh.
            await self._restart_for_calls(f"the dispatcher failed: {reply['content'].get('ename')}")
            raise StudentError(f"{label} could not be called: the grader's helper in your kernel failed "
                               f"({short(reply['content'].get('ename', ''))}); the kernel was restarted")
        return self._read_result(rid, label)

    def _read_result(self, rid: str, label: str) -> dict:
        import torch
        sandbox = self.process.sandbox
        path = self.process.run_dir / f"res_{rid}.pt"
        try:
            data = sandbox.read_file(path, self.limits.result_mb * 2**20)
        except ValueError as e:
            raise BadResult(f"{label}: the result could not be read back ({e})") from None
        try:
            result = torch.load(io.BytesIO(data), weights_only=True)
        except Exception as e:  # UnpicklingError and friends: not plain data
            raise BadResult(f"{label} returned data the grader does not accept ({_unsupported(e)}); "
                            f"expected tensors, numbers, strings or lists/tuples/dicts of these") from None
        finally:
            try:
                sandbox.remove_file(path)
            except OSError:
                pass
        result = check_result(result, label, self.limits.result_mb * 2**20)
        if not isinstance(result, dict) or not isinstance(result.get("status"), str):
            raise BadResult(f"{label}: the result came back in an unexpected form")
        if result.get("restored"):      # for the instructor: the notebook had replaced grading internals
            restored = result["restored"]
            names = ", ".join(str(n) for n in restored[:5]) if isinstance(restored, list) else ""
            self.tamper_events.append(short(f"{label}: the notebook had replaced torch, pickle or process internals "
                                            f"(put back before the call): {names}"))
        return result

    def _interpret(self, result: dict, label: str):
        status = result["status"]
        if status == "ok":
            return decode_result(result.get("value"), self, label)
        if status == "missing":
            raise MissingName(f"the notebook does not define {short(result.get('name', label), 80)} (did its cell "
                              f"run without errors?)")
        if status == "interrupted":
            raise StudentTimeout(f"{label} was interrupted")
        if status == "forbidden":
            ops = result.get("ops")
            found = [(str(item[0])[:200], str(item[1])[:50]) for item in (ops if isinstance(ops, list) else [])[:20]
                     if isinstance(item, (list, tuple)) and len(item) == 2]
            calls = sorted({op for op, group in found if group == "call"})
            if calls:
                raise ForbiddenCall(f"{label} called {short(', '.join(calls), 300)}, which this exercise does not "
                                    f"allow: write this part yourself")
            ops = ", ".join(sorted({f"{op} ({group})" for op, group in found}))
            raise ForbiddenCall(f"{label} used a forbidden operation: {short(ops, 300)}")
        if status == "tampered":
            self.tamper_events.append(f"{label}: {short(result.get('reason', ''))}")
            raise ForbiddenCall(f"{label}: the grading guard was disabled ({short(result.get('reason', ''))})")
        if status == "error":
            type_name = short(result.get("type", "Exception"), 100)
            message = short(result.get("message", ""), 500)
            tb = [str(x) for x in result.get("traceback", [])][-8:]
            text = f"{label} raised {type_name}: {message}"
            if type_name == "NotImplementedError":
                text += " (not implemented yet?)"
            if tb:
                text += "\n" + "\n".join("  " + line for line in tb)
            raise StudentError(text, type_name=type_name, error_message=message, traceback=tb)
        raise BadResult(f"{label}: the result came back in an unexpected form")


def _function_key(request: dict, label: str) -> tuple | None:
    """What counts as "the same function" for a call request: a notebook global by name (and
    method), an object's method by its type and name (every instance of a class shares the code
    that hung); None for requests that are not calls."""
    if request.get("op") != "call":
        return None
    kind, key = request["target"]
    return ("name", key, request.get("method")) if kind == "name" else ("object", label)


def _unsupported(error: Exception) -> str:
    """The type named in a weights_only refusal, e.g. 'an object of type __main__.Liar'."""
    import re
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    return f"an object of type {m.group(1)}" if m else "not plain data"
