"""The grader's helper INSIDE the student's kernel: it answers the hidden suite's calls.

The grader never imports the student's objects. It sends this file's source into the kernel when
the kernel starts, before the notebook's first cell (kernel_process.py: `bootstrap_code`; again
after every restart), then each call as a short execute_request
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

Run before any student code. The grader sends this file when the kernel starts, before the
notebook's first cell, so what it captures here is the library's, not the notebook's:
  * the functions the dispatcher itself uses (file I/O from `posix`, compiled patterns, torch.save
    and torch.load, nn.Module.state_dict), and a snapshot of the modules and classes they run on
    (torch, torch.serialization, pickle, ...): before it reads a request and again before it writes
    an answer, the dispatcher puts back every attribute and every function's code the notebook
    replaced there (`_PRISTINE.restore()`), so a wrapped `torch.load` or a replaced serialiser
    cannot drop or alter the guard's request or forge its answer;
  * the thread starter: every thread started after this point (threading.Thread, executors,
    timers, `_thread.start_new_thread`) runs under relay modes that apply the guard of the call in
    progress, so a forbidden operation run in a helper thread (started before or during the call) is
    caught like one in the calling thread.
What no code inside the process can promise (a student may reach the originals through `gc`),
the grader does not rely on: results are plain data it checks itself (see proxy.py and the suites).
"""
import _thread
import copyreg as _copyreg
import functools as _functools
import io as _io
import os
import pickle as _pickle
import posix as _posix
import re
import sys
import threading as _threading
import types as _types
import warnings as _warnings
from importlib import import_module as _import_module

import torch
import torch._utils
import torch._weights_only_unpickler
import torch.serialization
import torch.overrides
import torch.utils._python_dispatch
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

# ---------------------------------------------------------------- captured before student code
_SAVE, _LOAD, _BYTES_IO = torch.save, torch.load, _io.BytesIO
_OPEN, _READ, _WRITE, _CLOSE, _UNLINK, _REPLACE, _FSTAT = (_posix.open, _posix.read, _posix.write, _posix.close,
                                                           _posix.unlink, _posix.replace, _posix.fstat)
_O_RDONLY, _O_WRONLY, _O_CREAT, _O_EXCL, _O_NOFOLLOW = (os.O_RDONLY, os.O_WRONLY, os.O_CREAT, os.O_EXCL,
                                                        os.O_NOFOLLOW)
_REQUEST_ID = re.compile(r"[0-9a-f_]+")
_MODULE, _MODULE_STATE_DICT = torch.nn.Module, torch.nn.Module.state_dict
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
_REAL_START_NEW_THREAD = _thread.start_new_thread
_isinstance, _type, _len, _list, _dict, _str = isinstance, type, len, list, dict, str


class _Pristine:
    """A snapshot of modules and classes the dispatcher runs on; restore() undoes the notebook's
    changes to them (replaced or deleted functions, classes, modules and descriptors; functions whose
    code was swapped). Plain data (flags, caches, thread-local state that the library itself rebinds
    as it runs) is not part of it."""

    def __init__(self, namespaces):
        self.items = []          # (owner, is_class, {name: value}, [(function, code, defaults, kwdefaults)])
        for owner in namespaces:
            values = {k: v for k, v in vars(owner).items()
                      if callable(v) or _isinstance(v, (staticmethod, classmethod, property, _types.ModuleType))}
            functions = [(f, f.__code__, f.__defaults__, f.__kwdefaults__) for f in values.values()
                         if _type(f) is _types.FunctionType]
            self.items.append((owner, _isinstance(owner, type), values, functions))

    def restore(self):
        """Put everything back; returns the names of what had been changed (at most 10)."""
        changed = []
        for owner, is_class, values, functions in self.items:
            current = vars(owner)
            for name, value in values.items():
                if current.get(name, self) is not value:
                    try:
                        setattr(owner, name, value)
                        changed.append(f"{getattr(owner, '__name__', '?')}.{name}")
                    except (AttributeError, TypeError):
                        pass
            for f, code, defaults, kwdefaults in functions:
                if f.__code__ is not code or f.__defaults__ is not defaults or f.__kwdefaults__ is not kwdefaults:
                    f.__code__, f.__defaults__, f.__kwdefaults__ = code, defaults, kwdefaults
                    changed.append(f"{getattr(f, '__module__', '?')}.{f.__qualname__}")
        return changed[:10]

