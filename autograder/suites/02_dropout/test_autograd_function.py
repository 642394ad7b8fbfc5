"""Hidden tests of 02_dropout, exercise 3: `DropoutFunction`, dropout as a torch.autograd.Function.

The notebook's interface: `DropoutFunction.apply(x, p, generator)` is inverted dropout (always in
training mode), and its hand-written backward returns (grad_out * mask / (1 - p), None, None) with the
mask of the SAME forward pass. Oracles as in test_function.py: inputs without zeros (the mask is
y != 0), generators created in the student's kernel (RemoteRefs), the vector-Jacobian product computed
in the kernel by torch.autograd.functional.vjp (which calls the student's backward) and checked here
against the mask read off the returned output. The known wrong backward passes are computed here
(Mistake): no 1 / (1 - p), a mask drawn again from the generator, no mask at all. PyTorch's dropout is
forbidden during every call.
"""
import torch

from autograder.testing import (Mistake, RemoteRef, StudentError, assert_close, check, fail, named, nonzero_input,
                                points, remote_generator)

DROPOUT = ("dropout",)
CELL = "test_DropoutFunction"
SECTION = "(section 3)"

NO_SCALE = f"your backward pass returns grad_out * mask, without the 1 / (1 - p) the forward pass multiplied by {SECTION}"
REDRAWN = ("your backward pass draws a new mask from the generator: the gradient must flow through the units kept in "
           f"THIS forward pass, so save the forward pass's mask (ctx.save_for_backward) and reuse it {SECTION}")
NO_MASK = f"your backward pass returns grad_out / (1 - p) everywhere: dropped units must get no gradient {SECTION}"


def function_class(student) -> RemoteRef:
    cls = student.get("DropoutFunction")
    if not isinstance(cls, RemoteRef):
        fail(f"DropoutFunction is {type(cls).__name__}, not a class: write class DropoutFunction(torch.autograd.Function)")
    return cls


def apply(student, *args):
    y = function_class(student).method("apply", forbid=DROPOUT, timeout=60)(*args)
    if not isinstance(y, torch.Tensor):
        fail(f"DropoutFunction.apply(x, p, generator) returned {type(y).__name__}, not a tensor")
    return y


def remote_partial(student, fn_ref, **kwargs):
    """functools.partial(fn_ref, **kwargs), built in the student's kernel (kwargs: data or RemoteRefs)."""
    functools = student.get("__builtins__").attr("__import__")("functools")
    return functools.attr("partial")(fn_ref, **kwargs)


def forward_backward(student, x, v, p, seed):
    """(y, dL/dx) for L = sum(y * v), through the student's forward and backward, with a generator seeded `seed`."""
    fn = remote_partial(student, function_class(student).attr("apply"), p=p, generator=remote_generator(student, seed))
    vjp = student.get("torch").attr("autograd").attr("functional").method("vjp", forbid=DROPOUT, timeout=60)
    try:
        result = vjp(fn, x, v)
    except StudentError as e:
        what = (f"backpropagation through DropoutFunction.apply(x, p={p}, generator) failed ({e.type_name}: "
                f"{e.error_message[:200]})")
        if "incorrect number of gradients" in e.error_message:
            named(what, f"backward must return one value per input of forward: (grad_x, None, None) {SECTION}")
        fail(f"{what}; backward must return one value per input of forward: (grad_x, None, None)")
    check(isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], torch.Tensor),
          f"backpropagation through DropoutFunction.apply(x, p={p}) gave no gradient")
    return result


def check_values(y, x, p, what):
    """Every element of y is 0 or x / (1 - p); some of each."""
    check(tuple(y.shape) == tuple(x.shape), f"{what}: wrong shape: got {tuple(y.shape)}")
    y64, x64 = y.detach().double(), x.double()
    check(bool(torch.isfinite(y64).all()), f"{what}: the result contains NaN or inf")
    kept = y64 != 0
    check(bool(kept.any()) and not bool(kept.all()), f"{what}: {'no' if bool(kept.all()) else 'every'} element was dropped")
    ok = torch.isclose(y64[kept], x64[kept] / (1 - p), rtol=1e-5, atol=1e-6)
    check(bool(ok.all()), f"{what}: the elements you keep are not x / (1 - p) ({int((~ok).sum())} differ)")
    return kept


def second_draw_mask(shape, p, seed, dtype):
    """The mask a backward pass gets by drawing again, torch.rand(shape, generator=g) >= p, after the forward's draw."""
    g = torch.Generator().manual_seed(seed)
    torch.rand(shape, generator=g, dtype=dtype)
    return torch.rand(shape, generator=g, dtype=dtype) >= p


def gradient_mistakes(v, kept, p, seed, dtype):
    return [Mistake(v * kept, NO_SCALE), Mistake(v * second_draw_mask(v.shape, p, seed, dtype) / (1 - p), REDRAWN),
            Mistake(v / (1 - p), NO_MASK)]


