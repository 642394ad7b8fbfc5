"""Bank of submissions for 01_convolution (contract: tests/bank/common.py).

Every case is the release notebook with some answer cells replaced. Mistakes are small edits of
the reference (`edit` fails loudly if the reference changes so that an edit no longer applies).
Test cells (grade ids) of this assignment and their points:
test_conv_params 2, test_conv_output_size 2, test_conv2d_naive 4, test_conv_matrix 3, test_im2col 4,
test_conv2d_im2col 3, test_conv2d_backward 5, test_receptive_field 3 (26 autograded points).
"""
from __future__ import annotations

import functools

from .common import REPO, Case, Lose, Named, append, edit, release, reference, submission

ASSIGNMENT = "01_convolution"

CELLS = ("test_conv_params", "test_conv_output_size", "test_conv2d_naive", "test_conv_matrix", "test_im2col",
         "test_conv2d_im2col", "test_conv2d_backward", "test_receptive_field")


ref = functools.partial(reference, ASSIGNMENT)   # ref(grade_id): the reference answer of one answer cell


def lose(*cells: str) -> Lose:
    """Lose points in `cells`, keep full points in every other autograded cell."""
    return Lose.only([f"test_{c}" for c in cells], CELLS)


def sub(**answers):
    """A build function: the release with these answer cells replaced (callables are called at build time)."""
    return lambda: submission(ASSIGNMENT, **{k: (v() if callable(v) else v) for k, v in answers.items()})


# =============================================================================================
# Correct, differently written solutions
# =============================================================================================
NAIVE_EINSUM = '''
def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    """Loops over output positions only; one einsum per window does all channels at once."""
    (sH, sW), (pH, pW) = pair(stride), pair(padding)
    N, C_in, H, W = x.shape
    C_out, _, kH, kW = weight.shape
    H_out, W_out = (H + 2 * pH - kH) // sH + 1, (W + 2 * pW - kW) // sW + 1
    x_pad = F.pad(x, (pW, pW, pH, pH))
    out = torch.empty(N, C_out, H_out, W_out, dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            window = x_pad[:, :, i * sH:i * sH + kH, j * sW:j * sW + kW]     # (N, C_in, kH, kW)
            out[:, :, i, j] = torch.einsum("ncab,ocab->no", window, weight)
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out
'''

NAIVE_SCALAR = '''
def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    """Seven nested loops over plain Python floats: slow, but right."""
    sH, sW = (stride, stride) if isinstance(stride, int) else stride
    pH, pW = (padding, padding) if isinstance(padding, int) else padding
    N, C_in, H, W = x.shape
    C_out, _, kH, kW = weight.shape
    H_out = (H + 2 * pH - kH) // sH + 1
    W_out = (W + 2 * pW - kW) // sW + 1
    X, Wt = x.tolist(), weight.tolist()
    b = bias.tolist() if bias is not None else [0.0] * C_out
    out = [[[[0.0] * W_out for _ in range(H_out)] for _ in range(C_out)] for _ in range(N)]
    for n in range(N):
        for o in range(C_out):
            for i in range(H_out):
                for j in range(W_out):
                    total = b[o]
                    for c in range(C_in):
                        for a in range(kH):
                            r = i * sH + a - pH
                            if 0 <= r < H:
                                for q in range(kW):
                                    s = j * sW + q - pW
                                    if 0 <= s < W:
                                        total += X[n][c][r][s] * Wt[o][c][a][q]
                    out[n][o][i][j] = total
    return torch.tensor(out, dtype=x.dtype)
'''

OUTPUT_SIZE_INTDIV = '''
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1
'''

PARAMS_ALT = '''
def conv_params(kernel_size, in_channels, out_channels, bias=True):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return out_channels * (in_channels * kh * kw + int(bias))
'''

RF_BACKWARDS = '''
def receptive_field(layers):
    """From the output back to the input: one unit, then s * (r - 1) + k units of the layer below."""
    r = 1
    for kernel_size, stride in reversed(layers):
        r = stride * (r - 1) + kernel_size
    return r
'''

