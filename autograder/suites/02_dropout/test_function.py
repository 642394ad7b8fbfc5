"""Hidden tests of 02_dropout, exercise 1: the function `dropout(x, p, training=True, generator=None)`.

Oracles
-------
- Values: inverted dropout's output is, element by element, either 0 or x / (1 - p). Inputs have no
  zeros, so `y != 0` is the mask the student drew, and every kept element is checked against
  x / (1 - p) computed here. Probabilities are chosen so that the classic mistakes cannot pass by
  accident: p = 0.5 would hide "scaled by 1/p instead of 1/(1-p)" and "p used as the keep
  probability", so the tests use p = 0.2, 0.3, 0.7, 0.75.
- Statistics: on n = 1,000,000 elements the fraction dropped is Binomial(n, p) / n, whose standard
  deviation sqrt(p (1 - p) / n) is computed here; we allow 6 of them (a correct solution fails with
  probability about 2e-9). The mean of y for a constant input c has standard deviation
  c sqrt(p / ((1 - p) n)); again 6 of them.
- Device: there is no GPU here, so the input lives on the "meta" device (shapes and dtypes, no
  data). Random numbers drawn with device=x.device are meta tensors too, but a mask drawn on the CPU
  and multiplied with a meta tensor raises "Tensor on device cpu is not on the expected device meta"
  exactly where it would be a slow host-to-device copy (or an error) on a GPU. We check the output's
  device. (A CPU mask moved with `.to(x.device)` passes: it is correct, only slower.)
- Generator: torch.Generator is not data, so it is created IN the student's kernel through the
  notebook's own `torch` module (a RemoteRef, see `remote_generator`). Nothing the kernel returns is
  trusted: reproducibility is checked by comparing outputs here.
- Gradients: computed in the grader, not taken from the kernel: with one generator seed (one mask)
  dropout is linear in x, so dropout(x + v) - dropout(x) must be v * mask / (1 - p); and for an x
  that requires grad the output must require grad (not detached).
- Doing nothing earns nothing: every test also requires that training-mode dropout drops some
  elements and keeps others (a function returning x, a copy, zeros or a constant scores 0).

PyTorch's own dropout (aten dropout/native_dropout/feature_dropout/..., F.dropout, nn.Dropout) is
forbidden while the student's function runs (op group "dropout").

Known mistakes are named by what the student's output shows (testing: `check(..., mistake=...)`),
each recognised from the grader's own numbers: kept elements equal to x (no rescaling) or x / p,
the fraction dropped equal to 1 - p (p taken as the keep probability), drops with training=False,
NaN at p = 1, no ValueError, a failure on a non-CPU tensor that names the device, a float64
result for a lower-precision input, masks shared across the batch, a generator that changes
nothing, a zero gradient (detached output) and an in-place error in backpropagation.
"""
import math

import torch

from autograder.testing import StudentError, check, fail, named, nonzero_input, points, remote_generator

DROPOUT = ("dropout",)
CELL = "test_dropout"


def student_dropout(student):
    return student.function("dropout", forbid=DROPOUT, timeout=60)


def tensor_result(y, what):
    if not isinstance(y, torch.Tensor):
        fail(f"{what}: expected a torch.Tensor, got {type(y).__name__}")
    return y


# ------------------------------------------------------------------ known mistakes
NO_RESCALE = ("the elements you keep are x itself, not rescaled: inverted dropout multiplies every kept element by "
              "1 / (1 - p), so that the expected output equals x and nothing changes at inference (section 1)")
RESCALE_BY_P = ("the elements you keep are x / p: the factor is 1 / (1 - p), one over the probability of KEEPING an "
                "element (section 1)")
P_IS_KEEP = ("you use p as the probability of keeping an element (you drop a fraction 1 - p and scale by 1 / p): "
             "here, as in PyTorch, p is the probability of DROPPING one; the original paper's p is the keep "
             "probability (sections 1 and 4)")
ACTIVE_AT_INFERENCE = ("your dropout still drops elements when called with training=False: at inference it must "
                       "return x unchanged, no mask and no scaling (section 4)")
