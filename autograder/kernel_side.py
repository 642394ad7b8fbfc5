"""The grader's helper INSIDE the student's kernel: it answers the hidden suite's calls.

The grader never imports the student's objects. It sends this file's source into the kernel once
the notebook has run (kernel.py: `bootstrap_code`), then each call as a short execute_request
`<token>(<request id>)`. The request (which global or handle to call, the arguments, the forbidden
operation groups) is a file `req_<id>.pt` written by the grader (the id is a counter plus random
hex, so student code cannot plant files in its place); the answer is `res_<id>.pt`:

    {"status": "ok", "value": ...}                    plain data; other objects become handles
    {"status": "error", "type": ..., "message": ..., "traceback": [student frames only]}
    {"status": "missing", "name": ...}                the notebook defines no such global
    {"status": "interrupted"}                         the grader interrupted a call that ran too long
    {"status": "forbidden", "ops": [[op, group], ...]}  a forbidden operation ran (even if caught)
    {"status": "tampered", "reason": ...}             the guard was switched off during the call

Nothing here is trusted by the grader: student code runs in this process and could change any of
it. The grader reloads every answer with `torch.load(weights_only=True)` and computes expected
values itself. What this side can honestly enforce is the forbidden-operation guard, and it
checks that the guard still works before and after each call (see `_guarded_call`).

Only the standard library and torch are used (the grader package is not importable in the
kernel: its folder is hidden by the sandbox).
"""
import os
import re
import sys

import torch
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

# Forbidden operation groups: a regular expression over operator names. The dispatch guard sees
# aten operators (aten::convolution, aten::im2col, ...) whatever Python name reached them; the
# function guard sees torch-level functions (F.dropout, torch.conv2d, ...), which matters for
# operators that are decomposed before they reach the dispatcher (dropout on the CPU).
GROUPS = {
    "convolution": r"conv(?!ert)",                     # conv1d/2d/3d, conv_transpose*, convolution*, mkldnn/cudnn_conv*
    "unfold": r"im2col|col2im|unfold",                 # F.unfold, nn.Unfold, F.fold, Tensor.unfold
    "dropout": r"^_?(native_|feature_|alpha_|feature_alpha_|fused_)?dropout([123]d)?_?(backward)?$",
}

MAX_MESSAGE = 2000
MAX_TRACEBACK = 12


class ForbiddenOperation(RuntimeError):
    """Raised inside student code when it runs an operation the current call forbids."""


class _Guard:
    """Matches operator names against the forbidden groups and remembers every violation."""

    def __init__(self, groups):
        self.patterns = [(g, re.compile(GROUPS[g])) for g in groups]
        self.violations = []

    def check(self, name):
        for group, pattern in self.patterns:
            if pattern.search(name):
                self.violations.append([name, group])
                raise ForbiddenOperation(f"{name} is not allowed in this exercise ({group} is forbidden)")


class _DispatchGuard(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls):
        return False        # True would wrap __torch_dispatch__ in dynamo.disable: a 2 s import of dynamo

    def __init__(self, guard):
        super().__init__()
        self.guard = guard

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.guard.check(func.name().split("::")[-1].split(".")[0])
        return func(*args, **(kwargs or {}))


class _FunctionGuard(TorchFunctionMode):
    def __init__(self, guard):
        super().__init__()
        self.guard = guard

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "") or ""
        if not _dropout_does_nothing(name, args, kwargs or {}):
            self.guard.check(name)
        return func(*args, **(kwargs or {}))


def _dropout_does_nothing(name, args, kwargs):
    """F.dropout(x, p, training=False) (an nn.Dropout in eval mode, inside nn.Transformer...) or p=0
    returns its input: calling it is not using torch's dropout. Only dropout-named functions."""
    if "dropout" not in name:
        return False
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    training = args[2] if len(args) > 2 else kwargs.get("training", kwargs.get("train", True))
    try:
        return training is False or float(p) == 0.0
    except (TypeError, ValueError):
        return False