# Forbidden operation groups: a regular expression over operator names. The dispatch guard sees
# aten operators (aten::convolution, aten::im2col, ...) whatever Python name reached them; the
# function guard sees torch-level functions (F.dropout, torch.conv2d, ...), which matters for
# operators that are decomposed before they reach the dispatcher (dropout on the CPU).
GROUPS = {
    "convolution": r"conv(?!ert)",                     # conv1d/2d/3d, conv_transpose*, convolution*, mkldnn/cudnn_conv*
    "unfold": r"im2col|col2im|unfold",                 # F.unfold, nn.Unfold, F.fold, Tensor.unfold
    "dropout": r"^_?(native_|feature_|alpha_|feature_alpha_|fused_)?dropout([123]d)?_?(backward)?$",
    # Tensor.backward, torch.autograd.grad/backward, torch.func.grad/vjp (the function guard sees their names),
    # forward-mode duals (jvp, jacfwd); and, in the dispatch guard, any operator run by the autograd engine
    # while it executes a backward node, however the engine was reached (see _DispatchGuard).
    "autograd": r"^(backward|grad|_?make_dual|_?unpack_dual)$",
    "pooling": r"pool",                                # max/avg/adaptive/fractional/lp pooling, their backwards, unpool
    "normalization": r"(batch|instance|layer|group)_norm",      # F.batch_norm, nn.BatchNorm*, native_*_norm, ...
}

_PATTERNS = {g: re.compile(p) for g, p in GROUPS.items()}
MAX_MESSAGE = 2000
MAX_TRACEBACK = 12


class ForbiddenOperation(RuntimeError):
    """Raised inside student code when it runs an operation the current call forbids."""


class _Guard:
    """Matches operator names against the forbidden groups and remembers every violation."""

    def __init__(self, groups):
        self.patterns = [(g, _PATTERNS[g]) for g in groups]
        self.watches_autograd = "autograd" in groups
        self.violations = []

    def check(self, name):
        for group, pattern in self.patterns:
            if pattern.search(name):
                self.violations.append([name, group])
                raise ForbiddenOperation(f"{name} is not allowed in this exercise ({group} is forbidden)")

    def check_autograd_engine(self, name):
        """An operator ran inside a backward node of the autograd engine: autograd computed a gradient."""
        self.violations.append([f"autograd backward ({name})", "autograd"])
        raise ForbiddenOperation("autograd is not allowed in this exercise (it computed a gradient)")


class _DispatchGuard(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls):
        return False        # True would wrap __torch_dispatch__ in dynamo.disable: a 2 s import of dynamo

    def __init__(self, guard):
        super().__init__()
        self.guard = guard

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name().split("::")[-1].split(".")[0]
        self.guard.check(name)
        if self.guard.watches_autograd and torch._C._current_autograd_node() is not None:
            self.guard.check_autograd_engine(name)
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


# ---------------------------------------------------------------- every thread
#
# Torch's mode stacks are per thread: the modes _guarded_call enters cover the calling thread only.
# Every thread started after this file ran goes through _start_new_thread, which makes it run under
# the relay modes below for its whole life; while a guarded call is in progress (`_ARMED` holds its
# guard) they apply that guard, otherwise they pass every operation through.

_ARMED = []


class _RelayDispatch(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls):
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _ARMED:
            guard = _ARMED[0]
            guard.check(func.name().split("::")[-1].split(".")[0])
            if guard.watches_autograd and torch._C._current_autograd_node() is not None:
                guard.check_autograd_engine(func.name())
        return func(*args, **(kwargs or {}))