NAN_AT_P_ONE = ("with p = 1 you divide by 1 - p = 0 (0 / 0 gives NaN): when every element is dropped, return zeros "
                "without rescaling (section 1)")
NO_VALUE_ERROR = "you accept a p outside [0, 1]: raise ValueError when p is not a probability (section 1)"
MASK_ON_CPU = ("your mask is made on the CPU whatever x's device: draw it with device=x.device "
               "(torch.rand(x.shape, device=x.device, ...)), or it costs a copy to the GPU every step (section 1)")
OTHER_DTYPE = ("your result has another dtype than x: a mask made in float64 (or multiplied with a float64 "
               "number tensor) promotes the result; make the mask in x.dtype or use a bool mask (section 1)")
SHARED_MASK = ("every example of the batch gets the same mask (one mask shared along the batch, e.g. drawn with "
               "x.shape[1:]): draw one coin per element, with x's full shape (section 1)")
IGNORES_GENERATOR = ("your mask does not come from the generator argument (two generators with the same seed gave "
                     "different masks): pass generator=generator to torch.rand (section 1)")
DETACHED = ("no gradient reaches x: the output is detached from x (.detach(), torch.no_grad() or a copy through "
            "numpy); compute it from x with tensor operations (section 1)")
IN_PLACE = ("backpropagation fails because you change x in-place (x.mul_, x[...] = 0): x is an input of the "
            "computation graph; compute a new tensor instead (section 1)")


def dropped_fraction_near(y, q):
    """Whether y's fraction of zeros is q, up to 6 binomial standard deviations for y.numel() elements."""
    n = y.numel()
    return abs((y == 0).double().mean().item() - q) <= 6 * math.sqrt(max(q * (1 - q), 1e-12) / n) + 1e-9


def check_inverted_dropout_values(y, x, p, what):
    """Every element of y is 0 or x / (1 - p) (x has no zeros)."""
    tensor_result(y, what)
    check(tuple(y.shape) == tuple(x.shape), f"{what}: wrong shape: got {tuple(y.shape)}")
    y64, x64 = y.detach().to(torch.float64), x.detach().to(torch.float64)
    check(bool(torch.isfinite(y64).all()), f"{what}: the result contains NaN or inf")
    kept = y64 != 0
    check(bool(kept.any()), f"{what}: every element was dropped")
    check(not bool(kept.all()), f"{what}: no element was dropped")
    scaled = torch.isclose(y64[kept], x64[kept] / (1 - p), rtol=1e-5, atol=1e-6)
    if not bool(scaled.all()):
        if bool(torch.isclose(y64[kept], x64[kept], rtol=1e-5, atol=1e-6).all()):
            named(what, NO_RESCALE)
        if bool(torch.isclose(y64[kept], x64[kept] / p, rtol=1e-5, atol=1e-6).all()):
            named(what, P_IS_KEEP if dropped_fraction_near(y64, 1 - p) else RESCALE_BY_P)
        ratio = (y64[kept] / x64[kept]).median().item()
        fail(f"{what}: the elements you keep are not x / (1 - p): {int((~scaled).sum())} of {int(kept.sum())} "
             f"differ (your kept elements are about {ratio:.3g} times x)")


def check_drops(fn, x, p, what):
    """In training mode dropout(x, p) must drop some elements and keep others: no point of this
    exercise goes to a function that does nothing (returns x, a copy, zeros or a constant)."""
    y = tensor_result(fn(x, p, training=True), what)
    check(tuple(y.shape) == tuple(x.shape), f"{what}: wrong shape: got {tuple(y.shape)}")
    kept = y.detach() != 0
    check(bool(kept.any()) and not bool(kept.all()),
          f"{what}: in training mode dropout must drop some elements and keep the others "
          f"({'nothing' if bool(kept.all()) else 'everything'} was dropped)")
    return y