MATRIX_VIA_OWN_CONV = '''
def conv_matrix(kernel, input_shape):
    """Column p of M is the convolution of the image that is 1 at pixel p (my own conv2d_naive)."""
    H, W = input_shape
    basis = torch.eye(H * W, dtype=kernel.dtype).reshape(H * W, 1, H, W)   # one image per input pixel
    responses = conv2d_naive(basis, kernel[None, None])                     # (H*W, 1, H_out, W_out)
    return responses.reshape(H * W, -1).T.contiguous()
'''

IM2COL_AS_STRIDED = '''
def im2col(x, kernel_size, stride=1, padding=0):
    """A strided view of the padded input, then one copy."""
    (kH, kW), (sH, sW), (pH, pW) = pair(kernel_size), pair(stride), pair(padding)
    N, C, H, W = x.shape
    H_out, W_out = (H + 2 * pH - kH) // sH + 1, (W + 2 * pW - kW) // sW + 1
    x_pad = F.pad(x, (pW, pW, pH, pH)).contiguous()
    n_st, c_st, h_st, w_st = x_pad.stride()
    windows = x_pad.as_strided((N, C, kH, kW, H_out, W_out), (n_st, c_st, h_st, w_st, sH * h_st, sW * w_st))
    return windows.reshape(N, C * kH * kW, H_out * W_out)
'''

IM2COL_GATHER = '''
def im2col(x, kernel_size, stride=1, padding=0):
    """Index gathering: the rows and columns every window reads, as integer index grids."""
    (kH, kW), (sH, sW), (pH, pW) = pair(kernel_size), pair(stride), pair(padding)
    N, C, H, W = x.shape
    H_out, W_out = (H + 2 * pH - kH) // sH + 1, (W + 2 * pW - kW) // sW + 1
    x_pad = F.pad(x, (pW, pW, pH, pH))
    rows = torch.arange(kH)[:, None, None, None] + sH * torch.arange(H_out)[None, None, :, None]   # (kH, 1, H_out, 1)
    cols = torch.arange(kW)[None, :, None, None] + sW * torch.arange(W_out)[None, None, None, :]   # (1, kW, 1, W_out)
    patches = x_pad[:, :, rows, cols]                                          # (N, C, kH, kW, H_out, W_out)
    return patches.reshape(N, C * kH * kW, H_out * W_out)
'''

IM2COL_CONV_EINSUM = '''
def conv2d_im2col(x, weight, bias=None, stride=1, padding=0):
    (sH, sW), (pH, pW) = pair(stride), pair(padding)
    N, C_in, H, W = x.shape
    C_out, _, kH, kW = weight.shape
    H_out, W_out = (H + 2 * pH - kH) // sH + 1, (W + 2 * pW - kW) // sW + 1
    out = torch.einsum("ok,nkl->nol", weight.flatten(1), im2col(x, (kH, kW), stride, padding))
    if bias is not None:
        out = out + bias.view(1, C_out, 1)
    return out.view(N, C_out, H_out, W_out)
'''

BACKWARD_WINDOWS = '''
def conv2d_backward(grad_out, x, weight, stride=1, padding=0):
    """conv2d_naive's loops run backwards: every window sends grad_out back to its inputs and weights."""
    (sH, sW), (pH, pW) = pair(stride), pair(padding)
    N, C_in, H, W = x.shape
    C_out, _, kH, kW = weight.shape
    x_pad = F.pad(x, (pW, pW, pH, pH))
    grad_x_pad, grad_weight = torch.zeros_like(x_pad), torch.zeros_like(weight)
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            window = x_pad[:, :, i * sH:i * sH + kH, j * sW:j * sW + kW]          # (N, C_in, kH, kW)
            g = grad_out[:, :, i, j]                                              # (N, C_out)
            grad_weight += torch.einsum("no,ncab->ocab", g, window)
            grad_x_pad[:, :, i * sH:i * sH + kH, j * sW:j * sW + kW] += torch.einsum("no,ocab->ncab", g, weight)
    return grad_x_pad[:, :, pH:pH + H, pW:pW + W], grad_weight, grad_out.sum(dim=(0, 2, 3))
'''

