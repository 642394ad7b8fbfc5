"""Hidden tests of 04_alexnet_vgg, part 1: top-k accuracy, max pooling and its backward pass.

Oracles (all computed here, in the grader)
------------------------------------------
- topk_accuracy: the rank of the target in its row, counted with comparisons (the number of classes
  whose logit is strictly larger); the target is in the top k exactly when that rank is below k.
  Inputs are random floats, so no logit ties with the target's (the contract leaves ties open).
- max_pool2d: torch's own F.max_pool2d on the same input.
- max_pool2d_backward: torch's autograd through F.max_pool2d. The tie rule of the course is
  PyTorch's (documented in the notebook): the whole gradient of a window goes to the FIRST element
  of the window that equals its maximum, in row-major order (top row first, left to right); an
  input that is the maximum of several overlapping windows receives the sum of their gradients.
  The tie test uses integer-valued inputs (many windows share their maximum) and all-zero inputs.

Known mistakes are computed with `route`, a slow, plain loop over windows with a choice of rule
(first, last, every tied maximum, split among them, every element of the window, the window's
average), of padding value and of adding or overwriting. Their outputs are only compared with the
student's result to name the mistake; they are never sent to the kernel or shown.

Forbidden inside the student's functions: in topk_accuracy the library's metrics (dlcourse.metrics);
in max_pool2d and max_pool2d_backward torch's pooling (any operator named *pool*, also autograd
through it) and unfolding (F.unfold, Tensor.unfold, im2col); in max_pool2d_backward also autograd
itself (the "autograd" op group, as in 01's conv2d_backward): a backward pass obtained by calling
.backward() through a pooling written with allowed tensor ops is autograd's work, not the student's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from autograder.testing import Mistake, RemoteRef, StudentError, assert_close, check, fail, points

POOL_RULES = ("pooling", "unfold")
BACKWARD_RULES = ("pooling", "unfold", "autograd")       # the backward pass is the exercise: no autograd
TOPK, POOL, BACKWARD = "test_topk_accuracy", "test_max_pool2d", "test_max_pool2d_backward"
# The library's finished metric (dl.topk_accuracy, dl.accuracy, dl.num_correct: the module
# dlcourse.metrics) is forbidden inside topk_accuracy, enforced while it runs (forbid_calls).
TOPK_CALLS = {"forbid_calls": ("dlcourse.metrics",)}


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------
# topk_accuracy (3 points)
# ------------------------------------------------------------------------------------------
def target_rank(logits, targets):
    """(N,) number of classes whose logit is strictly larger than the target's."""
    return (logits > logits.gather(1, targets[:, None])).sum(dim=1)


def topk_reference(logits, targets, ks):
    rank = target_rank(logits, targets)
    return [float((rank < k).double().mean()) for k in ks]


def topk_mistakes(logits, targets, ks):
    rank = target_rank(logits, targets)
    C = logits.shape[1]
    out = [
        Mistake([float((rank + 1 < k).double().mean()) for k in ks],
                "each accuracy equals top-(k-1): the target is in the top k when FEWER than k classes score above "
                "it, so it may be preceded by k - 1 of them. Check `>` against `>=` (or `<` against `<=`) at the "
                "boundary (section 1)"),
        Mistake([float((rank < k + 1).double().mean()) if k < C else 1.0 for k in ks],
                "each accuracy equals top-(k+1): you count the target as correct when k classes score above it; "
                "only k - 1 may (check `<=` against `<` at the boundary, section 1)"),
        Mistake([float((rank < k).double().mean()) / k for k in ks],
                "each accuracy is the right one divided by k: you averaged over the N x k matrix of hits "
                "instead of over the N rows (a row is correct when ANY of its k guesses is the target)"),
    ]
    if logits.shape[0] == C:                # square logits: the wrong dimension gives numbers, not an error
        out.append(Mistake([float((logits.topk(k, dim=0).indices == targets).any(dim=0).double().mean())
                            for k in ks],
                           "your result ranks the logits down the columns (over the N images, dim=0) instead of "
                           "along each row (over the C classes, dim=1)"))
    return out


def call_topk(student, logits, targets, ks, what):
    got = student.function("topk_accuracy", timeout=30, **TOPK_CALLS)(logits, targets, ks=ks)
    if isinstance(got, tuple):
        got = list(got)
    if not isinstance(got, list):
        kind = got.type_name if isinstance(got, RemoteRef) else type(got).__name__
        fail(f"{what}: expected a list of {len(ks)} floats, got a {kind}")
    check(len(got) == len(ks), f"{what}: expected {len(ks)} accuracies (one per k), got {len(got)}")
    return got


