"""Hidden tests of 02_dropout, exercise 2: the layer `Dropout(p=0.5, generator=None)`.

The notebook's interface: `Dropout(p=0.5, generator=None)` keeps `self.p` and `self.generator`;
`forward(x)` is `dropout(x, self.p, True, self.generator)` in training mode and `x` in evaluation
mode. These tests check what belongs to the layer (defaults, the train/eval switch, also when a
network switches it, agreement with the student's own `dropout`, ValueError), not dropout's
arithmetic, dtype, device or gradient again: that is exercise 1's job, so a mistake in `dropout`
that the layer merely inherits is not charged twice. (One is, by nature: a `dropout` that ignores
training=False makes a layer that calls it drop in evaluation mode too.) Only when the student's
`dropout` cannot be called (missing, a stub) is the layer's output checked against the rule
directly (values 0 or x / (1 - p), reproducible with the generator).

Oracles as in test_function.py: inputs without zeros (the mask is y != 0), generators created in the
student's kernel through the notebook's `torch` (RemoteRefs), every result checked here. PyTorch's
own dropout is forbidden during every call into the layer.

Known mistakes are named from what the layer does: a layer that drops in evaluation mode is asked
why, by calling the student's own `dropout(x, p, training=False)` (if that returns x, the layer
ignores self.training; if not, the layer inherits exercise 1's mistake); a layer that obeys its own
.eval() but not .train() or a network's eval() keeps a flag of its own; a layer whose masks differ
from the student's `dropout` for the same generator draws its own.
"""
import torch

from autograder.testing import (MissingName, RemoteRef, StudentError, check, fail, named, nonzero_input, points,
                                remote_generator)

LAYER_IGNORES_EVAL = ("your layer drops in evaluation mode although your dropout(x, p, training=False) returns x: "
                      "forward must pass self.training (set by .train() and .eval()) as dropout's training argument, "
                      "not training=True (section 2)")
INHERITS_TRAINING = ("your layer drops in evaluation mode because your dropout ignores training=False (exercise 1): "
                     "fix dropout, and the layer follows (section 4)")
OWN_FLAG = ("your layer keeps its own train/eval flag (set in an overridden eval()): .train() and a network's "
            "net.eval() (which calls train(False) on every submodule, never your eval()) do not reach it; read "
            "self.training in forward instead (section 2)")
OWN_DRAW = ("your layer's masks differ from your dropout's for the same generator state: forward should call "
            "your dropout(x, self.p, self.training, self.generator) rather than draw a mask of its own (section 2)")


def why_active_in_eval(student, x, p):
    """The explanation for a layer that drops in eval mode: its own fault, or inherited from dropout()."""
    try:
        y = student.function("dropout", forbid=DROPOUT, timeout=60)(x, p, False)
    except (StudentError, MissingName):
        return LAYER_IGNORES_EVAL
    if isinstance(y, torch.Tensor) and tuple(y.shape) == tuple(x.shape) and torch.equal(y.to(x.dtype), x):
        return LAYER_IGNORES_EVAL
    return INHERITS_TRAINING

DROPOUT = ("dropout",)
CELL = "test_Dropout"


def make_layer(student, *args, **kwargs):
    layer = student.function("Dropout", forbid=DROPOUT, timeout=30)(*args, **kwargs)
    if not isinstance(layer, RemoteRef):
        fail(f"Dropout(...) returned {type(layer).__name__}, not a layer: Dropout must be a class "
             f"(class Dropout(nn.Module))")
    return layer


def forward(layer, x, what):
    y = layer.method("__call__", forbid=DROPOUT, timeout=60)(x)
    if not isinstance(y, torch.Tensor):
        fail(f"{what}: expected a torch.Tensor, got {type(y).__name__}")
    check(tuple(y.shape) == tuple(x.shape), f"{what}: wrong shape: got {tuple(y.shape)}")
    return y