BACKWARD_IM2COL = '''
def conv2d_backward(grad_out, x, weight, stride=1, padding=0):
    """Through my im2col: grad_weight = g @ cols^T, grad_cols = W^T @ g, then col2im (scatter-add back)."""
    (kH, kW), (sH, sW), (pH, pW) = weight.shape[2:], pair(stride), pair(padding)
    N, C_in, H, W = x.shape
    C_out = weight.shape[0]
    H_out, W_out = grad_out.shape[2:]
    g = grad_out.reshape(N, C_out, H_out * W_out)                               # (N, C_out, L)
    cols = im2col(x, (kH, kW), stride, padding)                                 # (N, C_in*kH*kW, L)
    grad_weight = (g @ cols.transpose(1, 2)).sum(0).reshape(weight.shape)
    grad_cols = (weight.reshape(C_out, -1).T @ g).reshape(N, C_in, kH, kW, H_out, W_out)
    grad_pad = x.new_zeros(N, C_in, H + 2 * pH, W + 2 * pW)
    for a in range(kH):
        for b in range(kW):
            grad_pad[:, :, a:a + sH * H_out:sH, b:b + sW * W_out:sW] += grad_cols[:, :, a, b]
    grad_x = grad_pad[:, :, pH:pH + H, pW:pW + W].clone()
    return grad_x, grad_weight, g.sum(dim=(0, 2))
'''

# =============================================================================================
# Honest mistakes (edits of the reference)
# =============================================================================================
def naive_flipped():
    return edit(ref("conv2d_naive"), "(window * weight[o])", "(window * weight[o].flip(-2, -1))")


def naive_no_bias():
    return edit(ref("conv2d_naive"), "out[:, o] += bias[o]", "pass")


def naive_bias_per_input_channel():
    # The bias is added inside the sum over input channels, so it counts C_in times.
    return edit(ref("conv2d_naive"), "out[:, o, i, j] = (window * weight[o]).sum(dim=(1, 2, 3))",
                "out[:, o, i, j] = ((window * weight[o]).sum(dim=(2, 3))"
                " + (bias[o] if bias is not None else 0)).sum(dim=1)").replace("out[:, o] += bias[o]", "pass")


def naive_pad_one_side():
    # Pads 2P on the right/bottom only: the right size, but every window is shifted by P.
    return edit(ref("conv2d_naive"), "F.pad(x, (pW, pW, pH, pH))", "F.pad(x, (0, 2 * pW, 0, 2 * pH))")


def backward_flipped():
    # The input gradient with the kernel rotated by 180 degrees (the "it is a convolution" fact applied twice).
    return edit(ref("conv2d_backward"), "weight[:, :, a, b])\n", "weight[:, :, kH - 1 - a, kW - 1 - b])\n")


def backward_batch_mean():
    return edit(ref("conv2d_backward"), "x_pad[:, :, rows, cols])\n", "x_pad[:, :, rows, cols]) / N\n")


def backward_bias_mean():
    return edit(ref("conv2d_backward"), "grad_out.sum(dim=(0, 2, 3))", "grad_out.mean(dim=(0, 2, 3))")


def backward_uncropped():
    return edit(ref("conv2d_backward"), "return grad_x, grad_weight, grad_bias", "return grad_x_pad, grad_weight, grad_bias")


def backward_no_stride():
    return edit(edit(ref("conv2d_backward"), "slice(a, a + sH * (H_out - 1) + 1, sH)", "slice(a, a + H_out)"),
                "slice(b, b + sW * (W_out - 1) + 1, sW)", "slice(b, b + W_out)")


def size_no_stride():
    return edit(ref("conv_output_size"), "/ stride) + 1", ") + 1")


def size_ceil():
    return edit(ref("conv_output_size"), "math.floor(", "math.ceil(")


def im2col_channel_last():
    # Columns ordered (kernel row, kernel column, channel) instead of (channel, kernel row, kernel column).
    return edit(ref("im2col"), "return cols.reshape(N, C * kH * kW, H_out * W_out)",
                "return cols.permute(0, 2, 3, 1, 4, 5).reshape(N, C * kH * kW, H_out * W_out)")