# ------------------------------------------------------------------ inference and edge cases
@points(1, cell=CELL)
def test_identity_at_inference(student):
    """dropout with training=False returns x unchanged"""
    fn = student_dropout(student)
    x = nonzero_input(32, 50, seed=1)
    for p in (0.3, 0.5, 0.9):
        y = tensor_result(fn(x, p, training=False), f"dropout(x, p={p}, training=False)")
        check(tuple(y.shape) == tuple(x.shape), f"dropout(x, p={p}, training=False): wrong shape: got {tuple(y.shape)}")
        if not torch.equal(y.to(x.dtype), x) and bool((y == 0).any()):
            named(f"dropout(x, p={p}, training=False)", ACTIVE_AT_INFERENCE)
        check(torch.equal(y.to(x.dtype), x), f"dropout(x, p={p}, training=False) changed x: at inference dropout "
                                             f"must do nothing (no mask, no scaling)")
    y = fn(x, 0.4, training=False, generator=remote_generator(student, 5))
    y = tensor_result(y, "dropout(x, 0.4, training=False, generator=g)")
    if tuple(y.shape) == tuple(x.shape) and not torch.equal(y.to(x.dtype), x) and bool((y == 0).any()):
        named("dropout(x, p=0.4, training=False, generator=g)", ACTIVE_AT_INFERENCE)
    check(tuple(y.shape) == tuple(x.shape) and torch.equal(y.to(x.dtype), x),
          "dropout(x, p=0.4, training=False, generator=g) changed x: at inference dropout must do nothing")
    check_drops(fn, x, 0.5, "dropout(x, p=0.5, training=True)")      # the flag matters: not always off


@points(1, cell=CELL)
def test_p_zero_is_identity(student):
    """dropout with p = 0 in training mode returns x unchanged"""
    x = nonzero_input(16, 40, seed=2)
    y = tensor_result(student_dropout(student)(x, 0.0, training=True), "dropout(x, p=0.0)")
    check(tuple(y.shape) == tuple(x.shape), f"dropout(x, p=0.0): wrong shape: got {tuple(y.shape)}")
    check(torch.equal(y.to(x.dtype), x), "dropout(x, p=0.0) changed x: with p = 0 nothing is dropped or scaled")
    check_drops(student_dropout(student), x, 0.5, "dropout(x, p=0.5)")   # p matters: not a function that does nothing


@points(1, cell=CELL)
def test_p_one_gives_zeros(student):
    """dropout with p = 1 returns zeros (not NaN)"""
    x = nonzero_input(8, 30, seed=3) * 100
    y = tensor_result(student_dropout(student)(x, 1.0), "dropout(x, p=1.0)")
    check(tuple(y.shape) == tuple(x.shape), f"dropout(x, p=1.0): wrong shape: got {tuple(y.shape)}")
    check(bool(torch.isfinite(y).all()), "dropout(x, p=1.0) contains NaN or inf: with p = 1 every element is "
                                         "dropped and there is nothing to rescale (avoid dividing by 1 - p = 0)",
          mistake=NAN_AT_P_ONE)
    check(bool((y == 0).all()), "dropout(x, p=1.0) must be all zeros: every element is dropped")
    check(y.dtype == x.dtype, f"dropout(x, p=1.0) on a float32 input returned {y.dtype}")
    check_drops(student_dropout(student), x, 0.5, "dropout(x, p=0.5)")   # zeros only when p = 1


@points(1, cell=CELL)
def test_invalid_p_raises_value_error(student):
    """dropout raises ValueError for p outside [0, 1]"""
    fn = student_dropout(student)
    x = nonzero_input(4, 5, seed=4)
    for bad in (-0.1, 1.5):
        try:
            fn(x, bad)
        except StudentError as e:
            check(e.type_name == "ValueError", f"dropout(x, p={bad}) raised {e.type_name}; it must raise ValueError")
        else:
            fail(f"dropout(x, p={bad}) returned a result; it must raise ValueError (p is a probability in [0, 1])",
                 mistake=NO_VALUE_ERROR)
    for p in (0.0, 1.0):                                             # ...and only then
        try:
            tensor_result(fn(x, p), f"dropout(x, p={p})")
        except StudentError as e:
            fail(f"dropout(x, p={p}) raised {e.type_name}: p = {p} is a valid probability")
    check_drops(fn, nonzero_input(20, 30, seed=5), 0.5, "dropout(x, p=0.5)")