class _RelayFunction(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if _ARMED:
            name = getattr(func, "__name__", "") or ""
            if not _dropout_does_nothing(name, args, kwargs or {}):
                _ARMED[0].check(name)
        return func(*args, **(kwargs or {}))


def _start_new_thread(function, args=(), kwargs=None):
    """_thread.start_new_thread, with the new thread under the relay modes."""
    def relayed(*a, **k):
        _RelayDispatch().__enter__()
        _RelayFunction().__enter__()
        return function(*a, **k)
    return _REAL_START_NEW_THREAD(relayed, tuple(args), dict(kwargs or {}))




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
    if group == "pooling":
        return [lambda: torch.ops.aten.max_pool2d_with_indices.default(x4, [1, 1]),
                lambda: torch._C._nn.avg_pool2d(x4, [1, 1])]
    if group == "normalization":
        x3 = torch.zeros(2, 1, 1)
        return [lambda: torch.ops.aten.native_batch_norm.default(x3, None, None, None, None, True, 0.1, 1e-5),
                lambda: torch._C._VariableFunctions.batch_norm(x3, None, None, None, None, True, 0.1, 1e-5, False)]
    if group == "dropout":
        return [lambda: torch.ops.aten.native_dropout.default(x1, 0.5, True),
                lambda: torch._C._VariableFunctions.dropout(x1, 0.5, True)]
    if group == "autograd":
        return [_grad_probe, _engine_probe]
    return []


def _grad_probe():
    leaf = torch.ones(2, requires_grad=True)
    torch.autograd.grad((leaf * 2).sum(), leaf)


def _engine_probe():
    """A backward pass run by the autograd engine directly, past every Python-level name."""
    leaf = torch.ones(2, requires_grad=True)
    out = (leaf * leaf).sum()
    torch.autograd.Variable._execution_engine.run_backward((out,), (torch.ones(()),), False, False, (), False, True)


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


# ---------------------------------------------------------------- forbidden callables
#
# A suite may forbid calling given Python callables inside the student's function (a library's
# finished answer such as dlcourse.receptive_field, a ready-made network such as anything in
# torchvision.models). Names do not matter: while the guarded call runs, the CODE of every such
# function (every function of a forbidden class, module or package) is swapped for a tripwire
# that records the call and raises ForbiddenOperation. Every alias, `import ... as`, getattr,
# functools.partial, subclass calling super().__init__ and every thread reaches the same function
# objects, so all of them hit the tripwire; the original code is put back after the call.

_TRIP_CODES = {}


def _tripwire_code(nfree, recorder, key):
    """A code object taking any arguments that returns recorder(key), with `nfree` free variables
    (a function's new __code__ must have as many as its closure). recorder and key are stored as
    constants: the code runs with the forbidden function's globals, where no name of ours exists."""
    if nfree not in _TRIP_CODES:
        free = [f"_v{i}" for i in range(nfree)]
        src = ("def _outer():\n" + "".join(f"    {v} = None\n" for v in free)
               + "    def _forbidden(*args, **kwargs):\n"
               + (f"        {', '.join(free)}\n" if free else "")
               + "        return 'RECORDER'('KEY')\n    return _forbidden\n")
        ns = {}
        with _warnings.catch_warnings():             # "'str' object is not callable": on purpose
            _warnings.simplefilter("ignore")
            exec(compile(src, "<dlcourse-grader>", "exec"), ns)
        _TRIP_CODES[nfree] = ns["_outer"]().__code__
    code = _TRIP_CODES[nfree]
    return code.replace(co_consts=tuple(recorder if c == "RECORDER" else key if c == "KEY" else c
                                        for c in code.co_consts))


def _functions_of(obj, root, prefix=None):
    """The Python functions behind `obj` (a function and what it wraps, every function of a
    class, every function and class of a module and its submodules), defined in files under
    `root`, as (function, display name) pairs."""
    found, seen = [], set()

    def add(f, name):
        while isinstance(f, _types.FunctionType) and id(f) not in seen:
            seen.add(id(f))
            if f.__code__.co_filename.startswith(root):
                found.append((f, name))
            f = f.__dict__.get("__wrapped__")

    def add_class(cls, name):
        if id(cls) in seen:
            return
        seen.add(id(cls))
        for v in list(vars(cls).values()):
            if isinstance(v, (staticmethod, classmethod)):
                v = v.__func__
            if isinstance(v, property):
                for g in (v.fget, v.fset, v.fdel):
                    add(g, name)
            else:
                add(v, name)

    if isinstance(obj, _types.ModuleType):
        for mod_name, mod in list(sys.modules.items()):
            if not (mod_name == prefix or mod_name.startswith(prefix + ".")) or mod is None:
                continue
            for v in list(vars(mod).values()):
                module = getattr(v, "__module__", None) if isinstance(v, (type, _types.FunctionType)) else None
                if not isinstance(module, str) or not (module == prefix or module.startswith(prefix + ".")):
                    continue
                if isinstance(v, type):
                    add_class(v, f"{module}.{v.__qualname__}")
                else:
                    add(v, f"{module}.{v.__qualname__}")
    elif isinstance(obj, type):
        add_class(obj, prefix)
    else:
        add(obj.func if isinstance(obj, _functools.partial) else obj, prefix)
    return found


class _Tripwires:
    """Resolves forbidden-callable specs (cached per kernel) and arms/disarms their tripwires.

    A module the kernel has not imported is not imported here (torchvision alone takes seconds):
    while the call runs, an import hook arms it as soon as the student's code imports it."""

    def __init__(self):
        self.resolved = {}          # spec name -> [(function, display name)]

    def resolve(self, spec):
        """spec: {"name", "module", "attrs", "root", "kind"} from the grader (which resolved the
        name in its own process); None while its module is not imported. Raises LookupError when
        the kernel's objects are not the library's (the notebook replaced the module or function)."""
        name = spec["name"]
        if name in self.resolved:
            return self.resolved[name]
        module = sys.modules.get(spec["module"])
        if module is None:
            return None
        obj = module
        try:
            for attr in spec["attrs"]:
                obj = getattr(obj, attr)
        except AttributeError:
            raise LookupError(f"{name} was removed from its module") from None
        kind = "module" if isinstance(obj, _types.ModuleType) else "class" if isinstance(obj, type) else "function"
        functions = _functions_of(obj, spec["root"], spec["module"] if kind == "module" else name)
        if kind != spec["kind"] or not functions:
            raise LookupError(f"{name} in the kernel is not the library's {spec['kind']}")
        self.resolved[name] = functions
        return functions

    def arm(self, specs, violations):
        """Swap in the tripwires; returns the list of (function, original code, tripwire code) that
        disarm() takes (it grows when the call imports a forbidden module)."""
        def recorder(key):
            violations.append([key, "call"])
            raise ForbiddenOperation(f"{key} is not allowed in this exercise")

        armed, done, pending = [], set(), []

        def arm_spec(spec):
            functions = self.resolve(spec)
            if functions is None:
                return False
            for f, key in functions:
                if id(f) not in done:
                    done.add(id(f))
                    original = f.__code__
                    trip = _tripwire_code(len(original.co_freevars), recorder, key)
                    f.__code__ = trip
                    armed.append((f, original, trip))
            return True

        for spec in specs:
            if not arm_spec(spec):
                pending.append(spec)
        if pending:
            hook = _ImportHook(pending, arm_spec)
            sys.meta_path.insert(0, hook)
            armed.append(hook)
        return armed

    @staticmethod
    def disarm(armed):
        """Put the original code back; False if a tripwire had been removed meanwhile."""
        intact = True
        for item in armed:
            if isinstance(item, _ImportHook):
                intact = intact and item in sys.meta_path
                while item in sys.meta_path:
                    sys.meta_path.remove(item)
                continue
            f, original, trip = item
            intact = intact and f.__code__ is trip
            f.__code__ = original
        return intact


class _ImportHook:
    """A meta-path finder that arms forbidden callables as soon as their module is imported."""

    def __init__(self, pending, arm_spec):
        self.pending, self.arm_spec = pending, arm_spec
        self.busy = False

    def find_spec(self, fullname, path=None, target=None):
        if self.busy or not any(fullname == s["module"] or fullname.startswith(s["module"] + ".")
                                or s["module"].startswith(fullname + ".") for s in self.pending):
            return None
        self.busy = True
        try:
            from importlib.util import find_spec
            spec = find_spec(fullname)
        finally:
            self.busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, hook = spec.loader, self

        class _Arming:
            def create_module(self, s):
                return loader.create_module(s)

            def exec_module(self, module):
                loader.exec_module(module)
                for pending in list(hook.pending):
                    if hook.arm_spec(pending):
                        hook.pending.remove(pending)

            def __getattr__(self, name):
                return getattr(loader, name)

        spec.loader = _Arming()
        return spec


_TRIPWIRES = _Tripwires()


def _guarded_call(fn, args, kwargs, groups, calls=()):
    """fn(*args, **kwargs) with the forbidden groups blocked and the forbidden callables (specs,
    see _Tripwires) armed; returns (value, problem dict or None).

    The modes are entered and left by hand (not `with`): student code that pops them would make
    a `with` block's exit raise and lose the verdict."""
    if not groups and not calls:
        return fn(*args, **kwargs), None
    guard = _Guard(groups)
    modes = (_DispatchGuard(guard), _FunctionGuard(guard)) if groups else ()
    outcome, problem, armed = None, None, []
    try:
        armed = _TRIPWIRES.arm(calls, guard.violations)
    except LookupError as e:
        _TRIPWIRES.disarm(armed)
        return None, {"status": "tampered", "reason": str(e)[:MAX_MESSAGE]}
    for mode in reversed(modes):
        mode.__enter__()
    if modes:
        _ARMED[:] = [guard]
    try:
        if modes and not _guard_is_active(guard, *modes):
            problem = {"status": "tampered", "reason": "the guard did not work before the call"}
        else:
            try:
                outcome = ("value", fn(*args, **kwargs))
            except BaseException as e:  # noqa: B036 - re-raised below, after the guard is checked
                outcome = ("error", e)
            violations = list(guard.violations)
            if modes and not _guard_is_active(guard, *modes):
                problem = {"status": "tampered", "reason": "the guard was disabled during the call"}
            elif violations:
                problem = {"status": "forbidden", "ops": violations[:20]}
    finally:
        if modes and _ARMED[:1] != [guard]:
            problem = problem or {"status": "tampered", "reason": "the guard of other threads was switched off"}
        _ARMED[:] = []
        for mode in modes:
            try:
                mode.__exit__(None, None, None)
            except BaseException:  # noqa: B036 - popped by student code: reported as tampering above
                problem = problem or {"status": "tampered", "reason": "the guard was removed during the call"}
        if not _TRIPWIRES.disarm(armed):
            problem = problem or {"status": "tampered", "reason": "a forbidden function was restored during the call"}
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

def _read_file(path):
    fd = _OPEN(path, _O_RDONLY | _O_NOFOLLOW)
    try:
        chunks = []
        while True:
            chunk = _READ(fd, 1 << 22)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        _CLOSE(fd)


def _write_file(path, data):
    fd = _OPEN(path, _O_WRONLY | _O_CREAT | _O_EXCL | _O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while _len(view):
            view = view[_WRITE(fd, view):]
    finally:
        _CLOSE(fd)


def install(token, directory):
    """Register the dispatcher in the notebook's namespace under `token`."""
    from IPython import get_ipython
    _take_over_process()
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
        if op == "state_dict":      # nn.Module's own method: an override in the notebook's class is not used
            if not _isinstance(obj, _MODULE):
                return {"status": "error", "type": "TypeError", "traceback": [],
                        "message": f"an object of type {_type_name(obj)} is not an nn.Module"}
            state = _MODULE_STATE_DICT(obj)
            return {"status": "ok", "value": {_str(k): codec.tensor(v) for k, v in _dict.items(state)
                                              if _isinstance(v, torch.Tensor)}}
        if op == "call":
            fn = obj if req.get("method") is None else getattr(obj, req["method"])
            args, kwargs = codec.decode(req["args"]), codec.decode(req["kwargs"])
            value, problem = _guarded_call(fn, args, kwargs, req.get("forbid") or (), req.get("forbid_calls") or ())
            if problem is None and req.get("return_args"):
                value = (value, args)          # the arguments after the call: in-place updates come back
            return problem or {"status": "ok", "value": codec.encode(value)}
        return {"status": "error", "type": "GraderError", "message": f"unknown request {op!r}", "traceback": []}

    def dispatch(request_id):
        if _type(request_id) is not _str or not _REQUEST_ID.fullmatch(request_id):
            raise ValueError("bad request id")
        base = directory + "/{}_" + request_id + ".pt"
        restored = _PRISTINE.restore()
        try:
            req = _LOAD(_BYTES_IO(_read_file(base.format("req"))), weights_only=True)
            _UNLINK(base.format("req"))
            result = run(req)
        except KeyboardInterrupt:
            result = {"status": "interrupted"}
        except BaseException as e:  # noqa: B036 - SystemExit and friends are the student's errors too
            result = _error(e, user_ns)
        restored += _PRISTINE.restore()      # the call may have replaced them: not for the answer
        if restored:
            result["restored"] = [_str(name)[:100] for name in restored[:10]]
        buffer = _BYTES_IO()
        try:
            _SAVE(result, buffer)
        except BaseException as e:  # noqa: B036
            buffer = _BYTES_IO()
            _SAVE({"status": "error", "type": _type(e).__name__,
                   "message": f"the result could not be sent back: {e}"[:MAX_MESSAGE], "traceback": []}, buffer)
        tmp = base.format("tmp")
        _write_file(tmp, buffer.getvalue())
        _REPLACE(tmp, base.format("res"))

    def warm():
        """The first operation under a TorchDispatchMode imports much of torch (about 2 s): pay it
        here, in a request of its own, not inside the first timed call."""
        _guarded_call(lambda: None, (), {}, tuple(GROUPS))

    dispatch.warm = warm
    user_ns[token] = dispatch

_PRISTINE = None
_PROCESS_STARTERS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve", "spawnv",
                     "spawnve")


def _no_process_while_armed(name, real):
    """A process started during a guarded call would run without the guard (a fresh interpreter)."""
    def starter(*args, **kwargs):
        if _ARMED:
            _ARMED[0].violations.append([f"{name} (a new process)", "process"])
            raise ForbiddenOperation("starting another process is not allowed in a call with rules")
        return real(*args, **kwargs)
    starter.__name__ = starter.__qualname__ = name
    return starter


def _take_over_process():
    """In the kernel only (install), never in the grader that imports this file: route every later
    thread through the relay modes and take the snapshot that restore() puts back."""
    global _PRISTINE
    import _posixsubprocess
    import subprocess as _subprocess          # keeps its own reference to fork_exec
    _thread.start_new_thread = _thread.start_new = _start_new_thread
    _threading._start_new_thread = _start_new_thread
    for module, names in ((_posix, _PROCESS_STARTERS), (os, _PROCESS_STARTERS), (_posixsubprocess, ("fork_exec",)),
                          (_subprocess, ("_fork_exec",))):
        for name in names:
            real = getattr(module, name, None)
            if real is not None and not hasattr(real, "__wrapped_real__"):
                wrapper = _no_process_while_armed(name, real)
                wrapper.__wrapped_real__ = True
                setattr(module, name, wrapper)
    _PRISTINE = _Pristine([torch.serialization, torch._weights_only_unpickler, torch._utils, _pickle, _copyreg,
                           torch.overrides, torch.utils._python_dispatch, torch._C, torch.Tensor, torch.nn.Module,
                           torch.nn.Parameter, TorchDispatchMode, TorchFunctionMode, _thread, _threading, _posix,
                           os, _posixsubprocess, _subprocess])
