"""Classification metrics computed on tensors, without leaving the device.

Top-k accuracy: a prediction counts as correct when the true class is among the k classes with
the highest scores. ImageNet papers quote top-1 and top-5 ("top-5 error" = 1 - top-5 accuracy).

    acc@k = (1/N) * sum_i [ y_i in topk(s_i, k) ]

Every function returns tensors on the input's device and never calls .item(): reading a number
back to Python forces the CPU to wait for the GPU (a host-device synchronisation). In a training
loop we add these tensors up batch after batch and read them once per epoch.
"""
from __future__ import annotations

import torch


def _check(logits: torch.Tensor, y: torch.Tensor, ks) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("logits and y must be tensors, got "
                        f"{type(logits).__name__} and {type(y).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, C) (one row of class scores per example), "
                         f"got shape {tuple(logits.shape)}")
    if y.dim() != 1 or y.shape[0] != logits.shape[0]:
        raise ValueError(f"y must have shape (N,) = ({logits.shape[0]},) to match logits "
                         f"{tuple(logits.shape)}, got shape {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices, got dtype {y.dtype}")
    if logits.shape[0] == 0:
        raise ValueError("accuracy of an empty batch (N = 0) is undefined")
    num_classes = logits.shape[1]
    for k in ks:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > num_classes:
            raise ValueError(f"k={k} is larger than the number of classes C={num_classes}")


def num_correct(logits: torch.Tensor, y: torch.Tensor, ks=(1,)) -> torch.Tensor:
    """Count the examples whose true class is among the top k scores, for each k in `ks`.

    Inputs:
    - logits: (N, C) class scores (logits, probabilities: any monotone score works).
    - y: (N,) integer class labels in [0, C).
    - ks: tuple of positive integers <= C.

    Returns:
    - (len(ks),) int64 tensor on logits' device: counts, not fractions, so that sums over
      batches of different sizes stay exact.
    """
    ks = tuple(ks)
    _check(logits, y, ks)
    if ks == (1,):                                           # the common case: argmax is cheaper
        return (logits.argmax(dim=1) == y).sum().reshape(1)
    top = logits.topk(max(ks), dim=1).indices                # (N, kmax), best class first
    hits = top == y[:, None]                                 # (N, kmax), at most one True per row
    hits = hits.cumsum(dim=1)                                # (N, kmax): 1 from the true class on
    return torch.stack([hits[:, k - 1].sum() for k in ks])  # (len(ks),)


def accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Top-k accuracy: the fraction of examples whose true class is among the k highest scores.

    Inputs:
    - logits: (N, C) class scores.
    - y: (N,) integer labels.
    - k: 1 for ordinary accuracy (argmax == y).

    Returns:
    - 0-d float tensor in [0, 1] on logits' device (call .item() for a Python float).
    """
    return num_correct(logits, y, (k,))[0].float() / y.shape[0]


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, ks=(1, 5)) -> dict:
    """Several top-k accuracies at once (one sort instead of one per k).

    Returns:
    - {"top1": 0-d tensor, "top5": 0-d tensor, ...}, one entry per k in `ks`.
    """
    ks = tuple(ks)
    counts = num_correct(logits, y, ks).float() / y.shape[0]   # (len(ks),)
    return {f"top{k}": counts[i] for i, k in enumerate(ks)}