# ------------------------------------------------------------------ the values
@points(1, cell=CELL)
def test_kept_elements_scaled_by_inverse_keep_probability(student):
    """dropout zeroes elements and multiplies the others by 1 / (1 - p)"""
    fn = student_dropout(student)
    for p, shape, seed in [(0.2, (64, 500), 10), (0.75, (4, 3, 20, 20), 11), (0.5, (1000,), 12)]:
        x = nonzero_input(*shape, seed=seed)
        check_inverted_dropout_values(fn(x, p, training=True), x, p, f"dropout(x of shape {shape}, p={p})")


@points(1, cell=CELL)
def test_fraction_dropped_is_p(student):
    """on a million elements, the fraction dropped is p (p = probability of dropping)"""
    fn = student_dropout(student)
    n = 1_000_000
    x = nonzero_input(1000, 1000, seed=20)
    for p in (0.2, 0.7):
        y = tensor_result(fn(x, p), f"dropout(x, p={p})")
        check(tuple(y.shape) == tuple(x.shape), f"dropout(x, p={p}): wrong shape: got {tuple(y.shape)}")
        dropped = (y == 0).double().mean().item()
        tolerance = 6 * math.sqrt(p * (1 - p) / n)
        if abs(dropped - p) > tolerance:
            what = f"dropout(x, p={p}) on {n:,} elements dropped a fraction {dropped:.4f}"
            if abs(dropped - (1 - p)) <= tolerance:
                named(what, P_IS_KEEP)
            fail(f"{what}; that is more than {tolerance:.4f} away from p")


@points(1, cell=CELL)
def test_mean_preserved(student):
    """on a million elements, the mean of dropout(x) equals the mean of x (inverted dropout)"""
    fn = student_dropout(student)
    n = 1_000_000
    c = 3.0
    x = torch.full((1000, 1000), c)
    for p in (0.3, 0.6):
        y = tensor_result(fn(x, p), f"dropout(x, p={p})")
        mean = y.double().mean().item()
        tolerance = 6 * c * math.sqrt(p / ((1 - p) * n))
        what = f"dropout(x, p={p}) of a constant x = {c} has mean {mean:.4f}"
        if abs(mean - c) > tolerance and abs(mean - c * (1 - p)) <= tolerance:
            named(what, NO_RESCALE)
        if abs(mean - c) > tolerance and abs(mean - c * (1 - p) / p) <= tolerance / p:
            named(what, RESCALE_BY_P)
        check(abs(mean - c) <= tolerance,
              f"dropout(x, p={p}) of a constant x = {c} has mean {mean:.4f}; inverted dropout keeps the mean "
              f"(E[y] = x), up to {tolerance:.4f} on {n:,} elements")


# ------------------------------------------------------------------ device, dtype, independence
@points(1, cell=CELL)
def test_mask_on_the_input_device(student):
    """dropout draws its mask on x's device (tested with a non-CPU 'meta' tensor)"""
    # No GPU here: a "meta" tensor stands in for one. torch.rand(..., device=x.device) works on it;
    # a mask made on the CPU (torch.rand(x.shape)) and multiplied with x raises, as it would cost a
    # host-to-device copy per step (or fail) on a GPU.
    fn = student_dropout(student)
    check_drops(fn, nonzero_input(64, 256, seed=6), 0.5, "dropout(x, p=0.5) on the CPU")
    x = torch.empty(64, 256, device="meta")
    try:
        y = fn(x, 0.5)
    except StudentError as e:
        device_error = "device" in str(e.error_message).lower()
        fail(f"dropout(x, p=0.5) failed for a tensor x that is not on the CPU ({e.type_name}: "
             f"{e.error_message[:200]})" + (f": {MASK_ON_CPU}" if device_error else
                                             ". Draw the random numbers on x's device: "
                                             "torch.rand(x.shape, device=x.device, ...)"),
             mistake=MASK_ON_CPU if device_error else None)
    tensor_result(y, "dropout(x, p=0.5) on a non-CPU tensor")
    check(y.device.type == "meta", f"dropout(x, p=0.5) for a tensor on the 'meta' device returned a tensor on "
                                   f"'{y.device.type}'; the result must stay on x's device: {MASK_ON_CPU}",
          mistake=MASK_ON_CPU)
    check(tuple(y.shape) == tuple(x.shape), f"dropout(x, p=0.5) on a non-CPU tensor: wrong shape: got {tuple(y.shape)}")
    check(y.dtype == x.dtype, f"dropout(x, p=0.5) on a non-CPU float32 tensor returned {y.dtype}: {OTHER_DTYPE}",
          mistake=OTHER_DTYPE)