def random_problem(N, C, seed):
    g = gen(seed)
    return torch.randn(N, C, generator=g), torch.randint(0, C, (N,), generator=g)


@points(1, cell=TOPK)
def test_topk_values(student):
    """topk_accuracy on random logits (more images than classes) for ks=(1, 5) and for several k in any order"""
    for (N, C, seed), ks in [((40, 13, 1), (1, 5)), ((57, 20, 2), (3, 1, 10, 2)), ((25, 7, 3), (1, 2, 3))]:
        logits, targets = random_problem(N, C, seed)
        what = f"topk_accuracy on ({N}, {C}) logits with ks={ks}"
        got = call_topk(student, logits, targets, ks, what)
        assert_close(got, topk_reference(logits, targets, ks), what, rtol=0, atol=1e-6,
                     mistakes=topk_mistakes(logits, targets, ks))


@points(1, cell=TOPK)
def test_topk_square_and_every_k(student):
    """topk_accuracy on square logits (N = C, so the row/column direction matters) for every k from 1 to C"""
    for N, seed in [(12, 4), (9, 5)]:
        logits, targets = random_problem(N, N, seed)
        ks = tuple(range(1, N + 1))
        what = f"topk_accuracy on ({N}, {N}) logits with ks=(1, ..., {N})"
        got = call_topk(student, logits, targets, ks, what)
        assert_close(got, topk_reference(logits, targets, ks), what, rtol=0, atol=1e-6,
                     mistakes=topk_mistakes(logits, targets, ks))
        check(got[-1] == 1.0, f"{what}: top-{N} accuracy of {N} classes must be 1")


@points(1, cell=TOPK)
def test_topk_contract(student):
    """topk_accuracy returns Python floats, accepts float64 logits, and raises ValueError for k larger than C"""
    logits, targets = random_problem(30, 8, 6)
    got = call_topk(student, logits.double(), targets, (1, 8), "topk_accuracy on float64 logits")
    check(all(type(a) is float for a in got),
          f"topk_accuracy must return Python floats (use .item()), got {[type(a).__name__ for a in got]}")
    assert_close(got, topk_reference(logits, targets, (1, 8)), "topk_accuracy on float64 logits", rtol=0,
                 atol=1e-6, mistakes=topk_mistakes(logits, targets, (1, 8)))
    for ks in [(1, 9), (20,)]:
        try:
            student.function("topk_accuracy", timeout=30, **TOPK_CALLS)(logits, targets, ks=ks)
        except StudentError as e:
            check(e.type_name == "ValueError",
                  f"topk_accuracy with ks={ks} on 8 classes raised {e.type_name}; it must raise ValueError")
        else:
            fail(f"topk_accuracy with ks={ks} on 8 classes returned a result; it must raise ValueError "
                 f"(k cannot be larger than the number of classes)")


# ------------------------------------------------------------------------------------------
# max_pool2d (3 points)
# ------------------------------------------------------------------------------------------
def call_pool(student, x, K, S=None, P=0):
    return student.function("max_pool2d", forbid=POOL_RULES, timeout=60)(x, K, S, P)


def pool_mistakes(x, K, S, P):
    out = []
    if S is None or S != 1:
        out.append(Mistake(F.max_pool2d(x, K, 1, P),
                           "your result equals pooling with stride 1: without a stride, windows sit side by side "
                           "(the stride defaults to the window size, as in nn.MaxPool2d(2))"))
    if P > 0:
        zero_padded = F.pad(x, (P, P, P, P), value=0.0)
        out.append(Mistake(F.max_pool2d(zero_padded, K, S, 0),
                           "your result equals pooling of a ZERO-padded map: a padded position then wins every "
                           "window whose values are all negative. Pad with -inf, which never wins a max "
                           "(section 2)"))
    return out


def check_pool(student, x, K, S=None, P=0, check_dtype=False):
    what = f"max_pool2d(x, kernel_size={K}, stride={S}, padding={P}) on x of shape {tuple(x.shape)}"
    got = call_pool(student, x, K, S, P)
    assert_close(got, F.max_pool2d(x, K, S, P), what, rtol=0, atol=1e-6, check_dtype=check_dtype,
                 mistakes=pool_mistakes(x, K, S, P))