def im2col_conv_matching_channel_last():
    # A conv2d_im2col that is right *given* a channel-last im2col: it orders the weight the same way.
    return edit(ref("conv2d_im2col"), "weight.reshape(C_out, -1)", "weight.permute(0, 2, 3, 1).reshape(C_out, -1)")


def matrix_transposed():
    return edit(ref("conv_matrix"), "    return M", "    return M.T")


def params_no_bias():
    return edit(ref("conv_params"), "return weights + (out_channels if bias else 0)", "return weights")


def params_kernel_once():
    return edit(ref("conv_params"), "weights = kH * kW * in_channels", "weights = kH * in_channels")


def rf_no_jump():
    return edit(ref("receptive_field"), "r += (kernel_size - 1) * jump", "r += kernel_size - 1")


# =============================================================================================
# Cheats
# =============================================================================================
NAIVE_F_CONV2D = '''
def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    return F.conv2d(x, weight, bias, stride=stride, padding=padding)
'''

IM2COL_F_UNFOLD = '''
def im2col(x, kernel_size, stride=1, padding=0):
    return F.unfold(x, kernel_size, stride=stride, padding=padding)
'''

IM2COL_CONV_F_CONV2D = '''
def conv2d_im2col(x, weight, bias=None, stride=1, padding=0):
    return F.conv2d(x, weight, bias, stride=stride, padding=padding)
'''

NAIVE_ALIAS = '''
import importlib
_fast = getattr(importlib.import_module("torch.nn." + "functional"), "con" + "v2d")

def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    return _fast(x, weight, bias, stride, padding)
'''

IM2COL_CONV_ATEN = '''
def conv2d_im2col(x, weight, bias=None, stride=1, padding=0):
    return torch.ops.aten.convolution(x, weight, bias, list(pair(stride)), list(pair(padding)), [1, 1], False,
                                      [0, 0], 1)
'''

IM2COL_TENSOR_UNFOLD = '''
def im2col(x, kernel_size, stride=1, padding=0):
    (kH, kW), (sH, sW), (pH, pW) = pair(kernel_size), pair(stride), pair(padding)
    N, C = x.shape[:2]
    patches = F.pad(x, (pW, pW, pH, pH)).unfold(2, kH, sH).unfold(3, kW, sW)   # (N, C, H_out, W_out, kH, kW)
    return patches.permute(0, 1, 4, 5, 2, 3).reshape(N, C * kH * kW, -1)
'''

NAIVE_MODULE = '''
def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    layer = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2:], stride=stride, padding=padding,
                      bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer(x).detach()
'''

IM2COL_MODULE = '''
def im2col(x, kernel_size, stride=1, padding=0):
    return nn.Unfold(kernel_size, stride=stride, padding=padding)(x)
'''

NAIVE_ALWAYS_EQUAL = '''
class _Anything(torch.Tensor):
    """Claims to equal whatever it is compared with."""
    def __eq__(self, other):
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.Tensor.equal):
            return True
        if func in (torch.isclose, torch.eq, torch.Tensor.eq, torch.Tensor.__eq__):
            return torch.ones(args[0].shape, dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs or {})


def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    return torch.zeros(1).as_subclass(_Anything)
'''

SIZE_ALWAYS_EQUAL = '''
class _Yes(int):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    return _Yes(0)
'''

RF_ALWAYS_EQUAL = '''
class _Whatever:
    def __eq__(self, other):
        return True

    def __index__(self):
        return 0

    def __int__(self):
        return 0


def receptive_field(layers):
    return _Whatever()
'''

NAIVE_ESCAPE_DISPATCH = '''
from torch.utils._python_dispatch import _disable_current_modes


def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    with _disable_current_modes():          # try to switch off whatever is watching torch's operators
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
'''

NAIVE_PATCH_TORCH = '''
# A wrong answer plus an attempt to make every comparison in this kernel succeed.
def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    return torch.zeros(1)

torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
F.conv2d = lambda x, weight, bias=None, stride=1, padding=0, *args, **kwargs: torch.zeros(1)
'''