def set_mode(layer, mode):
    layer.method(mode, timeout=30)()


def check_rule(y, x, p, what):
    """The layer's output follows inverted dropout (used only when the student's dropout cannot run)."""
    y64, x64 = y.double(), x.double()
    kept = y64 != 0
    check(bool(kept.any()) and not bool(kept.all()), f"{what}: in training mode some elements must be dropped "
                                                     f"and some kept")
    check(bool(torch.isclose(y64[kept], x64[kept] / (1 - p), rtol=1e-5, atol=1e-6).all()),
          f"{what}: the kept elements are not x / (1 - p)")


def check_layer_drops(layer, what):
    """A layer in training mode must drop some elements and keep others: no point of this exercise
    goes to a layer that does nothing (returns x, a copy, zeros or a constant)."""
    x = nonzero_input(20, 30, seed=90)
    y = forward(layer, x, what)
    kept = y != 0
    check(bool(kept.any()) and not bool(kept.all()),
          f"{what}: in training mode the layer must drop some elements and keep the others "
          f"({'nothing' if bool(kept.all()) else 'everything'} was dropped)")


@points(1, cell=CELL)
def test_layer_defaults_and_modes(student):
    """Dropout() has p = 0.5, starts in training mode, and .eval() / .train() switch self.training"""
    layer = make_layer(student)
    p = layer.attr("p")
    check(isinstance(p, (int, float)) and not isinstance(p, bool) and p == 0.5,
          f"Dropout().p is {p!r}; the default probability is 0.5 (keep it in self.p)")
    check(layer.attr("training") is True, "a new Dropout layer must be in training mode (call super().__init__())")
    set_mode(layer, "eval")
    check(layer.attr("training") is False, "after .eval(), self.training must be False")
    set_mode(layer, "train")
    check(layer.attr("training") is True, "after .train(), self.training must be True")
    check(make_layer(student, 0.3).attr("p") == 0.3, "Dropout(0.3).p must be 0.3")
    check_layer_drops(layer, "Dropout()(x) in training mode")


@points(1, cell=CELL)
def test_layer_matches_function(student):
    """in training mode, Dropout(p, generator=g)(x) equals dropout(x, p, True, g) for the same generator state"""
    x = nonzero_input(40, 60, seed=60)
    p = 0.3
    layer = make_layer(student, p, generator=remote_generator(student, 61))
    y_layer = [forward(layer, x, f"Dropout({p}, generator=g)(x), call {i + 1}") for i in range(2)]
    check(not torch.equal(y_layer[0], y_layer[1]), f"Dropout({p}, generator=g): two calls gave the same mask; "
                                                   f"every forward pass must draw a new one")
    fn = student.function("dropout", forbid=DROPOUT, timeout=60)
    g = remote_generator(student, 61)
    try:
        y_fn = [fn(x, p, True, g) for _ in range(2)]
    except (StudentError, MissingName):
        # The student's dropout cannot run: check the layer on its own (rule and generator).
        for y in y_layer:
            check_rule(y, x, p, f"Dropout({p}, generator=g)(x)")
        again = make_layer(student, p, generator=remote_generator(student, 61))
        check(torch.equal(forward(again, x, f"Dropout({p}, generator=g)(x)"), y_layer[0]),
              f"Dropout({p}, generator=g): the same generator seed gave different masks; draw them from "
              f"self.generator")
        return
    y_fn_again = fn(x, p, True, remote_generator(student, 61))
    if not (isinstance(y_fn[0], torch.Tensor) and isinstance(y_fn_again, torch.Tensor)
            and torch.equal(y_fn[0], y_fn_again)):
        return      # the student's dropout ignores its generator (exercise 1 loses for it): nothing to compare
    for i, (a, b) in enumerate(zip(y_layer, y_fn)):
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != tuple(a.shape) or not torch.equal(a, b.to(a.dtype)):
            named(f"Dropout({p}, generator=g)(x) and dropout(x, {p}, True, g) differ (call {i + 1}, generators with "
                  f"the same seed)", OWN_DRAW)


