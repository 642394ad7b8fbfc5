"""Where the computation runs: choosing a device, moving batches there, mixed precision.

The same notebook should run on a laptop CPU, on a CUDA GPU (Colab, a lab server) and on an
Apple GPU (MPS) without edits. Everything device-specific is collected here so that the rest of
the library (and the students' code) only ever says ``device = get_device()`` and
``X, y = to_device((X, y), device)``.

Why each helper exists:

- ``get_device``: pick the fastest device present, but let the student (or the environment
  variable ``DLCOURSE_DEVICE``, handy in CI) force one; a requested device that is missing is an
  error, never a silent fall-back to the CPU that makes a run 50x slower.
- ``to_device``: batches are often nested (``(X, y)``, ``{"image": X, "label": y}``); this walks
  them. ``non_blocking=True`` lets a copy from pinned host memory to the GPU overlap with
  computation instead of stalling the Python thread.
- ``amp_dtype`` / ``autocast``: automatic mixed precision runs matrix products and convolutions
  in 16-bit floats (2-8x faster on modern GPUs, half the memory) while keeping the weights and
  the reductions in float32. bfloat16 has float32's exponent range, so unlike float16 it needs
  no loss scaling.
- ``loader_kwargs``: DataLoader settings that matter for speed on a GPU (pinned memory).
- ``set_cudnn_benchmark``: let cuDNN time several convolution algorithms once and keep the
  fastest (good when input shapes do not change from batch to batch).
- ``channels_last``: store images as (N, H, W, C) in memory; tensor cores prefer it.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

import torch
from torch import nn

from dlcourse.seed import seed_worker

ENV_VAR = "DLCOURSE_DEVICE"
_KNOWN_TYPES = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def _parse_device(prefer) -> torch.device:
    """Turn "cpu", "cuda", "cuda:1", "mps" or a torch.device into a torch.device (no availability check)."""
    if isinstance(prefer, torch.device):
        device = prefer
    elif isinstance(prefer, str):
        try:
            device = torch.device(prefer.strip().lower())
        except RuntimeError:
            device = None
    else:
        raise TypeError(f"device must be a str or torch.device, got {type(prefer).__name__}")
    if device is None or device.type not in _KNOWN_TYPES:
        raise ValueError(f"unknown device {prefer!r}: expected 'cpu', 'cuda', 'cuda:<index>' or 'mps'")
    return device


def _check_available(device: torch.device) -> None:
    """Raise a clear error when `device` is not present on this machine."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} was requested but CUDA is not available on this "
                               "machine (no NVIDIA GPU, or torch was installed without CUDA); use 'cpu'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise RuntimeError(f"device {str(device)!r} was requested but this machine has {count} CUDA "
                               f"device(s): valid indices are 0..{count - 1}")
    elif device.type == "mps" and not _mps_available():
        raise RuntimeError("device 'mps' was requested but the Apple MPS backend is not available "
                           "here; use 'cpu'")


def get_device(prefer=None) -> torch.device:
    """Return the device to compute on: "cuda" if present, else "mps", else "cpu".

    Inputs:
    - prefer: None (choose automatically), or a device such as "cpu", "cuda", "cuda:1", "mps"
      or a torch.device. When None, the environment variable DLCOURSE_DEVICE is used if set.
      "auto" (or an empty string) means choose automatically.

    Returns:
    - torch.device

    Raises ValueError for an unknown device string and RuntimeError when the requested device is
    not available (we never fall back silently: a run meant for the GPU should not crawl on the CPU).
    """
    if prefer is None:
        prefer = os.environ.get(ENV_VAR) or None
    if prefer is None or (isinstance(prefer, str) and prefer.strip().lower() in ("", "auto")):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = _parse_device(prefer)
    _check_available(device)
    return device


def to_device(batch, device, non_blocking: bool = True):
    """Move every tensor inside a (nested) batch to `device`; other objects are returned unchanged.

    Inputs:
    - batch: a tensor, or tuples / lists / dicts (nested to any depth) containing tensors and
      other objects (strings, numbers, ...). Named tuples keep their type.
    - device: torch.device or string.
    - non_blocking: let a host-to-GPU copy from pinned memory run asynchronously, overlapping
      with computation. It is only used when the target is not the CPU: a GPU-to-CPU copy that
      does not block could be read before it has arrived.

    Returns:
    - the same structure, with tensors on `device` (tensors already there are not copied).
    """
    device = torch.device(device)
    non_blocking = non_blocking and device.type != "cpu"
    return _move(batch, device, non_blocking)