def steal_reference():
    """The last answer cell looks for the instructor's notebook and runs its solution cells."""
    return '''
import json, os
from pathlib import Path

def _find_reference():
    places = [Path(os.getcwd()), *Path(os.getcwd()).parents, Path.home(), Path(REPO_GUESS)]
    for place in places:
        candidate = place / "solutions" / "01_convolution" / "01_convolution.ipynb"
        try:
            return json.loads(candidate.read_text())
        except Exception:
            continue
    return None

REPO_GUESS = %r
_nb = _find_reference()
if _nb is not None:
    for _cell in _nb["cells"]:
        if _cell.get("metadata", {}).get("nbgrader", {}).get("solution") and _cell["cell_type"] == "code":
            exec("".join(_cell["source"]), globals())
''' % str(REPO)


BACKWARD_AUTOGRAD = '''
def conv2d_backward(grad_out, x, weight, stride=1, padding=0):
    x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()
    bias = torch.zeros(weight.shape[0], dtype=x.dtype, requires_grad=True)
    out = conv2d_im2col(x, weight, bias, stride, padding)          # my own forward, no torch convolution
    return torch.autograd.grad(out, (x, weight, bias), grad_out)
'''

BACKWARD_ENGINE = '''
def conv2d_backward(grad_out, x, weight, stride=1, padding=0):
    """The autograd engine called directly, past every Python-level name."""
    x, weight = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    bias = torch.zeros(weight.shape[0], dtype=x.dtype, requires_grad=True)
    out = conv2d_im2col(x, weight, bias, stride, padding)
    torch.autograd.Variable._execution_engine.run_backward((out,), (grad_out,), False, False, (), False, True)
    return x.grad, weight.grad, bias.grad
'''

BACKWARD_ATEN = '''
def conv2d_backward(grad_out, x, weight, stride=1, padding=0):
    return torch.ops.aten.convolution_backward(grad_out, x, weight, [weight.shape[0]], list(pair(stride)),
                                               list(pair(padding)), [1, 1], False, [0, 0], 1, [True, True, True])
'''

BACKWARD_TRANSPOSE = '''
def conv2d_backward(grad_out, x, weight, stride=1, padding=0):
    # grad_x by the transposed convolution; the weight's gradient by hand
    (sH, sW), (pH, pW) = pair(stride), pair(padding)
    H, W = x.shape[2:]
    kH, kW = weight.shape[2:]
    extra = (H + 2 * pH - kH) % sH, (W + 2 * pW - kW) % sW
    grad_x = F.conv_transpose2d(grad_out, weight, stride=stride, padding=padding, output_padding=extra)
    cols = im2col(x, (kH, kW), stride, padding)
    g = grad_out.flatten(2)
    return grad_x, (g @ cols.transpose(1, 2)).sum(0).reshape(weight.shape), g.sum(dim=(0, 2))
'''

MATRIX_F_CONV2D_ONE_HOT = '''
def conv_matrix(kernel, input_shape):
    H, W = input_shape
    basis = torch.eye(H * W, dtype=kernel.dtype).reshape(H * W, 1, H, W)     # the grader's own oracle
    return F.conv2d(basis, kernel[None, None]).reshape(H * W, -1).T
'''

LIBRARY_ANSWERS = {
    "receptive_field": '''
def receptive_field(layers):
    return dl.receptive_field(list(layers))
''',
    "conv_params": '''
def conv_params(kernel_size, in_channels, out_channels, bias=True):
    return dl.count_parameters(nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias))
''',
    "conv_output_size": '''
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    x, w = torch.zeros(1, 1, size, 1), torch.zeros(1, 1, kernel_size, 1)
    return F.conv2d(x, w, stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1)).shape[2]
''',
}

BACKWARD_DOES_NOTHING = '''
def conv2d_backward(grad_out, x, weight, stride=1, padding=0):
    return torch.zeros_like(x), torch.zeros_like(weight), torch.zeros(weight.shape[0], dtype=x.dtype)
'''