def _probes(group):
    """Calls that must be stopped by the guard if it is really in place."""
    x4, x1 = torch.zeros(1, 1, 1, 1), torch.zeros(2)
    if group == "convolution":
        return [lambda: torch.ops.aten.convolution.default(x4, x4, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
                lambda: torch._C._VariableFunctions.conv2d(x4, x4)]
    if group == "unfold":
        return [lambda: torch.ops.aten.im2col.default(x4, [1, 1], [1, 1], [0, 0], [1, 1]),
                lambda: torch._C._nn.im2col(x4, [1, 1], [1, 1], [0, 0], [1, 1])]
    if group == "dropout":
        return [lambda: torch.ops.aten.native_dropout.default(x1, 0.5, True),
                lambda: torch._C._VariableFunctions.dropout(x1, 0.5, True)]
    return []


def _guard_is_active(guard, dmode, fmode):
    if dmode not in _get_current_dispatch_mode_stack() or fmode not in _get_current_function_mode_stack():
        return False
    for group, _ in guard.patterns:
        for probe in _probes(group):
            try:
                probe()
            except ForbiddenOperation:
                continue
            except BaseException:
                return False
            return False
    guard.violations.clear()
    return True


def _guarded_call(fn, args, kwargs, groups):
    """fn(*args, **kwargs) with the forbidden groups blocked; returns (value, problem dict or None).

    The modes are entered and left by hand (not `with`): student code that pops them would make
    a `with` block's exit raise and lose the verdict."""
    if not groups:
        return fn(*args, **kwargs), None
    guard = _Guard(groups)
    dmode, fmode = _DispatchGuard(guard), _FunctionGuard(guard)
    outcome, problem = None, None
    fmode.__enter__()
    dmode.__enter__()
    try:
        if not _guard_is_active(guard, dmode, fmode):
            problem = {"status": "tampered", "reason": "the guard did not work before the call"}
        else:
            try:
                outcome = ("value", fn(*args, **kwargs))
            except BaseException as e:  # noqa: B036 - re-raised below, after the guard is checked
                outcome = ("error", e)
            violations = list(guard.violations)
            if not _guard_is_active(guard, dmode, fmode):
                problem = {"status": "tampered", "reason": "the guard was disabled during the call"}
            elif violations:
                problem = {"status": "forbidden", "ops": violations[:20]}
    finally:
        for mode in (dmode, fmode):
            try:
                mode.__exit__(None, None, None)
            except BaseException:  # noqa: B036 - popped by student code: reported as tampering above
                problem = problem or {"status": "tampered", "reason": "the guard was removed during the call"}
    if problem is not None:
        return None, problem
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1], None


# ---------------------------------------------------------------- data in, data out

REF, NDARRAY = "__dlcourse_ref__", "__dlcourse_ndarray__"


def _type_name(obj):
    t = type(obj)
    return t.__qualname__ if t.__module__ in ("__main__", "builtins") else f"{t.__module__}.{t.__qualname__}"