@points(1, cell=CELL)
def test_dtype_preserved(student):
    """dropout returns x's dtype (float32, float64, float16, bfloat16)"""
    fn = student_dropout(student)
    base = nonzero_input(64, 64, seed=30)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = base.to(dtype)
        y = tensor_result(fn(x, 0.3), f"dropout(x, p=0.3) for a {dtype} input")
        check(y.dtype == dtype, f"dropout(x, p=0.3) for a {dtype} input returned {y.dtype}: {OTHER_DTYPE}",
              mistake=OTHER_DTYPE)
        kept = y != 0
        check(bool(kept.any()) and not bool(kept.all()), f"dropout(x, p=0.3) for a {dtype} input dropped "
                                                         f"{'nothing' if bool(kept.all()) else 'everything'}")
        ok = torch.isclose(y[kept].double(), x[kept].double() / 0.7, rtol=1e-2, atol=1e-3)
        if not bool(ok.all()):
            what = f"dropout(x, p=0.3) for a {dtype} input"
            if bool(torch.isclose(y[kept].double(), x[kept].double(), rtol=1e-2, atol=1e-3).all()):
                named(what, NO_RESCALE)
            if bool(torch.isclose(y[kept].double(), x[kept].double() / 0.3, rtol=1e-2, atol=1e-3).all()):
                named(what, P_IS_KEEP if dropped_fraction_near(y, 0.7) else RESCALE_BY_P)
        check(bool(ok.all()), f"dropout(x, p=0.3) for a {dtype} input: the kept elements are not x / (1 - p)")


@points(1, cell=CELL)
def test_every_element_gets_its_own_coin(student):
    """dropout draws an independent mask for every element (rows of a batch differ, units differ)"""
    fn = student_dropout(student)
    y = tensor_result(fn(torch.ones(256, 200), 0.5), "dropout(torch.ones(256, 200), p=0.5)")
    check(tuple(y.shape) == (256, 200), f"dropout(torch.ones(256, 200), p=0.5): wrong shape: got {tuple(y.shape)}")
    mask = (y != 0).to(torch.int8)
    # 256 independent 200-element masks are all different unless something is shared (chance ~ 1e-55).
    rows = torch.unique(mask, dim=0).shape[0]
    what = f"dropout(torch.ones(256, 200), p=0.5): only {rows} different masks among 256 rows"
    if rows == 1:
        named(what, SHARED_MASK)
    check(rows >= 250, f"{what}; every example of a batch must get its own mask (draw it with x's full shape)")
    cols = torch.unique(mask, dim=1).shape[1]
    check(cols >= 195, f"dropout(torch.ones(256, 200), p=0.5): only {cols} different patterns among 200 units; "
                       f"every element needs its own coin, not one per example")
    y4 = tensor_result(fn(torch.ones(16, 8, 6, 6), 0.5), "dropout(torch.ones(16, 8, 6, 6), p=0.5)")
    check(tuple(y4.shape) == (16, 8, 6, 6), f"dropout on a (16, 8, 6, 6) input: wrong shape: got {tuple(y4.shape)}")
    maps = (y4 != 0).reshape(16 * 8, 36).to(torch.int8)
    constant = int(((maps.sum(1) == 0) | (maps.sum(1) == 36)).sum())
    check(constant <= 2, f"dropout on a (16, 8, 6, 6) input dropped or kept {constant} of the 128 feature maps as a "
                         f"whole; every element needs its own coin")


