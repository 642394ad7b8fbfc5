"""The hidden suite's view of the student's notebook: a proxy that moves data, never objects.

    student.conv2d_naive(X, W)                       # call a global of the notebook
    conv = student.function("conv2d_naive", forbid=("convolution",), timeout=30)
    rf = student.function("receptive_field", forbid_calls=("dlcourse.receptive_field",))
    net = student.TinyNet()                          # not data -> a RemoteRef handle
    net(X); net.method("forward")(X); net.attr("fc"); net.state_dict()

Arguments go to the kernel as data (tensors, numbers, str, bool, None, lists/tuples/dicts of these,
numpy arrays, RemoteRefs). Results come back through `torch.load(weights_only=True)`: plain data
is returned as is (tensor subclasses and Parameters become plain tensors), anything else stays in
the kernel and comes back as a `RemoteRef`. A RemoteRef used where data was expected raises
`BadResult` ("... returned an object of type X; expected a tensor or plain data").

Rules on a call, checked while the student's function runs (not by reading its source):
  forbid=        op groups ("convolution", "unfold", "dropout", "autograd", "pooling"): any torch route to such an
                 operator (F.conv2d, an alias, nn.Conv2d, torch.ops.aten.*, ...) is a forbidden use.
  forbid_calls=  dotted names of Python callables the function must not call: a function
                 ("dlcourse.receptive_field"), a class ("torchvision.models.VGG": any of its methods,
                 so also a subclass calling super().__init__) or a module/package
                 ("torchvision.models": every function and class defined in it, "dlcourse.bench").
                 The names are resolved here, in the grader; in the kernel the code of those
                 functions is swapped for a tripwire during the call, so a rename, `import ... as`,
                 getattr, functools.partial or another thread reaches it too.
Either raises `ForbiddenCall` with a message for the student (also when the student's code caught
the guard's exception), and so does a guard that was switched off during the call.

Every failure that is the student's doing is a `StudentFailure`; its message is written for the
student and becomes the test's message. It never contains expected values or suite source.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

REF, NDARRAY = "__dlcourse_ref__", "__dlcourse_ndarray__"


class StudentFailure(Exception):
    """Base class: the student's code did something that fails this test (message is for the student)."""


class StudentError(StudentFailure):
    """The student's code raised an exception (type, message and the student's own frames)."""

    def __init__(self, message, *, type_name="", error_message="", traceback=()):
        super().__init__(message)
        self.type_name, self.error_message, self.traceback = type_name, error_message, list(traceback)


class StudentTimeout(StudentFailure):
    """The call ran longer than its time limit and was stopped."""


class StudentCrash(StudentFailure):
    """The kernel died during the call (it is restarted for the following tests)."""


class ForbiddenCall(StudentFailure):
    """A forbidden operation ran during the call, or the grading guard was disabled."""


class MissingName(StudentFailure):
    """The notebook does not define the requested name."""


class BadResult(StudentFailure):
    """The call returned something that cannot be graded (an object where data was expected, ...)."""


# ------------------------------------------------------------------------------------------