@points(1, cell=CELL)
def test_forward_is_inverted_dropout(student):
    """DropoutFunction.apply: values 0 or x / (1 - p), about a fraction p dropped, p = 0 and p = 1, ValueError"""
    x = nonzero_input(100, 100, seed=70)
    p = 0.3
    y = apply(student, x, p, remote_generator(student, 71))
    kept = check_values(y, x, p, f"DropoutFunction.apply(x, p={p}, generator)")
    dropped = 1 - kept.double().mean().item()
    check(abs(dropped - p) < 6 * (p * (1 - p) / x.numel()) ** 0.5,
          f"DropoutFunction.apply(x, p={p}) dropped a fraction {dropped:.3f}; p is the probability of DROPPING")
    check(torch.equal(apply(student, x, 0.0, None), x), "DropoutFunction.apply(x, p=0) must return x unchanged")
    zeros = apply(student, x, 1.0, None)
    check(bool((zeros == 0).all()) and bool(torch.isfinite(zeros).all()),
          "DropoutFunction.apply(x, p=1) must return zeros (no NaN)")
    try:
        apply(student, x, 1.5, None)
    except StudentError as e:
        check(e.type_name == "ValueError", f"DropoutFunction.apply(x, p=1.5) raised {e.type_name}; raise ValueError")
    else:
        fail("DropoutFunction.apply(x, p=1.5) must raise ValueError")


@points(1, cell=CELL)
def test_backward_reuses_the_forward_mask(student):
    """DropoutFunction's backward: grad_out * mask / (1 - p) with the forward pass's own mask"""
    p, seed = 0.3, 72
    x = nonzero_input(30, 40, seed=73)
    v = torch.randn(30, 40, generator=torch.Generator().manual_seed(74))
    y, grad = forward_backward(student, x, v, p, seed)
    kept = check_values(y, x, p, f"DropoutFunction.apply(x, p={p}, generator)")
    assert_close(grad, v * kept / (1 - p), f"the gradient of DropoutFunction.apply(x, p={p})",
                 mistakes=gradient_mistakes(v, kept, p, seed, x.dtype))


@points(1, cell=CELL)
def test_backward_float64_feature_maps_and_p_one(student):
    """DropoutFunction's backward on float64 feature maps (N, C, H, W) with p = 0.75; p = 1 gives zero gradients"""
    p, seed = 0.75, 75
    x = nonzero_input(8, 3, 6, 5, seed=76).double()
    v = torch.randn(8, 3, 6, 5, generator=torch.Generator().manual_seed(77), dtype=torch.float64)
    y, grad = forward_backward(student, x, v, p, seed)
    check(y.dtype == torch.float64 and grad.dtype == torch.float64,
          f"DropoutFunction on a float64 input returned {y.dtype} and a {grad.dtype} gradient; keep x's dtype")
    kept = check_values(y, x, p, f"DropoutFunction.apply(x, p={p}) on float64 (8, 3, 6, 5) feature maps")
    assert_close(grad, v * kept / (1 - p), f"the gradient of DropoutFunction.apply(x, p={p}) on float64 feature maps",
                 rtol=1e-9, atol=1e-12, mistakes=gradient_mistakes(v, kept, p, seed, x.dtype))
    y1, grad1 = forward_backward(student, x, v, 1.0, seed)
    check(bool((y1 == 0).all()) and bool((grad1 == 0).all()) and bool(torch.isfinite(grad1).all()),
          "DropoutFunction with p = 1: the output and its gradient must be zeros (no NaN)")


@points(1, cell=CELL)
def test_generator_and_device(student):
    """DropoutFunction draws from the generator (same seed same mask, next call another) on x's device"""
    x = nonzero_input(40, 50, seed=78)
    g1, g2 = remote_generator(student, 79), remote_generator(student, 79)
    y1, y2 = apply(student, x, 0.4, g1), apply(student, x, 0.4, g2)
    check_values(y1, x, 0.4, "DropoutFunction.apply(x, 0.4, generator)")
    check(torch.equal(y1, y2), "two generators seeded with the same number gave different masks: draw the mask from "
                               "`generator`")
    check(not torch.equal(y1, apply(student, x, 0.4, g1)), "two calls with the same generator gave the same mask: every "
                                                           "forward pass must draw a new one")
    meta = torch.empty(16, 32, device="meta")
    try:
        y_meta = apply(student, meta, 0.5, None)
    except StudentError as e:
        fail(f"DropoutFunction.apply(x, 0.5) failed for a tensor x that is not on the CPU ({e.type_name}: "
             f"{e.error_message[:200]}); draw the random numbers on x's device")
    check(y_meta.device.type == "meta" and tuple(y_meta.shape) == (16, 32) and y_meta.dtype == meta.dtype,
          f"DropoutFunction.apply(x, 0.5) for a tensor on the 'meta' device returned a {y_meta.dtype} tensor on "
          f"'{y_meta.device.type}'; keep x's device and dtype")