# ------------------------------------------------------------------ generator and gradients
@points(1, cell=CELL)
def test_generator_controls_the_mask(student):
    """dropout draws its mask from the generator: same seed, same mask; other seed or next call, another mask"""
    fn = student_dropout(student)
    x = nonzero_input(50, 80, seed=40)
    g1, g2, g3 = (remote_generator(student, s) for s in (123, 123, 124))
    y1 = tensor_result(fn(x, 0.4, training=True, generator=g1), "dropout(x, 0.4, generator=g)")
    check_inverted_dropout_values(y1, x, 0.4, "dropout(x, 0.4, generator=g)")
    y2 = tensor_result(fn(x, 0.4, training=True, generator=g2), "dropout(x, 0.4, generator=g)")
    check(torch.equal(y1, y2), f"dropout(x, 0.4, generator=g): {IGNORES_GENERATOR}", mistake=IGNORES_GENERATOR)
    y3 = tensor_result(fn(x, 0.4, training=True, generator=g3), "dropout(x, 0.4, generator=g)")
    check(not torch.equal(y1, y3), "generators seeded with different numbers gave the same mask")
    y4 = tensor_result(fn(x, 0.4, training=True, generator=g1), "dropout(x, 0.4, generator=g)")
    check(not torch.equal(y1, y4), "two calls with the same generator gave the same mask: the generator's state "
                                   "must advance (do not re-seed it)")


@points(1, cell=CELL)
def test_gradient_is_mask_over_keep_probability(student):
    """gradients flow through dropout: d(output)/dx = mask / (1 - p)"""
    # The gradient is computed HERE from the student's outputs, never taken from the kernel: with the
    # same generator seed (the same mask) dropout is linear in x, so dropout(x + v) - dropout(x) is
    # exactly the (diagonal) Jacobian applied to v, which must be v * mask / (1 - p). The output
    # must also stay connected to x (no .detach(), no torch.no_grad(), no in-place write to x): for
    # an x that requires grad, the result must require grad.
    p = 0.3
    x = nonzero_input(20, 30, seed=50)
    v = torch.randn(20, 30, generator=torch.Generator().manual_seed(51))
    fn = student_dropout(student)
    y0 = tensor_result(fn(x, p, True, remote_generator(student, 52)), f"dropout(x, p={p}, generator=g)")
    check_inverted_dropout_values(y0, x, p, f"dropout(x, p={p}, generator=g)")
    y1 = tensor_result(fn(x + v, p, True, remote_generator(student, 52)), f"dropout(x + v, p={p}, generator=g)")
    check(tuple(y1.shape) == tuple(x.shape), f"dropout(x + v, p={p}): wrong shape: got {tuple(y1.shape)}")
    expected = v.double() * (y0 != 0) / (1 - p)
    ok = torch.isclose(y1.double() - y0.double(), expected, rtol=1e-4, atol=1e-5)
    check(bool(ok.all()), f"dropout(x + v) - dropout(x) with the same generator seed differs from v * mask / (1 - p) "
                          f"for {int((~ok).sum())} of {ok.numel()} elements: the derivative of dropout is "
                          f"mask / (1 - p) (does the mask depend on x rather than on the generator only?)")
    try:
        y = fn(x.clone().requires_grad_(True), p, True, remote_generator(student, 53))
    except StudentError as e:
        if "in-place" in str(e.error_message).lower() or "inplace" in str(e.error_message).lower():
            named(f"dropout(x, p={p}) for an x that requires grad failed ({e.type_name})", IN_PLACE)
        fail(f"dropout(x, p={p}) failed for an x that requires grad ({e.type_name}: {e.error_message[:200]}); the "
             f"output must be a differentiable function of x (no .detach(), no torch.no_grad(), no in-place writes)")
    if not (isinstance(y, torch.Tensor) and y.requires_grad):
        named(f"dropout(x, p={p}) for an x that requires grad", DETACHED)
