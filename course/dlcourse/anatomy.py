"""Anatomy of a network: how many parameters, how much compute, what shape after each layer,
and how much of the input one output unit sees (its receptive field).

These are the numbers that explain design choices in the lecture: why a 3x3 stack beats one 7x7
convolution (same receptive field, fewer parameters), why the first fully connected layer of
VGG holds most of its parameters, why downsampling early makes a network cheap.

Conventions
-----------
- Parameters: scalars in the parameter tensors. ``Conv2d(C_in, C_out, K)`` has
  ``C_out * C_in * K * K + C_out`` (weights + biases), ``Linear(D_in, D_out)`` has ``D_in * D_out + D_out``.
- Compute is counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix
  multiplications and convolutions (the operations that dominate; ReLU, pooling, batch norm and
  bias additions are not counted) as FLOPs with ONE MULTIPLY-ADD = 2 FLOPs. Papers and
  torchvision's model tables quote multiply-adds (MACs) and often call them "FLOPs": torchvision's
  "GFLOPS 1.81" for ResNet-18 is 1.81 G multiply-adds = 3.63 G FLOPs here. ``count_macs`` gives the
  papers' number.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_flops", "count_macs", "layer_table", "summary", "receptive_field"]


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``net``.

    Inputs:
    - net: a module. A tensor shared by two layers is counted once (``net.parameters()`` yields
      each tensor once).
    - trainable_only: count only parameters with ``requires_grad=True`` (e.g. after freezing a
      backbone for fine-tuning, only the new head is trainable).

    Returns: sum over parameter tensors p of p.numel().
    """
    total = 0
    for p in net.parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise ValueError("net has lazy layers whose shapes are not known yet: run one forward pass first")
        if p.requires_grad or not trainable_only:
            total += p.numel()
    return total


def count_flops(net: nn.Module, X_or_shape) -> int:
    """FLOPs of one forward pass, counted by ``FlopCounterMode`` (one multiply-add = 2 FLOPs).

    For a convolution with output (N, C_out, H_out, W_out) and kernel (C_out, C_in, K, K):
        FLOPs = 2 * N * C_out * H_out * W_out * C_in * K * K
    and for a linear layer on (N, D_in) -> (N, D_out): FLOPs = 2 * N * D_in * D_out.

    Inputs:
    - net: the module; it runs in eval mode under ``torch.no_grad()`` (so batch norm statistics are
      not updated) and its train/eval flags are restored afterwards.
    - X_or_shape: an input tensor, or its full shape including the batch dimension, e.g.
      (1, 3, 224, 224); a shape becomes zeros on the net's device and dtype. A net built on the
      "meta" device is counted without computing anything (fast even for big models).

    Returns: total FLOPs (int) for the whole batch.
    """
    X = _example_input(net, X_or_shape)
    with _eval_mode(net), torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(X)
    return counter.get_total_flops()


def count_macs(net: nn.Module, X_or_shape) -> int:
    """Multiply-adds of one forward pass: ``count_flops(net, X_or_shape) // 2``.

    This is the number papers and torchvision's tables quote as "FLOPs" (ResNet-18 on one
    224x224 image: 1.81 G).
    """
    return count_flops(net, X_or_shape) // 2


def layer_table(net: nn.Module, input_shape) -> list[dict]:
    """One row per call of a leaf module (a module without children) in one forward pass.

    Inputs:
    - net: the module (run in eval mode without gradients; flags restored afterwards).
    - input_shape: full input shape with the batch dimension, e.g. (1, 1, 28, 28), or a tensor.

    Returns a list of dicts in execution order with keys:
    - "name": qualified name, e.g. "layer1.0.conv1";
    - "type": class name, e.g. "Conv2d";
    - "output_shape": tuple (or a list of tuples for several outputs);
    - "params": the module's own parameters, counted on its first call only (a module called
      twice shows 0 the second time, so the column adds up);
    - "macs": multiply-adds of this call (FlopCounterMode's FLOPs / 2).
    Parameters held directly by non-leaf modules (rare, e.g. a class token) are in no row.
    """
    X = _example_input(net, input_shape)
    rows, seen, handles = [], set(), []
    counter = FlopCounterMode(display=False)

    def before(module, args):
        module._dlcourse_flops_before = counter.get_total_flops()

    def after(module, args, output):
        first_call = module not in seen
        seen.add(module)
        rows.append({
            "name": names[module], "type": type(module).__name__, "output_shape": _shape_of(output),
            "params": sum(p.numel() for p in module.parameters(recurse=False)) if first_call else 0,
            "macs": (counter.get_total_flops() - module._dlcourse_flops_before) // 2,
        })

    names = {m: name or type(m).__name__ for name, m in net.named_modules() if not list(m.children())}
    try:
        for module in names:
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
        with _eval_mode(net), torch.no_grad(), counter:
            net(X)
    finally:
        for handle in handles:
            handle.remove()
        for module in names:
            module.__dict__.pop("_dlcourse_flops_before", None)
    return rows


