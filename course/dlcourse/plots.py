"""Figures the notebooks need again and again: training curves, image grids, filters, feature maps.

Every function returns a ``matplotlib.figure.Figure`` and never calls ``plt.show()``.
The figures are created without pyplot (``Figure(...)``), which has two consequences worth knowing:

- In Jupyter a figure shows when it is the value of the cell's last line (``dl.plot_history(h)``),
  exactly once; ``fig = dl.plot_history(h)`` shows nothing until ``fig`` or ``display(fig)``.
  (A pyplot figure would show a second time at the end of the cell.)
- Nothing stays registered in pyplot, so a loop that draws hundreds of figures does not leak
  memory. In a script, save with ``fig.savefig("curves.png")``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_history", "show_images", "show_filters", "show_feature_maps"]


def _show_figures_inline():
    """In a Jupyter kernel, make a returned Figure display as a PNG from the very first cell.

    Jupyter learns how to draw a Figure only when pyplot first loads its inline backend; our figures
    bypass pyplot, so without this the first one would print as `<Figure size ...>` text.
    Outside Jupyter (scripts, tests, a terminal IPython) this does nothing.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):
        select_figure_formats(shell, {"png"})


_show_figures_inline()

_METRIC_LABEL = {"loss": "loss", "acc": "accuracy", "top5": "top-5 accuracy", "lr": "learning rate",
                 "epoch_time": "seconds per epoch"}
_SPLIT_LABEL = {"train": "train", "val": "validation"}


def plot_history(history, *, metrics=("loss", "acc")):
    """Training curves, one panel per metric side by side, epochs on the x axis.

    Inputs:
    - history: a ``training.History`` or any dict of lists, e.g. {"train_loss": [...],
      "val_loss": [...], "train_acc": [...], "val_acc": [...]}; value i belongs to epoch i + 1.
    - metrics: names m to draw; a panel shows "train_m" and "val_m" (whichever exist), or the
      key m itself (e.g. "lr"). Metrics with no values are skipped.

    Returns: the Figure (one Axes per drawn metric). Why side by side: the gap between the train
    and validation curves (overfitting) and the loss/accuracy disagreement are read at a glance.
    """
    panels = [(m, _series(history, m)) for m in metrics]
    panels = [(m, series) for m, series in panels if series]
    if not panels:
        raise ValueError(f"history has no values for metrics {tuple(metrics)}; its keys are {sorted(history)}")
    fig = Figure(figsize=(4.4 * len(panels), 3.3), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metric, series) in zip(axes, panels):
        for label, values in series.items():
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ylabel = _METRIC_LABEL.get(metric, metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel}: {' vs. '.join(series)}" if len(series) > 1 else ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def _series(history, metric):
    """{"train": [...], "validation": [...]} for a metric, or {metric: [...]} for a plain key."""
    series = {}
    for split, label in _SPLIT_LABEL.items():
        values = history.get(f"{split}_{metric}")
        if values is not None and len(values):
            series[label] = [float(v) for v in values]
    if not series and history.get(metric) is not None and len(history[metric]):
        series[_METRIC_LABEL.get(metric, metric)] = [float(v) for v in history[metric]]
    return series


def show_images(X, labels=None, preds=None, classes=None, *, ncols=8, mean=None, std=None):
    """A grid of images titled with their labels and predictions; wrong predictions in red.

    Inputs:
    - X: (N, C, H, W) with C = 1 (grey) or 3 (RGB), or (N, H, W) grey; tensor or array.
      uint8 is read as 0..255; float as [0, 1] after un-normalising.
    - labels: (N,) true class indices (or None).
    - preds: (N,) predicted class indices, or (N, num_classes) scores (argmax is taken), or None.
    - classes: names, ``classes[i]`` for class i (e.g. ``info.classes``); default: the indices.
    - ncols: images per row.
    - mean, std: per-channel statistics used to normalise X (e.g. ``info.mean``, ``info.std``);
      the images are shown as x * std + mean. Without them, float images outside [0, 1] are
      rescaled to [0, 1] one by one so that they are at least visible.

    Title of image i: the label; with predictions, the prediction, followed on a second line by
    "true: <label>" and drawn in red (with a red frame) when it is wrong.
    Returns: the Figure, with exactly N Axes.
    """
    images = _to_display(X, mean, std)                                  # (N, H, W) or (N, H, W, 3)
    labels, preds = _as_index(labels, "labels"), _as_index(preds, "preds")
    for name, values in (("labels", labels), ("preds", preds)):
        if values is not None and len(values) != len(images):
            raise ValueError(f"{len(images)} images but {len(values)} {name}")
    fig, axes = _grid(len(images), ncols, panel=1.5, title_lines=2 if preds is not None else 1)
    for i, ax in enumerate(axes):
        if images.ndim == 3:
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(images[i])
        title, wrong = _caption(i, labels, preds, classes)
        ax.set_title(title, fontsize=9, color="red" if wrong else "black")
        _clear_ticks(ax, frame_color="red" if wrong else None)
    return fig