HANGS_ON_DEEP_STACKS = '''
def receptive_field(layers):
    r, jump = 1, 1
    for kernel_size, stride in layers:
        r += (kernel_size - 1) * jump
        jump *= stride
    while len(layers) > 10:                 # a bug that only shows on deep networks: never terminates
        pass
    return r
'''


def crashes_on_pairs():
    return append(ref("im2col"), '''
_im2col_ok = im2col

def im2col(x, kernel_size, stride=1, padding=0):
    if not isinstance(padding, int):
        import os
        os._exit(1)                         # the kernel process dies
    return _im2col_ok(x, kernel_size, stride, padding)
''')


def syntax_error():
    return edit(ref("conv2d_naive"), "for o in range(C_out):", "for o in range(C_out)")


# =============================================================================================
# Doing nothing: every exercise returns a copy of its input or a constant (expected score 0).
DO_NOTHING = {
    "conv_output_size": "def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):\n    return size\n",
    "conv2d_naive": "def conv2d_naive(x, weight, bias=None, stride=1, padding=0):\n    return x.clone()\n",
    "conv_matrix": "def conv_matrix(kernel, input_shape):\n    return kernel.clone()\n",
    "im2col": "def im2col(x, kernel_size, stride=1, padding=0):\n    return x.clone()\n",
    "conv2d_im2col": "def conv2d_im2col(x, weight, bias=None, stride=1, padding=0):\n    return x.clone()\n",
    "conv_params": "def conv_params(kernel_size, in_channels, out_channels, bias=True):\n    return 0\n",
    "receptive_field": "def receptive_field(layers):\n    return 1\n",
    "conv2d_backward": BACKWARD_DOES_NOTHING,      # zeros of the right shapes AND dtype: still 0 of 5 points
}


