"""Hidden tests of 01_convolution: conv2d_backward, the backward pass of a convolution layer.

Oracle: autograd through F.conv2d, in the grader. The student's function runs with autograd, torch's
convolution (conv_transpose2d and convolution_backward included) and unfold forbidden. Inputs are
non-square with several channels and batch items, so that a gradient summed over the wrong axis, a
kernel used unflipped, a stride or padding forgotten in the backward pass all give wrong values.
The known wrong answers are computed here too (Mistake), each from the same inputs.
"""
import torch
import torch.nn.functional as F

from autograder.testing import Mistake, assert_close, check, points

FORBID = ("convolution", "unfold", "autograd")
SECTION = "(section 9)"


def randn(*shape, seed, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def autograd_backward(grad_out, x, weight, stride, padding):
    """(grad_x, grad_weight, grad_bias) of F.conv2d by autograd."""
    x = x.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_()
    bias = torch.zeros(weight.shape[0], dtype=x.dtype, requires_grad=True)
    F.conv2d(x, weight, bias, stride=stride, padding=padding).backward(grad_out)
    return x.grad, weight.grad, bias.grad


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def stride_forgotten(grad_out, x, weight, stride, padding):
    """The backward pass of a stride-1 convolution, cropped to the strided output's size: what a backward pass
    gives that places window (i, j) at input (i, j) instead of (i * sH, j * sW)."""
    H_out, W_out = grad_out.shape[2:]
    full = F.conv2d(x, weight, stride=1, padding=padding)
    g = torch.zeros_like(full)
    g[:, :, :H_out, :W_out] = grad_out
    return autograd_backward(g, x, weight, 1, padding)


def padded_grad_x(grad_out, x, weight, stride, padding):
    """dL/d(padded input): the right values, with the padding's rows and columns not removed."""
    pH, pW = pair(padding)
    x_pad = F.pad(x, (pW, pW, pH, pH))
    return autograd_backward(grad_out, x_pad, weight, stride, 0)[0]


def call(student, grad_out, x, weight, stride=1, padding=0):
    """The student's (grad_x, grad_weight, grad_bias), checked to be three results."""
    backward = student.function("conv2d_backward", forbid=FORBID, timeout=60)
    result = backward(grad_out, x, weight, stride=stride, padding=padding)
    check(isinstance(result, (tuple, list)) and len(result) == 3,
          "conv2d_backward must return a tuple (grad_x, grad_weight, grad_bias)")
    return result


def case(seed, N, C_in, H, W, C_out, kH, kW, stride, padding, dtype=torch.float32):
    x = randn(N, C_in, H, W, seed=seed, dtype=dtype)
    weight = randn(C_out, C_in, kH, kW, seed=seed + 1, dtype=dtype)
    out_shape = F.conv2d(x, weight, stride=stride, padding=padding).shape
    grad_out = randn(*out_shape, seed=seed + 2, dtype=dtype)
    return grad_out, x, weight


FLIPPED = ("grad_x equals the gradient for the kernel rotated by 180 degrees: an input value's gradient is grad_out "
           "times the weight that value was multiplied by in the forward pass; check which kernel entry meets which "
           f"input pixel in each window {SECTION}")
BATCH_MEAN = ("grad_weight is the right gradient divided by the batch size: every example's windows used the same "
              f"weights, so their contributions add up (a sum, not a mean) {SECTION}")
BIAS_MEAN = ("grad_bias is the mean of grad_out instead of its sum: the bias was added to every output value of its "
             f"channel, in every example, and each of them sends its gradient back {SECTION}")
UNCROPPED = ("grad_x has the padded input's shape and is right there: the zeros added by padding are not inputs, so "
             f"drop their rows and columns at the end {SECTION}")
NO_STRIDE = ("your backward pass places window (i, j) at input position (i, j): with a stride, window (i, j) starts "
             f"at (i * stride, j * stride), as in the forward pass {SECTION}")


# ------------------------------------------------------------------ conv2d_backward (5 points)
@points(1, cell="test_conv2d_backward")
def test_backward_grad_x(student):
    """conv2d_backward: grad_x for one channel, a non-square input and an asymmetric 2x3 kernel"""
    grad_out, x, weight = case(0, 1, 1, 5, 6, 1, 2, 3, 1, 0)
    grad_x = call(student, grad_out, x, weight)[0]
    expected = autograd_backward(grad_out, x, weight, 1, 0)[0]
    flipped = autograd_backward(grad_out, x, weight.flip(2, 3), 1, 0)[0]
    assert_close(grad_x, expected, "conv2d_backward's grad_x for a (1, 1, 5, 6) input and a (1, 1, 2, 3) kernel",
                 mistakes=[Mistake(flipped, FLIPPED)])


@points(1, cell="test_conv2d_backward")
def test_backward_grad_weight(student):
    """conv2d_backward: grad_weight with several batch items and channels"""
    grad_out, x, weight = case(10, 3, 2, 6, 5, 4, 3, 2, 1, 0)
    grad_weight = call(student, grad_out, x, weight)[1]
    expected = autograd_backward(grad_out, x, weight, 1, 0)[1]
    assert_close(grad_weight, expected, "conv2d_backward's grad_weight for a (3, 2, 6, 5) input and (4, 2, 3, 2) kernels",
                 mistakes=[Mistake(expected / 3, BATCH_MEAN)])


@points(1, cell="test_conv2d_backward")
def test_backward_grad_bias(student):
    """conv2d_backward: grad_bias with several batch items and output channels"""
    grad_out, x, weight = case(20, 3, 2, 5, 6, 4, 2, 2, 1, 1)
    grad_bias = call(student, grad_out, x, weight, padding=1)[2]
    expected = autograd_backward(grad_out, x, weight, 1, 1)[2]
    check(isinstance(grad_bias, torch.Tensor) and tuple(grad_bias.shape) == (4,),
          "conv2d_backward's grad_bias must have shape (C_out,) = (4,)"
          + (f", got {tuple(grad_bias.shape)}" if isinstance(grad_bias, torch.Tensor) else ""))
    assert_close(grad_bias, expected, "conv2d_backward's grad_bias for a (3, 4, 6, 7) grad_out",
                 mistakes=[Mistake(grad_out.mean(dim=(0, 2, 3)), BIAS_MEAN)])


def known_mistakes(grad_out, x, weight, stride, padding):
    """Mistake lists for (grad_x, grad_weight, grad_bias) on these inputs."""
    N = x.shape[0]
    right = autograd_backward(grad_out, x, weight, stride, padding)
    flipped = autograd_backward(grad_out, x, weight.flip(2, 3), stride, padding)[0]
    no_stride = stride_forgotten(grad_out, x, weight, stride, padding) if pair(stride) != (1, 1) else None
    mx = [Mistake(flipped, FLIPPED)]
    mw = [Mistake(right[1] / N, BATCH_MEAN)]
    if pair(padding) != (0, 0):
        mx.append(Mistake(padded_grad_x(grad_out, x, weight, stride, padding), UNCROPPED))
    if no_stride is not None:
        mx.append(Mistake(no_stride[0], NO_STRIDE))
        mw.append(Mistake(no_stride[1], NO_STRIDE))
    mb = [Mistake(grad_out.mean(dim=(0, 2, 3)), BIAS_MEAN)]
    return mx, mw, mb


@points(1, cell="test_conv2d_backward")
def test_backward_stride_and_padding(student):
    """conv2d_backward: all three gradients with strides and paddings that do not divide the input evenly"""
    for seed, stride, padding in [(30, 2, 1), (40, 3, 2)]:
        grad_out, x, weight = case(seed, 2, 3, 7, 8, 2, 3, 2, stride, padding)
        got = call(student, grad_out, x, weight, stride=stride, padding=padding)
        expected = autograd_backward(grad_out, x, weight, stride, padding)
        mistakes = known_mistakes(grad_out, x, weight, stride, padding)
        what = f"conv2d_backward for a (2, 3, 7, 8) input, stride={stride}, padding={padding}"
        for name, g, e, m in zip(("grad_x", "grad_weight", "grad_bias"), got, expected, mistakes):
            assert_close(g, e, f"{what}: {name}", mistakes=m)


@points(1, cell="test_conv2d_backward")
def test_backward_pairs_float64(student):
    """conv2d_backward: stride and padding as (height, width) pairs, in float64 (results keep the dtype)"""
    stride, padding = (2, 3), (1, 2)
    grad_out, x, weight = case(50, 2, 2, 8, 9, 3, 2, 3, stride, padding, dtype=torch.float64)
    got = call(student, grad_out, x, weight, stride=stride, padding=padding)
    expected = autograd_backward(grad_out, x, weight, stride, padding)
    mistakes = known_mistakes(grad_out, x, weight, stride, padding)
    what = f"conv2d_backward in float64 for a (2, 2, 8, 9) input, stride={stride}, padding={padding}"
    for name, g, e, m in zip(("grad_x", "grad_weight", "grad_bias"), got, expected, mistakes):
        assert_close(g, e, f"{what}: {name}", rtol=1e-9, atol=1e-10, check_dtype=True, mistakes=m)