def show_filters(weight, *, ncols=8, max_filters=64):
    """Convolution kernels as small images, each rescaled to [0, 1]: (w - min) / (max - min).

    Rescaling each filter on its own shows its pattern (edge, colour blob, ...), not its size.

    Inputs:
    - weight: (C_out, C_in, kH, kW) tensor, or an ``nn.Conv2d`` (its ``.weight`` is used).
    - ncols: panels per row; max_filters: at most this many panels are drawn.

    With C_in = 3 each output filter is one RGB image (the way first-layer filters of colour
    networks are usually shown); otherwise every (output, input) kernel is one grey panel titled
    "o,i" ("o" when C_in = 1), output channel by output channel.
    Returns: the Figure.
    """
    W = getattr(weight, "weight", weight)
    W = torch.as_tensor(W).detach().cpu().float()
    if W.ndim != 4:
        raise ValueError(f"expected a (C_out, C_in, kH, kW) weight, got shape {tuple(W.shape)}")
    C_out, C_in = W.shape[:2]
    if C_in == 3:
        panels = _minmax(W).permute(0, 2, 3, 1)                          # (C_out, kH, kW, 3)
        titles = [str(o) for o in range(C_out)]
    else:
        panels = _minmax(W.reshape(C_out * C_in, 1, *W.shape[2:]))[:, 0]  # (C_out*C_in, kH, kW)
        titles = [f"{o},{i}" if C_in > 1 else str(o) for o in range(C_out) for i in range(C_in)]
    shown = min(len(panels), max_filters)
    fig, axes = _grid(shown, ncols, panel=0.9, title_lines=1)
    for ax, panel, title in zip(axes, panels.numpy(), titles):
        ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=7)
        _clear_ticks(ax)
    more = f", first {shown} of {len(panels)} shown" if shown < len(panels) else ""
    fig.suptitle(f"filters {C_out}x{C_in}x{W.shape[2]}x{W.shape[3]}{more}")
    return fig


def show_feature_maps(maps, *, ncols=8, max_maps=64):
    """The channels of one image's activations, one panel each, colour scale per panel.

    Inputs:
    - maps: (C, H, W) or (1, C, H, W) activations of one example (e.g. a conv layer's output
      captured with a forward hook).
    - ncols: panels per row; max_maps: at most this many channels are drawn.

    Bright = strong activation of that channel's filter at that position. Each panel has its own
    colour scale (viridis), so compare where a channel fires, not how strongly across channels.
    Returns: the Figure, panels titled "channel c".
    """
    A = torch.as_tensor(maps).detach().cpu().float()
    if A.ndim == 4 and A.shape[0] == 1:
        A = A[0]                                                         # (C, H, W)
    if A.ndim != 3:
        raise ValueError(f"expected (C, H, W) or (1, C, H, W) activations of one example, got {tuple(A.shape)}")
    shown = min(A.shape[0], max_maps)
    fig, axes = _grid(shown, ncols, panel=1.3, title_lines=1)
    for c, ax in enumerate(axes):
        ax.imshow(A[c].numpy(), cmap="viridis")
        ax.set_title(f"channel {c}", fontsize=8)
        _clear_ticks(ax)
    more = f" (first {shown} of {A.shape[0]})" if shown < A.shape[0] else ""
    fig.suptitle(f"feature maps {A.shape[0]}x{A.shape[1]}x{A.shape[2]}{more}")
    return fig


# ----------------------------------------------------------------------------------------------

def _grid(n, ncols, panel, title_lines):
    """A Figure with exactly n Axes laid out in rows of ncols (unused cells removed)."""
    if n < 1:
        raise ValueError("nothing to show: got 0 images")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel * ncols, (panel + 0.2 * title_lines) * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, list(axes[:n])


def _clear_ticks(ax, frame_color=None):
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame_color is not None)
        if frame_color is not None:
            spine.set_color(frame_color)
            spine.set_linewidth(2)


def _to_display(X, mean, std):
    """Images as numpy in [0, 1]: (N, H, W) grey or (N, H, W, 3) RGB."""
    X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X).detach().cpu()
    if X.ndim == 3:
        X = X[:, None]                                                  # (N, 1, H, W)
    if X.ndim != 4 or X.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, C, H, W) with C = 1 or 3, or (N, H, W); got {tuple(X.shape)}")
    X = X.float() / 255 if X.dtype == torch.uint8 else X.float()
    C = X.shape[1]
    if mean is not None or std is not None:
        mean = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32).reshape(-1, 1, 1)
        std = torch.as_tensor(1.0 if std is None else std, dtype=torch.float32).reshape(-1, 1, 1)
        X = X * std + mean                                              # undo (x - mean) / std
    elif X.min() < 0 or X.max() > 1:
        X = _minmax(X)
    X = X.clamp(0.0, 1.0)
    return X[:, 0].numpy() if C == 1 else X.permute(0, 2, 3, 1).numpy()


def _minmax(X):
    """Rescale each X[i] to [0, 1]: (x - min) / (max - min); a constant image becomes 0.5."""
    flat = X.reshape(len(X), -1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).reshape(-1, *[1] * (X.ndim - 1))
    low = low.reshape(span.shape)
    return torch.where(span > 0, (X - low) / span.clamp_min(1e-12), torch.full_like(X, 0.5))


def _as_index(values, what):
    if values is None:
        return None
    values = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values).detach().cpu()
    if values.ndim == 2:
        values = values.argmax(1)                                      # scores -> predicted class
    if values.ndim != 1:
        raise ValueError(f"{what} must be (N,) class indices or (N, num_classes) scores, got {tuple(values.shape)}")
    return values.long().tolist()


def _caption(i, labels, preds, classes):
    """(title, wrong) for image i."""
    def name(k):
        return str(classes[k]) if classes is not None else str(k)
    if preds is None:
        return (name(labels[i]) if labels is not None else ""), False
    if labels is None or preds[i] == labels[i]:
        return name(preds[i]), False
    return f"{name(preds[i])}\ntrue: {name(labels[i])}", True