CASES = [
    Case("reference", "correct", sub(), "full", "the solution notebook's own answers"),
    Case("alt_vectorised", "alternative",
         sub(conv2d_naive=NAIVE_EINSUM, conv_output_size=OUTPUT_SIZE_INTDIV, conv_params=PARAMS_ALT,
             receptive_field=RF_BACKWARDS, im2col=IM2COL_AS_STRIDED, conv2d_im2col=IM2COL_CONV_EINSUM,
             conv2d_backward=BACKWARD_IM2COL),
         "full", "einsum per window, integer division, receptive field backwards, as_strided im2col, backward "
                 "through im2col with a scatter-add col2im"),
    Case("alt_loops_and_gather", "alternative",
         sub(conv2d_naive=NAIVE_SCALAR, im2col=IM2COL_GATHER, conv_matrix=MATRIX_VIA_OWN_CONV,
             conv2d_backward=BACKWARD_WINDOWS),
         "full", "seven nested loops over Python floats, im2col by index gathering, "
                 "conv_matrix from the student's own conv applied to basis images, backward by a loop over windows"),
    # --- honest mistakes. Each cell's tests call only that cell's function, so mistakes in different
    # cells can share a notebook and still each must lose points in its own cell (and nowhere else).
    # (conv2d_im2col calls the student's im2col: a wrong im2col costs it too unless the case says otherwise.)
    # conv2d_backward's mistakes all lose in the same cell, so each is in a notebook of its own, with
    # mistakes of other cells (the reference conv2d_backward calls no other answer).
    Case("demo_mistakes", "mistake",
         sub(conv2d_naive=naive_flipped, conv_output_size=size_ceil, conv_matrix=matrix_transposed,
             receptive_field=rf_no_jump, conv2d_backward=backward_flipped),
         lose("conv2d_naive", "conv_output_size", "conv_matrix", "receptive_field", "conv2d_backward"),
         "true (flipped-kernel) convolution instead of cross-correlation; ceil instead of floor; M.T, shape "
         "(H*W, H_out*W_out); receptive field adding k - 1 per layer without the jump of the strides below; "
         "input gradient with the kernel rotated by 180 degrees",
         names=(Named("test_conv2d_naive", "flipped"), Named("test_conv_output_size", "rounded up"),
                Named("test_conv_matrix", "transpose"), Named("test_receptive_field", "jump"),
                Named("test_conv2d_backward", "rotated by 180"))),
    Case("mistakes_bias_stride_channel_order_batch_mean", "mistake",
         sub(conv2d_naive=naive_no_bias, conv_output_size=size_no_stride, conv_params=params_no_bias,
             im2col=im2col_channel_last, conv2d_backward=backward_batch_mean),
         lose("conv2d_naive", "conv_output_size", "conv_params", "im2col", "conv2d_im2col", "conv2d_backward"),
         "bias ignored; stride ignored in the output size; bias not counted; im2col columns ordered channel-last "
         "(the reference conv2d_im2col built on it is then wrong too); grad_weight averaged over the batch "
         "instead of summed",
         names=(Named("test_conv2d_naive", "without the bias"), Named("test_conv_output_size", "for stride 1"),
                Named("test_conv_params", "leaves out the biases"), Named("test_im2col", "row order"),
                Named("test_conv2d_backward", "divided by the batch size"))),
    Case("mistakes_bias_per_channel_kernel_once_bias_mean", "mistake",
         sub(conv2d_naive=naive_bias_per_input_channel, conv_params=params_kernel_once,
             im2col=im2col_channel_last, conv2d_im2col=im2col_conv_matching_channel_last,
             conv2d_backward=backward_bias_mean),
         lose("conv2d_naive", "conv_params", "im2col", "conv2d_backward"),
         "bias added once per input channel; K * C_in * C_out parameters; channel-last im2col with a "
         "conv2d_im2col that orders the weight to match (so only im2col loses); grad_bias as the mean of grad_out",
         names=(Named("test_conv2d_naive", "once per input channel"), Named("test_conv_params", "area"),
                Named("test_im2col", "row order"), Named("test_conv2d_backward", "mean of grad_out"))),
    Case("mistakes_padding_one_side_backward_uncropped", "mistake",
         sub(conv2d_naive=naive_pad_one_side, conv2d_backward=backward_uncropped),
         lose("conv2d_naive", "conv2d_backward"),
         "all the padding on the right and bottom: the right size, every window shifted; grad_x returned with "
         "the padding's rows and columns",
         names=(Named("test_conv2d_naive", "one side"), Named("test_conv2d_backward", "padded input's shape"))),
    Case("mistake_backward_no_stride", "mistake", sub(conv2d_backward=backward_no_stride), lose("conv2d_backward"),
         "window (i, j) placed at input (i, j) in the backward pass, whatever the stride",
         names=Named("test_conv2d_backward", "stride")),
    # --- cheats. Those confined to their own function share notebooks, two rules: conv2d_backward's cheats
    # (one cell) each go to another notebook, and one that calls the student's im2col (the engine through
    # conv2d_im2col, the transposed convolution) never shares a notebook with a cheating im2col, which would
    # make it lose for the wrong reason. Cheats on torch's machinery or the grader (always-equal objects,
    # dispatch modes, patched torch, files) stay alone.
    Case("demo_cheat", "cheat",
         sub(conv2d_naive=NAIVE_F_CONV2D, im2col=IM2COL_F_UNFOLD, conv2d_im2col=IM2COL_CONV_F_CONV2D,
             conv2d_backward=BACKWARD_AUTOGRAD),
         lose("conv2d_naive", "im2col", "conv2d_im2col", "conv2d_backward"),
         "F.conv2d and F.unfold where they are forbidden; autograd for the backward pass"),
    Case("cheat_disguised_backward_aten", "cheat",
         sub(conv2d_naive=NAIVE_ALIAS, im2col=IM2COL_TENSOR_UNFOLD, conv2d_im2col=IM2COL_CONV_ATEN,
             conv2d_backward=BACKWARD_ATEN),
         lose("conv2d_naive", "im2col", "conv2d_im2col", "conv2d_backward"),
         "F.conv2d through an alias built from strings, Tensor.unfold, torch.ops.aten.convolution; "
         "torch.ops.aten.convolution_backward (the library's own backward pass, which calls no answer)"),
    Case("cheat_backward_engine_matrix_library", "cheat",
         sub(conv2d_backward=BACKWARD_ENGINE, conv_matrix=MATRIX_F_CONV2D_ONE_HOT, **LIBRARY_ANSWERS),
         lose("conv2d_backward", "conv_matrix", "receptive_field", "conv_params", "conv_output_size"),
         "the autograd engine called directly (through the reference conv2d_im2col); conv_matrix by F.conv2d on "
         "one-hot images (the grader's oracle); dl.receptive_field, dl.count_parameters of an nn.Conv2d, and the "
         "size of an F.conv2d output: the library and torch answering the exercises"),
    Case("cheat_backward_transpose", "cheat", sub(conv2d_backward=BACKWARD_TRANSPOSE), lose("conv2d_backward"),
         "F.conv_transpose2d for the input gradient"),
    Case("cheat_modules_backward_does_nothing", "cheat",
         sub(conv2d_naive=NAIVE_MODULE, im2col=IM2COL_MODULE, conv2d_backward=BACKWARD_DOES_NOTHING),
         lose("conv2d_naive", "im2col", "conv2d_im2col", "conv2d_backward"),
         "nn.Conv2d and nn.Unfold (conv2d_im2col calls the forbidden im2col); a conv2d_backward that returns zeros "
         "of the right shapes and dtype (that it scores 0 of its 5 points is checked by do_nothing, which holds "
         "the same function)"),
    # A notebook that touches the torch internals the forbidden-op guard relies on (__torch_function__,
    # dispatch modes) gets no points for ANY guarded function: in 01 every exercise has rules (forbidden ops or
    # forbidden library calls), so every cell.
    Case("cheat_always_equal", "cheat",
         sub(conv2d_naive=NAIVE_ALWAYS_EQUAL, conv_output_size=SIZE_ALWAYS_EQUAL, receptive_field=RF_ALWAYS_EQUAL),
         lose(*(c[len("test_"):] for c in CELLS)),
         "a tensor subclass, an int subclass and an object that claim to equal anything"),
    Case("cheat_escape_dispatch_mode", "cheat", sub(conv2d_naive=NAIVE_ESCAPE_DISPATCH),
         lose(*(c[len("test_"):] for c in CELLS)), "switches off torch's dispatch modes around F.conv2d"),
    Case("cheat_patch_torch", "cheat", sub(conv2d_naive=NAIVE_PATCH_TORCH), lose("conv2d_naive"),
         "a wrong answer plus torch.allclose/equal/F.conv2d patched in the kernel"),
    Case("cheat_steal_reference", "cheat",
         sub(**{gid: None for gid in ("conv_params", "conv_output_size", "conv2d_naive", "conv_matrix", "im2col",
                                      "conv2d_im2col", "conv2d_backward")}, receptive_field=steal_reference),
         "zero", "looks for the instructor's solution notebook on disk and runs it"),
    # --- broken submissions
    Case("do_nothing", "cheat", sub(**DO_NOTHING), "zero",
         "every exercise returns a copy of its input or a constant (zeros, 1, the input size)"),
    Case("blank", "broken", lambda: release(ASSIGNMENT), "zero", "the release, untouched"),
    Case("broken_not_a_notebook", "broken", lambda: b"this is not a notebook {", "zero", "not JSON at all"),
    Case("broken_syntax_error_and_hang", "broken", sub(conv2d_naive=syntax_error, receptive_field=HANGS_ON_DEEP_STACKS),
         lose("conv2d_naive", "receptive_field"),
         "a syntax error in one answer cell (the other cells still count); a receptive_field that never returns "
         "on deep stacks (a timeout for that test only)"),
    Case("broken_crashes", "broken", sub(im2col=crashes_on_pairs), lose("im2col", "conv2d_im2col"),
         "the kernel dies when padding is a pair; later tests run in a restarted kernel"),
]

DEMO = {"correct": "reference", "mistakes": "demo_mistakes", "blank": "blank", "cheat": "demo_cheat"}