class _Codec:
    def __init__(self):
        self.handles = {}

    def decode(self, v):
        if isinstance(v, dict):
            if set(v) == {REF}:
                return self.handles[v[REF]]
            if set(v) == {NDARRAY}:
                return v[NDARRAY].numpy()
            return {k: self.decode(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(self.decode(x) for x in v)
        return v

    def encode(self, v, depth=0):
        if depth > 64:
            return self.handle(v)
        if isinstance(v, torch.Tensor):
            return self.tensor(v)
        if v is None or type(v) in (bool, int, float, complex, str, bytes, torch.dtype, torch.device):
            return v
        np = sys.modules.get("numpy")
        if np is not None and isinstance(v, np.generic) and v.dtype != object:
            return v.item()
        if np is not None and isinstance(v, np.ndarray) and v.dtype != object:
            return {NDARRAY: torch.from_numpy(np.array(v, copy=True))}
        if isinstance(v, int):              # subclasses (IntEnum, ...) become the plain value
            return int.__index__(v)
        if isinstance(v, float):
            return float.__float__(v)
        if isinstance(v, str):
            return str.__str__(v)
        if isinstance(v, tuple):
            return tuple(self.encode(x, depth + 1) for x in v)
        if isinstance(v, list):
            return [self.encode(x, depth + 1) for x in v]
        if isinstance(v, dict) and all(type(k) in (str, int, float, bool) for k in v):
            return {k: self.encode(x, depth + 1) for k, x in v.items()}
        return self.handle(v)

    def tensor(self, t):
        if type(t) not in (torch.Tensor, torch.nn.Parameter):
            with torch._C.DisableTorchFunctionSubclass():
                t = torch.Tensor.as_subclass(t, torch.Tensor)
        requires_grad = bool(t.requires_grad)
        t = t.detach()
        if t.device.type != "meta":
            t = t.cpu()
        t = t.clone()                      # a view would drag its whole storage along
        if requires_grad and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        return t

    def handle(self, obj):
        key = len(self.handles) + 1
        self.handles[key] = obj
        return {REF: key, "type": _type_name(obj)}


# ---------------------------------------------------------------- errors

def _student_traceback(exc, user_ns):
    """The frames of `exc`'s traceback that run notebook code (globals = the notebook's)."""
    import linecache
    lines, tb = [], exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals is user_ns:
            code = frame.f_code
            text = linecache.getline(code.co_filename, tb.tb_lineno).strip()
            where = "in the notebook" if code.co_name == "<module>" else f"in {code.co_name}"
            lines.append(f"line {tb.tb_lineno} {where}: {text}"[:300])
        tb = tb.tb_next
    return lines[-MAX_TRACEBACK:]


def _error(exc, user_ns):
    try:
        message = str(exc)
    except BaseException:
        message = "(the exception's message could not be shown)"
    return {"status": "error", "type": type(exc).__name__[:100], "message": message[:MAX_MESSAGE],
            "traceback": _student_traceback(exc, user_ns)}


# ---------------------------------------------------------------- the dispatcher

def install(token, directory):
    """Register the dispatcher in the notebook's namespace under `token`."""
    from IPython import get_ipython
    user_ns = get_ipython().user_ns
    codec = _Codec()
    missing = object()

    def resolve(target):
        kind, key = target
        if kind == "ref":
            return codec.handles.get(key, missing)
        return user_ns.get(key, missing)

    def run(req):
        op = req["op"]
        obj = resolve(req["target"])
        if op == "has":
            return {"status": "ok", "value": obj is not missing}
        if obj is missing:
            return {"status": "missing", "name": str(req["target"][1])}
        if op == "get":
            return {"status": "ok", "value": codec.encode(obj)}
        if op == "getattr":
            return {"status": "ok", "value": codec.encode(getattr(obj, req["name"]))}
        if op == "state_dict":
            return {"status": "ok", "value": {str(k): codec.tensor(v) for k, v in obj.state_dict().items()}}
        if op == "call":
            fn = obj if req.get("method") is None else getattr(obj, req["method"])
            args, kwargs = codec.decode(req["args"]), codec.decode(req["kwargs"])
            value, problem = _guarded_call(fn, args, kwargs, req.get("forbid") or ())
            return problem or {"status": "ok", "value": codec.encode(value)}
        return {"status": "error", "type": "GraderError", "message": f"unknown request {op!r}", "traceback": []}

    def dispatch(request_id):
        if not re.fullmatch(r"[0-9a-f_]+", request_id):
            raise ValueError("bad request id")
        base = os.path.join(directory, f"{{}}_{request_id}.pt")
        try:
            req = torch.load(base.format("req"), weights_only=True)
            os.unlink(base.format("req"))
            result = run(req)
        except KeyboardInterrupt:
            result = {"status": "interrupted"}
        except BaseException as e:  # noqa: B036 - SystemExit and friends are the student's errors too
            result = _error(e, user_ns)
        tmp = base.format("tmp")
        try:
            torch.save(result, tmp)
        except BaseException as e:  # noqa: B036
            torch.save({"status": "error", "type": type(e).__name__,
                        "message": f"the result could not be sent back: {e}"[:MAX_MESSAGE], "traceback": []}, tmp)
        os.replace(tmp, base.format("res"))

    def warm():
        """The first operation under a TorchDispatchMode imports much of torch (about 2 s): pay it
        here, in a request of its own, not inside the first timed call."""
        _guarded_call(lambda: None, (), {}, tuple(GROUPS))

    dispatch.warm = warm
    user_ns[token] = dispatch