def encode_args(value, depth=0):
    """Grader -> kernel: data as is, RemoteRefs as markers; anything else is a suite bug."""
    if depth > 64:
        raise TypeError("arguments nested too deeply for the student's kernel")
    if isinstance(value, RemoteRef):
        return {REF: value._ref_id}
    if isinstance(value, torch.Tensor):
        t = value.detach() if type(value) is torch.Tensor else value.detach().as_subclass(torch.Tensor)
        t = t if t.device.type in ("cpu", "meta") else t.cpu()
        return t.requires_grad_(True) if value.requires_grad and t.is_floating_point() else t
    if isinstance(value, np.ndarray):
        return {NDARRAY: torch.from_numpy(np.array(value, copy=True))}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, numbers.Number, str, bytes, torch.dtype, torch.device)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(encode_args(v, depth + 1) for v in value) if type(value) in (list, tuple) \
            else tuple(encode_args(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: encode_args(v, depth + 1) for k, v in value.items()}
    raise TypeError(f"cannot send an object of type {type(value).__name__} to the student's kernel")


MAX_DEPTH = 32                  # containers inside containers, in a result from the kernel
MAX_ITEMS = 200_000             # containers, their items and tensors, in one result


class _Budget:
    """What one result may still cost the grader: items, and bytes of tensor data once compacted."""

    def __init__(self, max_bytes: int, origin: str):
        self.items, self.bytes, self.origin = MAX_ITEMS, max_bytes, origin

    def item(self):
        self.items -= 1
        if self.items < 0:
            raise BadResult(f"{self.origin} returned too many values (more than {MAX_ITEMS:,} numbers, "
                            f"strings and containers); return tensors instead of long lists")


def check_result(value, origin: str, max_bytes: int = 2**30):
    """Reject a result that would cost the grader unbounded memory or time (depth, item count,
    tensor bytes) and compact tensors whose storage is smaller than their size (expanded,
    zero-stride or overlapping views: a few bytes in the file, gigabytes in any computation).

    Iterative, so a result nested a million levels deep costs no recursion. Returns `value` with
    such tensors replaced by compact copies; raises BadResult for anything else."""
    budget = _Budget(max_bytes, origin)
    out = [None]
    stack = [(value, out, 0, 0)]            # (item, parent container, index in it, depth)
    while stack:
        v, parent, index, depth = stack.pop()
        budget.item()
        if isinstance(v, torch.Tensor):
            parent[index] = _compact(v, budget)
            continue
        if not isinstance(v, (dict, list, tuple)):
            if isinstance(v, (str, bytes)) and len(v) > max_bytes:
                raise BadResult(f"{origin} returned a string that is too large")
            parent[index] = v
            continue
        if depth >= MAX_DEPTH:
            raise BadResult(f"{origin} returned data nested more than {MAX_DEPTH} levels deep")
        if isinstance(v, dict):
            keys = list(v.keys())
            values = [None] * len(keys)
            for i, k in enumerate(keys):
                stack.append((v[k], values, i, depth + 1))
            parent[index] = _Rebuild(dict, keys, values)
        else:
            items = [None] * len(v)
            for i, x in enumerate(v):
                stack.append((x, items, i, depth + 1))
            parent[index] = _Rebuild(type(v), None, items)
    return _finish(out[0])


class _Rebuild:
    """A container whose items are checked; rebuilt (with the same type) once all are."""

    __slots__ = ("kind", "keys", "values")

    def __init__(self, kind, keys, values):
        self.kind, self.keys, self.values = kind, keys, values


def _finish(root):
    """Turn the _Rebuild tree back into containers, iteratively (children before parents)."""
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        if isinstance(node, _Rebuild):
            order.append(node)
            stack.extend(node.values)
    done = {}
    for node in reversed(order):
        values = [done.pop(id(x)) if isinstance(x, _Rebuild) else x for x in node.values]
        if node.kind is dict:
            built = dict(zip(node.keys, values))
        elif node.kind in (list, tuple):
            built = node.kind(values)
        else:                               # a namedtuple that came back as itself: plain tuple
            built = tuple(values)
        done[id(node)] = built
    return done.pop(id(root)) if isinstance(root, _Rebuild) else root


def _compact(t: torch.Tensor, budget: _Budget) -> torch.Tensor:
    t = t if type(t) is torch.Tensor else t.as_subclass(torch.Tensor)
    if t.layout != torch.strided:
        raise BadResult(f"{budget.origin} returned a {str(t.layout).replace('torch.', '')} tensor; "
                        f"return an ordinary (dense) tensor")
    if t.device.type == "meta":
        return t
    logical = t.numel() * t.element_size()
    budget.bytes -= logical
    if budget.bytes < 0:
        raise BadResult(f"{budget.origin} returned tensors that are too large "
                        f"({tuple(t.shape)} {str(t.dtype).replace('torch.', '')})")
    if t.is_contiguous() and t.untyped_storage().nbytes() == logical and t.storage_offset() == 0:
        return t
    requires_grad = t.requires_grad
    compact = t.detach().clone(memory_format=torch.contiguous_format)
    return compact.requires_grad_(True) if requires_grad else compact


def decode_result(value, session, origin: str):
    """Kernel -> grader, after torch.load(weights_only=True) and check_result: markers become
    RemoteRefs/arrays (depth is bounded by check_result)."""
    if isinstance(value, torch.Tensor):
        return value if type(value) is torch.Tensor else value.as_subclass(torch.Tensor)
    if isinstance(value, dict):
        if REF in value and isinstance(value.get(REF), int):
            return RemoteRef(session, value[REF], str(value.get("type", "object"))[:100], origin)
        if set(value) == {NDARRAY} and isinstance(value[NDARRAY], torch.Tensor):
            return value[NDARRAY].numpy()
        return {k: decode_result(v, session, origin) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(decode_result(v, session, origin) for v in value)
    return value


_CALLABLE_SPECS: dict[str, dict] = {}


def forbidden_callable(name: str) -> dict:
    """Resolve a forbid_calls name in the grader's own process (never trusting the kernel's
    modules): {"name", "module", "attrs", "kind", "root"}, root being the file (function, class)
    or folder (package) its code must come from. ValueError for a name that is not a Python
    function, class or module (a suite error)."""
    import importlib
    import inspect
    import os

    if name in _CALLABLE_SPECS:
        return _CALLABLE_SPECS[name]
    if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"forbid_calls: {name!r} is not a dotted name such as 'dlcourse.receptive_field'")
    parts = name.split(".")
    module, attrs = None, []
    for i in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        attrs = parts[i:]
        break
    if module is None:
        raise ValueError(f"forbid_calls: no module found for {name!r}")
    obj = module
    try:
        for attr in attrs:
            obj = getattr(obj, attr)
    except AttributeError:
        raise ValueError(f"forbid_calls: {name!r} does not exist") from None
    if inspect.ismodule(obj):
        kind, path = "module", obj.__file__
        root = os.path.dirname(path) + os.sep if os.path.basename(path) == "__init__.py" else path
    elif inspect.isclass(obj):
        kind, root = "class", inspect.getfile(obj)
    elif inspect.isfunction(inspect.unwrap(obj)):
        kind, root = "function", inspect.unwrap(obj).__code__.co_filename
    else:
        raise ValueError(f"forbid_calls: {name!r} is not a Python function, class or module (a builtin has no "
                         f"code the guard can watch)")
    spec = {"name": name, "module": module.__name__, "attrs": attrs, "kind": kind, "root": root}
    _CALLABLE_SPECS[name] = spec
    return spec


class StudentFunction:
    """A callable that runs a notebook global (or a handle's method) in the student's kernel."""

    def __init__(self, session, target, *, method=None, forbid=(), forbid_calls=(), timeout=None, label=None,
                 return_args=False):
        forbid = (forbid,) if isinstance(forbid, str) else tuple(forbid)
        forbid_calls = (forbid_calls,) if isinstance(forbid_calls, str) else tuple(forbid_calls)
        session.check_forbid(forbid)
        self._session, self._target, self._method = session, target, method
        self._forbid, self._timeout, self._return_args = forbid, timeout, return_args
        self._calls = [forbidden_callable(name) for name in forbid_calls]
        self._label = label or str(target[1])

    def __call__(self, *args, **kwargs):
        request = {"op": "call", "target": list(self._target), "method": self._method,
                   "args": encode_args(list(args)), "kwargs": encode_args(kwargs), "forbid": list(self._forbid),
                   "forbid_calls": self._calls, "return_args": self._return_args}
        return self._session.request(request, label=self._label, timeout=self._timeout,
                                     forbid=self._forbid + tuple(c["name"] for c in self._calls))

    def __repr__(self):
        return f"<student function {self._label}>"


class RemoteRef:
    """A handle on an object that lives in the student's kernel (an nn.Module instance, a class, ...)."""

    def __init__(self, session, ref_id: int, type_name: str, origin: str):
        self._session, self._ref_id, self._type, self._origin = session, ref_id, type_name, origin

    @property
    def type_name(self) -> str:
        return self._type

    def __call__(self, *args, **kwargs):
        return StudentFunction(self._session, ("ref", self._ref_id), label=f"{self._type} instance")(*args, **kwargs)

    def method(self, name: str, forbid=(), timeout=None, forbid_calls=()) -> StudentFunction:
        return StudentFunction(self._session, ("ref", self._ref_id), method=name, forbid=forbid,
                               forbid_calls=forbid_calls, timeout=timeout, label=f"{self._type}.{name}")

    def attr(self, name: str):
        return self._session.request({"op": "getattr", "target": ["ref", self._ref_id], "name": name},
                                     label=f"{self._type}.{name}")

    def state_dict(self) -> dict:
        return self._session.request({"op": "state_dict", "target": ["ref", self._ref_id]},
                                     label=f"{self._type}.state_dict()")

    def _bad(self):
        return BadResult(f"{self._origin} returned an object of type {self._type}; expected a tensor or plain data")

    def __getattr__(self, name):
        if name.startswith("__") or name.startswith("_ref") or name in ("_session", "_type", "_origin"):
            raise AttributeError(name)
        raise self._bad()

    def __len__(self):
        raise self._bad()

    def __iter__(self):
        raise self._bad()

    def __getitem__(self, key):
        raise self._bad()

    def __float__(self):
        raise self._bad()

    def __bool__(self):
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        # torch.allclose(ref, X) in a suite: say what the student returned instead of a TypeError
        ref = next((a for a in (*args, *(kwargs or {}).values()) if isinstance(a, RemoteRef)), None)
        raise ref._bad() if ref is not None else BadResult("a student object was used where data was expected")

    def __array__(self, *args, **kwargs):
        raise self._bad()

    def __repr__(self):
        return f"<student object of type {self._type}>"


def _refuse(self, *args, **kwargs):
    raise self._bad()


for _op in ("add", "sub", "mul", "truediv", "floordiv", "matmul", "pow", "mod", "neg", "abs",
            "lt", "le", "gt", "ge", "radd", "rsub", "rmul", "rtruediv", "rmatmul"):
    setattr(RemoteRef, f"__{_op}__", _refuse)


class Student:
    """The `student` fixture: the notebook's globals, reached through the kernel session.

    `student.<name>` is `student.function(name)`; use `function(name)` for names that clash with
    this class's own methods (function, get, has, state_dict)."""

    def __init__(self, session):
        self._session = session

    def __getattr__(self, name: str) -> StudentFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.function(name)

    def function(self, name: str, forbid=(), timeout=None, forbid_calls=(), return_args=False) -> StudentFunction:
        """A callable with rules: `forbid` op groups ("convolution", "unfold", "dropout", "autograd", "pooling",
        "normalization"), `forbid_calls` dotted names of callables it must not use ("dlcourse.receptive_field",
        "torchvision.models"), `timeout` seconds (see the module docstring). return_args=True: each call returns
        (result, the positional arguments after the call as a list), so what the function changed in place
        comes back."""
        return StudentFunction(self._session, ("name", name), forbid=forbid, forbid_calls=forbid_calls,
                               timeout=timeout, label=name, return_args=return_args)

    def get(self, name: str):
        """The value of a global: data, or a RemoteRef for other objects."""
        return self._session.request({"op": "get", "target": ["name", name]}, label=name)

    def has(self, name: str) -> bool:
        return bool(self._session.request({"op": "has", "target": ["name", name]}, label=name))

    def state_dict(self, name_or_ref) -> dict:
        """A module's state_dict as plain tensors (the module named `name`, or a RemoteRef)."""
        if isinstance(name_or_ref, RemoteRef):
            return name_or_ref.state_dict()
        return self._session.request({"op": "state_dict", "target": ["name", name_or_ref]},
                                     label=f"{name_or_ref}.state_dict()")

    def __repr__(self):
        return "<the student's notebook>"