def summary(net: nn.Module, input_shape) -> str:
    """A printable table of ``layer_table`` plus totals: parameters (all and trainable), MACs, FLOPs.

    Example: ``print(summary(net, (1, 1, 28, 28)))``.
    """
    rows = layer_table(net, input_shape)
    shape_text = [str(r["output_shape"]) for r in rows]
    layer_text = [f"{r['name']} ({r['type']})" for r in rows]
    w1 = max([len("Layer (type)")] + [len(t) for t in layer_text])
    w2 = max([len("Output shape")] + [len(t) for t in shape_text])
    header = f"{'Layer (type)':<{w1}}  {'Output shape':<{w2}}  {'Params':>12}  {'MACs':>15}"
    lines = [header, "-" * len(header)]
    for r, layer, shape in zip(rows, layer_text, shape_text):
        lines.append(f"{layer:<{w1}}  {shape:<{w2}}  {r['params']:>12,}  {r['macs']:>15,}")
    macs = sum(r["macs"] for r in rows)
    input_shape = tuple(input_shape.shape) if torch.is_tensor(input_shape) else tuple(input_shape)
    lines += ["-" * len(header),
              f"Input shape: {input_shape}",
              f"Total params: {count_parameters(net):,} (trainable: {count_parameters(net, True):,})",
              f"Total MACs: {macs:,} = {2 * macs:,} FLOPs (one multiply-add = 2 FLOPs)"]
    return "\n".join(lines)


# Layers that act on each position separately: they do not widen the receptive field.
# (Batch norm uses batch-wide statistics in training mode; as usual we treat it as pointwise.)
_POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
              nn.Hardswish, nn.Mish, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity)


def receptive_field(layers):
    """Receptive field (in input pixels) of one output unit of a stack of layers.

    Walk the layers from the input, keeping r (receptive field) and j (jump: the distance in input
    pixels between two neighbouring units of the current layer):

        r_0 = 1, j_0 = 1
        r <- r + (k - 1) * d * j        (kernel k, dilation d)
        j <- j * s                      (stride s)

    Padding does not change r (it only shifts where the window sits). Example: three stacked
    3x3 stride-1 convolutions see 1 + 2 + 2 + 2 = 7 pixels, like one 7x7 convolution, with
    3 * 9 C^2 = 27 C^2 instead of 49 C^2 weights.

    Inputs:
    - layers: an ``nn.Sequential`` (nested ones too) of Conv2d / MaxPool2d / AvgPool2d and
      pointwise layers (ReLU, BatchNorm2d, Dropout, ...), or a list whose items are such modules
      or tuples (kernel_size, stride) or (kernel_size, stride, dilation); sizes may be ints or
      (height, width) pairs.

    Returns: r as an int, or (r_h, r_w) when height and width differ.
    """
    r, j = [1, 1], [1, 1]
    for k, s, d in _rf_specs(layers):
        for axis in (0, 1):
            r[axis] += (k[axis] - 1) * d[axis] * j[axis]
            j[axis] *= s[axis]
    return r[0] if r[0] == r[1] else tuple(r)


def _rf_specs(layers):
    """Yield ((k_h, k_w), (s_h, s_w), (d_h, d_w)) for every layer that widens the receptive field."""
    items = list(layers) if isinstance(layers, (nn.Sequential, nn.ModuleList, list, tuple)) else [layers]
    for item in items:
        if isinstance(item, (nn.Sequential, nn.ModuleList)):
            yield from _rf_specs(item)
        elif isinstance(item, (nn.Conv2d, nn.MaxPool2d)):
            yield _pair(item.kernel_size), _pair(item.stride), _pair(item.dilation)
        elif isinstance(item, nn.AvgPool2d):
            yield _pair(item.kernel_size), _pair(item.stride or item.kernel_size), (1, 1)
        elif isinstance(item, _POINTWISE):
            continue
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            yield _pair(item[0]), _pair(item[1]), _pair(item[2] if len(item) == 3 else 1)
        else:
            raise ValueError(
                f"receptive_field: cannot handle {item!r}; give Conv2d/MaxPool2d/AvgPool2d layers, pointwise "
                "layers (ReLU, BatchNorm2d, ...) or (kernel_size, stride[, dilation]) tuples")


def _pair(v):
    pair = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(pair) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in pair):
        raise ValueError(f"kernel size, stride and dilation must be positive ints or pairs of them, got {v!r}")
    return pair


def _example_input(net, X_or_shape):
    """A tensor as given, or zeros of the given shape on the net's device and floating dtype."""
    if torch.is_tensor(X_or_shape):
        return X_or_shape
    shape = tuple(X_or_shape)
    if not shape or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(f"expected an input tensor or a shape like (1, 3, 32, 32), got {X_or_shape!r}")
    p = next((p for p in net.parameters() if p.is_floating_point()), None)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    return torch.zeros(shape, device=device, dtype=dtype)


@contextlib.contextmanager
def _eval_mode(net):
    """Eval mode for the duration, then every submodule's own train/eval flag back as it was."""
    flags = {m: m.training for m in net.modules()}
    net.eval()
    try:
        yield
    finally:
        for m, training in flags.items():
            m.training = training


def _shape_of(output):
    if torch.is_tensor(output):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return [_shape_of(o) for o in output]
    return None

