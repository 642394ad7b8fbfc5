"""The proxy and the forbidden-operation guard, against one sandboxed kernel.

One kernel runs a notebook that defines many small functions (honest ones, ones that reach a
forbidden operation in every way we know, ones that try to switch the guard off, ones that return
things that are not data); each test calls them through the `Student` proxy exactly as a hidden
suite would.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nbformat.v4 import new_code_cell, new_notebook

from autograder.kernel import KernelSession
from autograder.proxy import (BadResult, ForbiddenCall, MissingName, RemoteRef, Student, StudentCrash,
                              StudentError, StudentTimeout)
from autograder.runner import _kernel_needs
from autograder.sandbox import Limits, Sandbox

pytestmark = pytest.mark.slow

NOTEBOOK = r'''
import collections, enum
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.functional import conv2d as c2d

def ok(x, w):                                   # a correct convolution without torch's
    O, C, kh, kw = w.shape
    Ho, Wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = x.new_zeros(x.shape[0], O, Ho, Wo)
    for i in range(kh):
        for j in range(kw):
            out += torch.einsum('nchw,oc->nohw', x[:, :, i:i + Ho, j:j + Wo], w[:, :, i, j])
    return out

def via_F(x, w): return F.conv2d(x, w)
def via_alias(x, w): return c2d(x, w)
def via_torch(x, w): return torch.conv2d(x, w)
def via_module(x, w):
    m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], bias=False)
    with torch.no_grad():
        m.weight.copy_(w)
    return m(x)
def via_aten(x, w): return torch.ops.aten.convolution(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
def via_F_unfold(x, w): return F.unfold(x, w.shape[2:])
def via_tensor_unfold(x, w): return x.unfold(2, w.shape[2], 1)
def via_im2col(x, w): return torch._C._nn.im2col(x, list(w.shape[2:]), [1, 1], [0, 0], [1, 1])
def caught(x, w):
    try:
        F.conv2d(x, w)
    except Exception:
        pass
    return ok(x, w)
def via_dropout(x): return F.dropout(x, 0.5, True)
def via_dropout_module(x): return nn.Dropout(0.5).train()(x)
def via_native_dropout(x): return torch.ops.aten.native_dropout(x, 0.5, True)[0]
def eval_dropout(x): return nn.Dropout(0.5).eval()(x) + F.dropout(x, 0.3, training=False) + F.dropout(x, 0.0)
def via_backward(x):
    x = x.clone().requires_grad_()
    (x * x).sum().backward()
    return x.grad
def via_autograd_grad(x):
    x = x.clone().requires_grad_()
    return torch.autograd.grad((x * x).sum(), x)[0]
def via_engine(x):                              # the engine itself, past every Python-level name
    x = x.clone().requires_grad_()
    out = (x * x).sum()
    torch.autograd.Variable._execution_engine.run_backward((out,), (torch.ones(()),), False, False, (), False, True)
    return x.grad
def by_hand(x): return 2 * x
def via_max_pool(x): return F.max_pool2d(x, 2)
def via_avg_pool_module(x): return nn.AvgPool2d(2)(x)
def via_aten_pool(x): return torch.ops.aten.max_pool2d_with_indices(x, [2, 2])[0]
def via_adaptive_pool(x): return nn.AdaptiveMaxPool2d(1)(x)
def via_pool_backward(x):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(F.max_pool2d(x, 2).sum(), x)[0]
def own_pool(x): return x.reshape(*x.shape[:2], x.shape[2] // 2, 2, x.shape[3] // 2, 2).amax(dim=(3, 5))
def pops_guard(x, w):                           # invisible to the grader's source scan
    getattr(torch._C, "_pop_torch_" + "function_stack")()
    getattr(torch._C, "_pop_torch_" + "dispatch_stack")()
    return F.conv2d(x, w)

class Liar(torch.Tensor):
    def __eq__(self, other): return True
    def allclose(self, *a, **k): return True
def liar(x): return torch.zeros_like(x).as_subclass(Liar)
def param(): return nn.Parameter(torch.ones(2))
class Always:
    def __eq__(self, other): return True
def always(): return Always()
def tiny_net(): return nn.Sequential(nn.Linear(3, 2))
def forward_of(net, x): return net(x)
def numpy_things(): return np.arange(4), np.float32(1.5), np.int64(7)
Point = collections.namedtuple("Point", "x y")
class Color(enum.IntEnum):
    RED = 1
def odd_data(): return Point(1, 2), Color.RED, {"k": (torch.ones(1), None, "s")}, torch.float64
def grads(x): return (x * 2).sum(), torch.ones(2, requires_grad=True)
def meta(): return torch.empty(3, 4, device="meta")
def default_dtype(): torch.set_default_dtype(torch.float64); torch.manual_seed(1); return torch.zeros(1).dtype
def outer(): return inner()
def inner(): raise ValueError("bad value 42")
counter = 0
def count():
    global counter
    counter += 1
    return counter
def loops():
    while True:
        pass
def prints(): print("x" * 1000); return 1
def big(): return torch.zeros(1_000_000)
def wreck():
    import os
    from ipykernel.connect import get_connection_file
    path = os.path.dirname(get_connection_file())        # the run folder, which the kernel's uid owns
    for f in os.listdir(path):
        if f.endswith(".pt") or f.endswith(".json"):
            os.unlink(os.path.join(path, f))
    os.chmod(path, 0)
import functools, threading
import dlcourse
import torchvision
from dlcourse import receptive_field as rf_alias
def rf_own(layers):                             # honest: no library call
    r, j = 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
    return r
def rf_direct(layers): return dlcourse.receptive_field(layers)
def rf_renamed(layers): return rf_alias(layers)
def rf_getattr(layers): return getattr(dlcourse, "receptive" + "_field")(layers)
def rf_partial(layers): return functools.partial(dlcourse.anatomy.receptive_field)(layers)
def rf_caught(layers):
    try:
        return dlcourse.receptive_field(layers)
    except Exception:
        return rf_own(layers)
def rf_thread(layers):
    out = []
    t = threading.Thread(target=lambda: out.append(rf_alias(layers)))
    t.start(); t.join()
    return out[0] if out else rf_own(layers)
def net_renamed():                              # dlcourse.bench is first imported here, during the call
    from dlcourse.bench import lenet as _x
    return _x()
def net_builder(): return getattr(torchvision.models, "squeeze" + "net1_1")(num_classes=10)
class MyBlock(torchvision.models.resnet.BasicBlock):
    def __init__(self):
        super().__init__(8, 8)
def net_subclass(): return MyBlock()
def net_own(): return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.Flatten())
def huge_view():                                # a result whose tensor is 4 TiB with 4 bytes of storage
    import torch.serialization as ser
    real = ser._save
    def fake(obj, *a, **k):
        ser._save = real
        return real({"status": "ok", "value": torch.zeros(1).expand(2**20, 2**20)}, *a, **k)
    ser._save = fake
    return 1
def flood(n):                                   # output during a call: nobody in the grader reads it
    for _ in range(n):
        print("x" * 400_000, flush=True)
    return n
import concurrent.futures, queue, _thread
def ok_thread(x, w):                            # honest: its own convolution, in a helper thread
    out = []
    t = threading.Thread(target=lambda: out.append(ok(x, w)))
    t.start(); t.join()
    return out[0]
def via_thread(x, w):                           # the forbidden convolution, in a thread of its own
    out = []
    t = threading.Thread(target=lambda: out.append(F.conv2d(x, w)))
    t.start(); t.join()
    return out[0] if out else ok(x, w)
def via_executor(x, w):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        try:
            return ex.submit(F.conv2d, x, w).result()
        except Exception:
            return ok(x, w)
def via_raw_thread(x, w):                       # the low-level starter, not threading
    box = queue.Queue()
    def work():
        try:
            box.put(F.conv2d(x, w))
        except Exception:
            box.put(None)
    _thread.start_new_thread(work, ())
    r = box.get()
    return ok(x, w) if r is None else r
def via_process(x, w):                          # a fresh interpreter would run without the guard
    import subprocess, sys
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return ok(x, w)
def via_fork(x, w):
    import os
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return ok(x, w)
_jobs, _done = queue.Queue(), queue.Queue()
def _worker():                                  # started by the notebook, long before the suite's calls
    while True:
        x, w = _jobs.get()
        try:
            _done.put(F.conv2d(x, w))
        except Exception:
            _done.put(None)
threading.Thread(target=_worker, daemon=True).start()
def via_worker(x, w):
    _jobs.put((x, w))
    r = _done.get()
    return ok(x, w) if r is None else r
_real_save = torch.save
def sneaky_save():
    def fake(obj, f, *a, **k):
        torch.save = _real_save
        return _real_save(torch.ones(1).as_subclass(Liar), f)
    torch.save = fake
    return 1
'''

X = torch.randn(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))
W = torch.randn(4, 3, 3, 2, generator=torch.Generator().manual_seed(1))
CONV = ("convolution", "unfold")


@pytest.fixture(scope="module")
def student():
    limits = Limits(call_timeout=3, interrupt_grace=2, result_mb=2)
    with Sandbox(limits, hide=[Path(__file__).resolve().parents[1]], keep=_kernel_needs()) as sandbox:
        session = KernelSession(sandbox, limits)
        nb = new_notebook(cells=[new_code_cell(NOTEBOOK)])
        try:
            assert session.run_notebook(nb, ["the notebook"]) == []
            yield Student(session)
        finally:
            session.close()


def test_an_honest_function_passes_under_the_guard(student):
    Y = student.function("ok", forbid=CONV)(X, W)
    assert type(Y) is torch.Tensor and torch.allclose(Y, F.conv2d(X, W), atol=1e-5)


@pytest.mark.parametrize("name, op", [
    ("via_F", "conv"), ("via_alias", "conv"), ("via_torch", "conv"), ("via_module", "conv"),
    ("via_aten", "convolution"), ("via_F_unfold", "unfold"), ("via_tensor_unfold", "unfold"),
    ("via_im2col", "im2col"), ("caught", "conv")])
def test_every_route_to_a_forbidden_op_is_caught(student, name, op):
    with pytest.raises(ForbiddenCall, match=f"{name} used a forbidden operation: .*{op}"):
        student.function(name, forbid=CONV)(X, W)
    assert student.function(name)(X, W) is not None          # without a forbid list it runs


@pytest.mark.parametrize("name", ["via_backward", "via_autograd_grad", "via_engine"])
def test_autograd_group(student, name):
    with pytest.raises(ForbiddenCall, match="autograd"):
        student.function(name, forbid="autograd")(torch.ones(3))


def test_a_gradient_by_hand_is_not_autograd(student):
    assert torch.equal(student.function("by_hand", forbid=("autograd", "convolution"))(torch.ones(3)),
                       torch.full((3,), 2.0))


@pytest.mark.parametrize("name", ["via_dropout", "via_dropout_module", "via_native_dropout"])
def test_dropout_group(student, name):
    with pytest.raises(ForbiddenCall, match="dropout"):
        student.function(name, forbid="dropout")(torch.ones(8))
    student.function(name, forbid="convolution")(torch.ones(8))


@pytest.mark.parametrize("name", ["via_max_pool", "via_avg_pool_module", "via_aten_pool", "via_adaptive_pool",
                                  "via_pool_backward"])
def test_pooling_group(student, name):
    with pytest.raises(ForbiddenCall, match="pool"):
        student.function(name, forbid="pooling")(torch.ones(1, 1, 4, 4))
    student.function(name, forbid=CONV)(torch.ones(1, 1, 4, 4))


def test_pooling_written_by_hand_is_allowed(student):
    x = torch.randn(2, 3, 4, 6)
    assert torch.equal(student.function("own_pool", forbid=("pooling", "unfold"))(x), F.max_pool2d(x, 2))


def test_dropout_that_does_nothing_is_allowed(student):
    assert torch.equal(student.function("eval_dropout", forbid="dropout")(torch.ones(8)), torch.full((8,), 3.0))


@pytest.mark.parametrize("name", ["via_thread", "via_executor", "via_raw_thread", "via_worker"])
def test_a_forbidden_op_in_another_thread_is_caught(student, name):
    """Threads started during the call, by an executor, by _thread directly, or by the notebook long before."""
    with pytest.raises(ForbiddenCall, match=f"{name} used a forbidden operation: .*conv"):
        student.function(name, forbid=CONV)(X, W)
    assert torch.allclose(student.function(name)(X, W), F.conv2d(X, W), atol=1e-5)   # without rules it runs


@pytest.mark.parametrize("name", ["via_process", "via_fork"])
def test_starting_a_process_in_a_call_with_rules_is_refused(student, name):
    with pytest.raises(ForbiddenCall, match=f"{name} used a forbidden operation: .*process"):
        student.function(name, forbid=CONV)(X, W)
    assert torch.allclose(student.function(name)(X, W), F.conv2d(X, W), atol=1e-5)   # without rules it runs


def test_an_honest_helper_thread_passes_under_the_guard(student):
    assert torch.allclose(student.function("ok_thread", forbid=CONV)(X, W), F.conv2d(X, W), atol=1e-5)


def test_switching_the_guard_off_at_run_time_is_caught(student):
    with pytest.raises(ForbiddenCall, match="guard"):
        student.function("pops_guard", forbid=CONV)(X, W)
    assert torch.allclose(student.function("ok", forbid=CONV)(X, W), F.conv2d(X, W), atol=1e-5)   # still works


RF = ("dlcourse.receptive_field",)
NETS = ("dlcourse.bench.lenet", "torchvision.models")


def test_an_honest_function_passes_with_forbidden_callables(student):
    assert student.function("rf_own", forbid_calls=RF)([(3, 1), (3, 2)]) == 5
    net = student.function("net_own", forbid_calls=NETS)()
    assert isinstance(net, RemoteRef) and net.type_name == "torch.nn.modules.container.Sequential"


@pytest.mark.parametrize("name", ["rf_direct", "rf_renamed", "rf_getattr", "rf_partial", "rf_caught", "rf_thread"])
def test_a_forbidden_callable_is_caught_under_any_name(student, name):
    with pytest.raises(ForbiddenCall, match=f"{name} called dlcourse.receptive_field, which this exercise does not "
                                            f"allow"):
        student.function(name, forbid_calls=RF)([(3, 1), (3, 2)])
    assert student.function(name)([(3, 1), (3, 2)]) == 5           # without the rule it runs (and is restored)
    assert student.function("rf_own", forbid_calls=RF)([(3, 1)]) == 3


@pytest.mark.parametrize("name, what", [("net_renamed", "dlcourse.bench.lenet"),
                                        ("net_builder", "torchvision.models.squeezenet.squeezenet1_1"),
                                        ("net_subclass", "torchvision.models.resnet.BasicBlock")])
def test_ready_made_networks_are_caught(student, name, what):
    with pytest.raises(ForbiddenCall, match=f"{name} called {what}"):
        student.function(name, forbid_calls=NETS)()
    assert isinstance(student.function(name)(), RemoteRef)


def test_forbidden_callables_must_exist_in_the_grader(student):
    with pytest.raises(ValueError, match="does not exist"):
        student.function("rf_own", forbid_calls=("dlcourse.no_such_function",))
    with pytest.raises(ValueError, match="builtin"):
        student.function("rf_own", forbid_calls=("torch.conv2d",))


def test_tampering_found_in_the_source_refuses_forbid_calls(student):
    session = student._session
    session.tampering = ["_python_dispatch"]
    try:
        with pytest.raises(ForbiddenCall, match="torch internals"):
            student.function("ok", forbid=CONV)(X, W)
        student.ok(X, W)                                       # calls without rules still run
    finally:
        session.tampering = []


def test_unknown_groups_are_a_suite_error(student):
    with pytest.raises(ValueError, match="unknown forbidden op group"):
        student.function("ok", forbid=("convolutions",))


def test_results_are_plain_data_or_handles(student):
    Y = student.liar(X)
    assert type(Y) is torch.Tensor and torch.count_nonzero(Y) == 0   # the subclass is gone, its lies too
    assert type(student.param()) is torch.Tensor
    ref = student.always()
    assert isinstance(ref, RemoteRef) and ref.type_name == "Always"
    with pytest.raises(BadResult, match="always returned an object of type Always; expected a tensor"):
        ref.shape
    arr, f32, i64 = student.numpy_things()
    assert isinstance(arr, np.ndarray) and arr.tolist() == [0, 1, 2, 3]
    assert (f32, type(f32), i64, type(i64)) == (1.5, float, 7, int)
    point, color, nested, dtype = student.odd_data()
    assert point == (1, 2) and type(color) is int and color == 1 and dtype is torch.float64
    assert nested["k"][1:] == (None, "s") and torch.equal(nested["k"][0], torch.ones(1))
    s, leaf = student.grads(torch.ones(2, requires_grad=True))
    assert s.item() == 4.0 and leaf.requires_grad
    m = student.meta()
    assert m.device.type == "meta" and m.shape == (3, 4)


def test_modules_stay_in_the_kernel_and_come_back_as_handles(student):
    net = student.tiny_net()
    assert isinstance(net, RemoteRef)
    x = torch.randn(5, 3)
    sd = net.state_dict()
    assert set(sd) == {"0.weight", "0.bias"} and all(type(v) is torch.Tensor for v in sd.values())
    expected = x @ sd["0.weight"].T + sd["0.bias"]
    assert torch.allclose(net(x), expected, atol=1e-6)
    assert torch.allclose(net.method("forward")(x), expected, atol=1e-6)
    assert torch.allclose(student.forward_of(net, x), expected, atol=1e-6)     # a handle as an argument
    assert isinstance(net.attr("0"), RemoteRef)
    assert student.state_dict(net).keys() == sd.keys()


def test_student_state_does_not_change_grader_values(student):
    assert student.default_dtype() == torch.float64          # the kernel's default changed...
    assert torch.get_default_dtype() == torch.float32         # ...not the grader's
    Y = student.function("ok", forbid=CONV)(X, W)             # float32 inputs stay float32
    assert Y.dtype == torch.float32


def test_errors_name_the_student_frames_only(student):
    with pytest.raises(StudentError) as info:
        student.outer()
    msg = str(info.value)
    assert msg.startswith("outer raised ValueError: bad value 42")
    line = NOTEBOOK.lstrip("\n").splitlines().index("def outer(): return inner()") + 1
    assert f"line {line} in outer: def outer(): return inner()" in msg
    assert f"line {line + 1} in inner: def inner(): raise" in msg
    assert "kernel_side" not in msg and "site-packages" not in msg
    with pytest.raises(MissingName, match="does not define nothing_here"):
        student.nothing_here()
    assert student.has("ok") and not student.has("nothing_here")
    assert student.get("counter") == 0


def test_a_timeout_interrupts_and_the_state_survives(student):
    assert student.count() == 1
    with pytest.raises(StudentTimeout, match="loops did not finish within 1 s") as first:
        student.function("loops", timeout=1)()
    assert student.count() == 2                               # same kernel: no restart needed
    assert student.prints() == 1                              # printing during a call is ignored
    # A hang costs one timeout: the same function fails at once, with the same message, ever after.
    start = time.monotonic()
    with pytest.raises(StudentTimeout) as again:
        student.function("loops", timeout=30)()
    assert str(again.value) == str(first.value) and time.monotonic() - start < 0.5


def test_results_that_are_not_data_or_too_big_are_refused(student):
    with pytest.raises(BadResult, match="too large"):
        student.big()
    assert student.count() == 3                               # the kernel is fine afterwards


def test_a_replaced_serialiser_cannot_forge_the_answer(student):
    """sneaky_save replaces torch.save, huge_view torch.serialization._save, to send a forged answer
    (a Liar tensor, a 4 TiB expanded view): the dispatcher saves with what it captured before the
    notebook ran and puts the module's functions back first, so the true answers come back. (Should
    a forged answer arrive anyway, check_result bounds it: tests/test_engine_unit.py.)"""
    session = student._session
    events = len(session.tamper_events)
    assert student.sneaky_save() == 1
    assert student.huge_view() == 1
    assert len(session.tamper_events) > events               # the instructor is told
    assert student.count() >= 1


def _grader_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_output_flooded_during_calls_is_not_buffered_by_the_grader(student):
    before = _grader_rss_mb()
    for _ in range(3):                                          # 3 x 100 x 400 kB = 120 MB printed
        assert student.function("flood", timeout=60)(100) == 100
    assert _grader_rss_mb() - before < 40


def test_a_wrecked_working_folder_costs_a_restart_not_the_grader(student):
    # wreck removes and locks the folder the requests go through, so its own answer cannot be written
    with pytest.raises((StudentError, StudentCrash), match="(helper in your kernel failed|working folder)"):
        student.wreck()
    assert student.count() == 1                    # a fresh kernel, the notebook replayed


TAMPERING_NOTEBOOK = r'''
import torch
import torch.nn.functional as F
import torch.serialization as ser

_real_load = torch.load
def _dropping_load(*args, **kwargs):            # drops the guard's rules from every request it loads
    req = _real_load(*args, **kwargs)
    if isinstance(req, dict):
        req.pop("forbid", None)
        req.pop("forbid_calls", None)
    return req
torch.load = _dropping_load
_real_load_impl = ser._load
def _dropping_load_impl(*args, **kwargs):       # the same one level down, for a dispatcher that calls ser.load
    req = _real_load_impl(*args, **kwargs)
    if isinstance(req, dict):
        req.pop("forbid", None)
        req.pop("forbid_calls", None)
    return req
ser._load = _dropping_load_impl
_real_save = ser._save
def _forging_save(obj, *args, **kwargs):        # turns the guard's verdict into a plain "ok"
    if isinstance(obj, dict) and obj.get("status") in ("forbidden", "tampered"):
        obj = {"status": "ok", "value": 1}
    return _real_save(obj, *args, **kwargs)
ser._save = _forging_save
def via_F(x, w): return F.conv2d(x, w)
'''


def test_a_notebook_that_replaces_the_serialisers_cannot_drop_the_guard():
    """The notebook wraps torch.load and torch.serialization's _load/_save before the suite runs,
    to drop the rules from the guard's requests and turn its verdicts into "ok": the dispatcher was
    installed before the notebook ran and uses what it captured then."""
    limits = Limits(call_timeout=10, interrupt_grace=2, result_mb=2)
    with Sandbox(limits, hide=[Path(__file__).resolve().parents[1]], keep=_kernel_needs()) as sandbox:
        session = KernelSession(sandbox, limits)
        try:
            assert session.run_notebook(new_notebook(cells=[new_code_cell(TAMPERING_NOTEBOOK)]), ["nb"]) == []
            student = Student(session)
            with pytest.raises(ForbiddenCall, match="via_F used a forbidden operation: .*conv"):
                student.function("via_F", forbid=CONV)(X, W)
            assert torch.allclose(student.via_F(X, W), F.conv2d(X, W), atol=1e-5)
        finally:
            session.close()