@points(1, cell=POOL)
def test_pool_default_stride(student):
    """max_pool2d with the default stride (windows side by side), odd sizes that round down, float32 and float64"""
    check_pool(student, torch.randn(2, 3, 8, 8, generator=gen(10)), 2, check_dtype=True)
    check_pool(student, torch.randn(1, 2, 9, 7, generator=gen(11)), 2, check_dtype=True)
    check_pool(student, torch.randn(2, 1, 10, 12, generator=gen(12), dtype=torch.float64), 3, check_dtype=True)


@points(1, cell=POOL)
def test_pool_overlapping_and_gaps(student):
    """max_pool2d with overlapping windows (AlexNet's 3x3 stride 2, 3x3 stride 1) and with gaps (2x2 stride 3)"""
    check_pool(student, torch.randn(2, 4, 13, 13, generator=gen(13)), 3, 2)
    check_pool(student, torch.randn(1, 2, 15, 10, generator=gen(14)), 3, 2)
    check_pool(student, torch.randn(1, 3, 6, 7, generator=gen(15)), 3, 1)
    check_pool(student, torch.randn(2, 2, 11, 9, generator=gen(16)), 2, 3)


@points(1, cell=POOL)
def test_pool_padding(student):
    """max_pool2d with padding on maps whose values are all negative (a padded position must never win)"""
    for shape, K, S, P, seed in [((1, 2, 5, 5), 2, 2, 1, 17), ((2, 1, 7, 6), 3, 2, 1, 18), ((1, 1, 4, 5), 3, 1, 1, 19),
                                 ((1, 2, 9, 9), 5, 2, 2, 20)]:
        x = -0.5 - torch.rand(*shape, generator=gen(seed))                 # every value in (-1.5, -0.5]
        check_pool(student, x, K, S, P)


# ------------------------------------------------------------------------------------------
# max_pool2d_backward (4 points)
# ------------------------------------------------------------------------------------------
def torch_grad(grad_out, x, K, S=None, P=0):
    """The oracle: PyTorch's autograd through F.max_pool2d (first maximum in row-major order)."""
    x = x.detach().clone().requires_grad_(True)
    F.max_pool2d(x, K, S, P).backward(grad_out)
    return x.grad.detach()


def route(grad_out, x, K, S=None, P=0, rule="first", pad_value=float("-inf"), add=True):
    """A slow, plain reference with a choice of (mistaken) rules, for naming mistakes.

    rule: "first" / "last" maximum of the window in row-major order gets the gradient; "all" every
    element equal to the maximum gets it; "split" they share it equally; "window" every element of
    the window gets it; "mean" every element gets grad / K^2 (average pooling's gradient).
    add=False overwrites instead of adding where windows overlap (the last window in order wins).
    """
    S = K if S is None else S
    N, C, H, W = x.shape
    H_out, W_out = grad_out.shape[2:]
    x_pad = F.pad(x, (P, P, P, P), value=pad_value).double()
    g = torch.zeros_like(x_pad)
    for i in range(H_out):
        for j in range(W_out):
            window = x_pad[:, :, i * S:i * S + K, j * S:j * S + K].reshape(N, C, K * K)        # (N, C, K*K)
            is_max = window == window.amax(dim=2, keepdim=True)
            position = torch.arange(K * K, dtype=torch.float64)
            if rule == "first":
                share = (position == torch.where(is_max, position, K * K).amin(dim=2, keepdim=True)).double()
            elif rule == "last":
                share = (position == torch.where(is_max, position, -1).amax(dim=2, keepdim=True)).double()
            elif rule == "all":
                share = is_max.double()
            elif rule == "split":
                share = is_max.double() / is_max.sum(dim=2, keepdim=True)
            elif rule == "window":
                share = torch.ones_like(window)
            elif rule == "mean":
                share = torch.ones_like(window) / (K * K)
            else:
                raise ValueError(rule)
            part = (share * grad_out[:, :, i, j, None].double()).reshape(N, C, K, K)
            target = g[:, :, i * S:i * S + K, j * S:j * S + K]
            if add:
                target += part
            else:
                target[share.reshape(N, C, K, K) > 0] = part[share.reshape(N, C, K, K) > 0]
    return g[:, :, P:P + H, P:P + W]