def _move(obj, device, non_blocking):
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):            # namedtuple: rebuild by position
        return type(obj)(*(_move(x, device, non_blocking) for x in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_move(x, device, non_blocking) for x in obj)
    if isinstance(obj, Mapping):
        moved = {k: _move(v, device, non_blocking) for k, v in obj.items()}
        try:
            return type(obj)(moved)                                   # dict, OrderedDict, ...
        except TypeError:
            return moved                                              # e.g. defaultdict: a plain dict
    return obj


def amp_dtype(device) -> torch.dtype | None:
    """The 16-bit float type that mixed precision should use on `device`, or None for "no AMP".

    - CUDA with native bfloat16 (Ampere, 2020, and newer): torch.bfloat16. Same exponent range
      as float32, so gradients do not underflow and no loss scaling is needed.
    - Older CUDA GPUs (e.g. the T4 on Colab): torch.float16; `fit` then adds a GradScaler,
      which multiplies the loss before backward() so that small gradients survive in float16.
    - CPU and MPS: None. CPU autocast exists (bfloat16) but is rarely faster on a laptop, so
      `autocast` keeps it off there unless asked for explicitly.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float16


def autocast(device, enabled: bool | None = None):
    """Context manager for automatic mixed precision on `device`.

    Inside it, matrix products and convolutions run in 16-bit floats while numerically delicate
    operations (softmax, losses, sums) stay in float32; weights are always stored in float32.

    Inputs:
    - device: torch.device or string.
    - enabled: None = on for CUDA with bfloat16 support, off elsewhere; True = on (bfloat16 on
      the CPU, float16 on MPS and on older CUDA GPUs); False = off.

    Returns:
    - a context manager (``with autocast(device): y_hat = net(X)``).
    """
    device = torch.device(device)
    dtype = amp_dtype(device)
    if enabled is None:
        enabled = dtype == torch.bfloat16
    if not enabled:
        return contextlib.nullcontext()      # cheaper than torch.autocast(enabled=False) in a hot loop
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def loader_kwargs(device, num_workers: int = 0) -> dict:
    """Keyword arguments for torch.utils.data.DataLoader that suit `device`.

    Inputs:
    - device: where the batches will go.
    - num_workers: worker processes that load and augment data in parallel (0 = in the main
      process, the safe choice in notebooks and on Windows/macOS).

    Returns a dict with:
    - num_workers.
    - pin_memory: True on CUDA. Page-locked host memory can be copied to the GPU by DMA and
      asynchronously (see to_device's non_blocking); on the CPU it only wastes memory.
    - persistent_workers, worker_init_fn (only when num_workers > 0): keep workers alive between
      epochs instead of restarting them, and seed NumPy / random in each worker (see seed.py).

    Usage: ``DataLoader(ds, batch_size=128, shuffle=True, **loader_kwargs(device, 2))``.
    """
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    device = torch.device(device)
    kwargs = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, worker_init_fn=seed_worker)
    return kwargs


def set_cudnn_benchmark(enabled: bool = True) -> bool:
    """Turn cuDNN autotuning on or off; returns the previous setting.

    With benchmark on, the first convolution of each new input shape tries several algorithms
    and remembers the fastest: a few slow batches, then every later batch is faster. Keep it off
    when shapes change all the time, and in deterministic mode (the choice may differ between runs).
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(enabled)
    return previous


def channels_last(net_or_tensor):
    """Store a network's 4-D weights, or a 4-D image batch, in channels-last memory order.

    The logical shape stays (N, C, H, W); only the order in memory becomes (N, H, W, C), which
    GPU tensor cores (and oneDNN on CPUs) process faster for convolutions. Values are unchanged.

    Inputs:
    - net_or_tensor: an nn.Module (converted in place and returned, like .to()) or a 4-D tensor.

    Returns:
    - the module, or a channels-last copy of the tensor.
    """
    if isinstance(net_or_tensor, nn.Module):
        return net_or_tensor.to(memory_format=torch.channels_last)
    if isinstance(net_or_tensor, torch.Tensor):
        if net_or_tensor.dim() != 4:
            raise ValueError("channels_last needs a 4-D tensor (N, C, H, W), got shape "
                             f"{tuple(net_or_tensor.shape)}")
        return net_or_tensor.contiguous(memory_format=torch.channels_last)
    raise TypeError(f"channels_last expects an nn.Module or a tensor, got {type(net_or_tensor).__name__}")
