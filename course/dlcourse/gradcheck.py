"""Numerical gradient checks: is the backward pass you wrote the derivative of your forward pass?

A backward pass is easy to get subtly wrong (a missing transpose, a sum over the wrong axis, a
gradient sent to the wrong window), and training with a wrong gradient often still "works", only
worse. The check every course since CS231n teaches compares the gradient you derived with one
measured by finite differences, which needs nothing but the forward pass:

    d/dx_i sum(f(x) * g)  ~=  ( sum(f(x + h e_i) * g) - sum(f(x - h e_i) * g) ) / (2 h)

where `g` (grad_out) is the gradient arriving from the layer above. The central difference has an
error of order h^2, and float64 keeps rounding error near 1e-16 / h, so with h = 1e-6 a correct
backward pass agrees to about 1e-8 in relative error; a wrong one is off by 1e-2 or more.

    X = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    grad_out = torch.randn_like(my_layer(X))
    numeric = dl.numerical_gradient(my_layer, X, grad_out)
    print(dl.rel_error(my_layer_backward(grad_out, X), numeric))     # ~1e-9: correct
"""
from __future__ import annotations

from typing import Callable

import torch


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grad_out: torch.Tensor,
                       h: float = 1e-6) -> torch.Tensor:
    """The gradient of sum(f(x) * grad_out) with respect to x, by central differences.

    Inputs:
    - f: a function of one tensor (wrap others: ``lambda x: conv(x, w)``); it must not change x
    - x: the input, any shape; use float64 (in float32 rounding swamps the differences)
    - grad_out: the gradient of the loss with respect to f(x), shape of f(x)
    - h: the step

    Returns: a tensor shaped like x (float64). Costs 2 * x.numel() calls of f: keep x small.
    """
    x = x.detach().to(torch.float64).clone()
    g = grad_out.detach().to(torch.float64)
    grad = torch.zeros_like(x)
    flat, flat_grad = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + h
        plus = float((f(x).to(torch.float64) * g).sum())
        flat[i] = old - h
        minus = float((f(x).to(torch.float64) * g).sum())
        flat[i] = old
        flat_grad[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> float:
    """max |a - b| / max(|a| + |b|, eps), elementwise: scale-free, so 1e-7 means "equal" for any size.

    Raises ValueError when the shapes differ (a common backward-pass bug, better named than broadcast).
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp_min(eps)).max())