def backward_mistakes(grad_out, x, K, S=None, P=0):
    out = [
        Mistake(route(grad_out, x, K, S, P, "window"),
                "your gradient sends each window's grad_out to EVERY element of the window; only the window's "
                "maximum influenced the output, so only it receives the gradient (section 2)"),
        Mistake(route(grad_out, x, K, S, P, "mean"),
                "your gradient is average pooling's (grad_out / K^2 to every element of the window); max pooling "
                "sends it to the window's maximum only"),
        Mistake(route(grad_out, x, K, S, P, "all"),
                "your gradient sends grad_out to EVERY element that equals the window's maximum; with ties the "
                "course's rule (PyTorch's) gives it all to the FIRST maximum in row-major order (section 2)"),
        Mistake(route(grad_out, x, K, S, P, "split"),
                "your gradient splits grad_out evenly among the elements tied for the window's maximum; the "
                "course's rule (PyTorch's) gives it all to the FIRST maximum in row-major order (section 2)"),
        Mistake(route(grad_out, x, K, S, P, "last"),
                "your gradient goes to the LAST element tied for the window's maximum (`>=` in a scan?); the "
                "course's rule (PyTorch's) gives it to the FIRST in row-major order (section 2)"),
    ]
    if S is not None and S < K:
        out.append(Mistake(route(grad_out, x, K, S, P, "first", add=False),
                           "where windows overlap your gradient keeps only one window's contribution: an input "
                           "that is the maximum of several windows must receive the SUM of their gradients "
                           "(add, do not assign)"))
    if P > 0:
        out.append(Mistake(route(grad_out, x, K, S, P, "first", pad_value=0.0),
                           "your gradient treats padded positions as zeros: where a window's values are all "
                           "negative, a padded zero 'wins' and the gradient is lost. Pad with -inf (section 2)"))
    return out


def check_backward(student, x, K, S=None, P=0, seed=0, check_dtype=False):
    grad_out = torch.randn(F.max_pool2d(x, K, S, P).shape, generator=gen(seed), dtype=x.dtype)
    what = (f"max_pool2d_backward(grad_out, x, kernel_size={K}, stride={S}, padding={P}) on x of shape "
            f"{tuple(x.shape)}")
    got = student.function("max_pool2d_backward", forbid=BACKWARD_RULES, timeout=60)(grad_out, x, K, S, P)
    assert_close(got, torch_grad(grad_out, x, K, S, P), what, rtol=1e-5, atol=1e-6, check_dtype=check_dtype,
                 mistakes=backward_mistakes(grad_out, x, K, S, P))


@points(1, cell=BACKWARD)
def test_backward_side_by_side(student):
    """max_pool2d_backward with windows side by side (2x2 and 3x3, default stride), odd sizes, float64"""
    check_backward(student, torch.randn(2, 3, 8, 8, generator=gen(30)), 2, seed=31)
    check_backward(student, torch.randn(1, 2, 7, 9, generator=gen(32), dtype=torch.float64), 2, seed=33,
                   check_dtype=True)
    check_backward(student, torch.randn(2, 2, 9, 10, generator=gen(34)), 3, seed=35)


@points(1, cell=BACKWARD)
def test_backward_overlapping(student):
    """max_pool2d_backward with overlapping windows (AlexNet's 3x3 stride 2): gradients of several windows add up"""
    check_backward(student, torch.randn(2, 3, 9, 9, generator=gen(40)), 3, 2, seed=41)
    check_backward(student, torch.randn(1, 2, 13, 11, generator=gen(42)), 3, 2, seed=43)
    check_backward(student, torch.randn(1, 1, 6, 6, generator=gen(44)), 3, 1, seed=45)


@points(1, cell=BACKWARD)
def test_backward_padding(student):
    """max_pool2d_backward with padding, also where every value of a window is negative"""
    check_backward(student, torch.randn(2, 2, 7, 7, generator=gen(50)), 3, 2, 1, seed=51)
    check_backward(student, -0.5 - torch.rand(1, 2, 5, 6, generator=gen(52)), 2, 2, 1, seed=53)
    check_backward(student, -0.5 - torch.rand(1, 1, 6, 5, generator=gen(54)), 3, 1, 1, seed=55)


@points(1, cell=BACKWARD)
def test_backward_ties(student):
    """max_pool2d_backward where windows share their maximum: the first maximum in row-major order gets it all"""
    check_backward(student, torch.randint(0, 3, (2, 2, 8, 8), generator=gen(60)).float(), 2, seed=61)
    check_backward(student, torch.randint(0, 2, (1, 3, 9, 9), generator=gen(62)).float(), 3, 2, seed=63)
    check_backward(student, torch.zeros(1, 1, 6, 6), 3, 1, seed=64)           # all ties: as after a ReLU