@points(1, cell=CELL)
def test_layer_identity_in_eval_mode(student):
    """after .eval() Dropout returns its input unchanged; after .train() it drops again"""
    x = nonzero_input(32, 3, 5, 5, seed=70)
    layer = make_layer(student, 0.6, generator=remote_generator(student, 71))
    set_mode(layer, "eval")
    y = forward(layer, x, "Dropout(0.6) after .eval()")
    if not torch.equal(y, x) and bool((y == 0).any()):
        named("Dropout(0.6) after .eval() dropped elements", why_active_in_eval(student, x, 0.6))
    check(torch.equal(y, x), "Dropout(0.6) after .eval() changed its input: in evaluation mode the layer must "
                             "return x unchanged (no mask, no scaling)")
    set_mode(layer, "train")
    y = forward(layer, x, "Dropout(0.6) after .eval() and .train()")
    if not bool((y == 0).any()):
        fresh = forward(make_layer(student, 0.6), x, "a new Dropout(0.6)")
        if bool((fresh == 0).any()):            # it drops before .eval(), not after .eval() and .train()
            named("Dropout(0.6) after .eval() and .train() dropped nothing", OWN_FLAG)
    check(bool((y == 0).any()), "Dropout(0.6) after .train() dropped nothing: training mode must drop again")


@points(1, cell=CELL)
def test_layer_follows_the_network_mode(student):
    """inside a network, net.eval() turns Dropout off and net.train() turns it on again"""
    # A container's eval() is train(False), which calls train(False) on each submodule, never the
    # submodule's own eval(): a layer that keeps its own flag set in an overridden eval() misses it.
    # nn.Module.train(mode) sets self.training, so the layer must read self.training in forward.
    x = nonzero_input(32, 40, seed=72)
    net = student.get("torch").attr("nn").attr("Sequential")(make_layer(student, 0.6))
    net.method("eval", timeout=30)()
    y = forward(net, x, "nn.Sequential(Dropout(0.6)) after net.eval()")
    if not torch.equal(y, x) and bool((y == 0).any()):
        alone = make_layer(student, 0.6)
        set_mode(alone, "eval")
        if torch.equal(forward(alone, x, "Dropout(0.6) after .eval()"), x):
            named("nn.Sequential(Dropout(0.6)) after net.eval() dropped elements", OWN_FLAG)
        named("nn.Sequential(Dropout(0.6)) after net.eval() dropped elements", why_active_in_eval(student, x, 0.6))
    check(torch.equal(y, x), "nn.Sequential(Dropout(0.6)) after net.eval() changed its input: the layer must follow "
                             "self.training, which net.eval() sets for every submodule")
    net.method("train", timeout=30)()
    y = forward(net, x, "nn.Sequential(Dropout(0.6)) after net.train()")
    check(bool((y == 0).any()), "nn.Sequential(Dropout(0.6)) after net.train() dropped nothing")


@points(1, cell=CELL)
def test_layer_rejects_invalid_p(student):
    """Dropout(p) raises ValueError for p outside [0, 1] (when built, or at the latest on the first forward)"""
    x = nonzero_input(4, 5, seed=80)
    for bad in (-0.1, 1.5):
        try:
            layer = make_layer(student, bad)
            layer.method("__call__", forbid=DROPOUT, timeout=30)(x)
        except StudentError as e:
            check(e.type_name == "ValueError", f"Dropout({bad}) raised {e.type_name}; it must raise ValueError")
        else:
            fail(f"Dropout({bad}) was built and applied without a ValueError; p must be in [0, 1]")
    try:
        check_layer_drops(make_layer(student, 0.5), "Dropout(0.5)(x)")    # ...and only then
    except StudentError as e:
        fail(f"Dropout(0.5) raised {e.type_name}: p = 0.5 is a valid probability")
