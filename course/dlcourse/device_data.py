"""Small data sets held on the device: no DataLoader, no copies, augmentation done in batches there.

A DataLoader reads examples one by one in Python, transforms each, stacks them into a batch and
copies the batch to the GPU. For CIFAR-10-sized data on a fast GPU that Python loop, not the
network, sets the speed. The fastest CIFAR-10 training scripts (e.g. Keller Jordan's
airbench, 2024) avoid it: the whole training set (50,000 x 3 x 32 x 32 bytes = 150 MB) fits
on the GPU once, each epoch is a random permutation of indices on the device, and random crops
and flips are computed for a whole batch at once. `DeviceLoader` does that and is a drop-in
replacement for the DataLoaders `fit` takes:

    data = dl.load_data("cifar10", batch_size=512)
    train_iter = dl.DeviceLoader.from_dataset(data.train.dataset, 512, shuffle=True, device=device,
                                              augment=dl.random_crop_flip)
    history = dl.fit(net, train_iter, data.val, num_epochs=10, device=device)

On a CPU it changes little (the network dominates there); it is tested on the CPU and measured
by `python -m dlcourse.bench --device cuda`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dlcourse.devices import get_device


def random_crop_flip(X: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4) -> torch.Tensor:
    """Random crops with zero padding and random horizontal flips for a whole batch at once.

    Inputs:
    - X: (N, C, H, W) images (on any device)
    - generator: a torch.Generator on X's device (None: the global one)
    - padding: zeros added on every side before cropping back to (H, W); each image is shifted
      by (dy, dx) with dy, dx uniform in [-padding, padding], as torchvision's
      RandomCrop(H, padding) does one image at a time

    Returns: (N, C, H, W), each image cropped and, with probability 1/2, mirrored left-right.
    """
    N, C, H, W = X.shape
    Xp = F.pad(X, (padding, padding, padding, padding))                    # (N, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * padding + 1, (N, 1), device=X.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (N, 1), device=X.device, generator=generator)
    rows = dy + torch.arange(H, device=X.device)                            # (N, H)
    cols = dx + torch.arange(W, device=X.device)                            # (N, W)
    n = torch.arange(N, device=X.device)[:, None, None]
    out = Xp.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]]     # (N, H, W, C)
    out = out.permute(0, 3, 1, 2)                                           # (N, C, H, W)
    flip = torch.rand(N, device=X.device, generator=generator) < 0.5        # (N,)
    return torch.where(flip[:, None, None, None], out.flip(-1), out).contiguous()


class DeviceLoader:
    """Batches (X, y) from tensors that already live on the device.

    Inputs:
    - X: (N, ...) inputs, y: (N,) labels (moved to `device` once)
    - batch_size: examples per batch; the last batch is smaller unless drop_last
    - shuffle: a new random order every epoch, from `self.generator` (seeded with `seed`; fit
      saves and restores its state in checkpoints, like a DataLoader's)
    - augment: None or f(X_batch, generator) -> X_batch, applied to each training batch on the
      device (e.g. random_crop_flip)

    Iterating gives len(self) batches; `dataset`-free, so fit, evaluate and predict take it as
    they take a DataLoader.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 augment=None, device=None, seed: int = 0, drop_last: bool = False):
        if len(X) != len(y):
            raise ValueError(f"{len(X)} inputs but {len(y)} labels")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.device = get_device(device)
        self.X, self.y = X.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.generator = torch.Generator().manual_seed(seed)          # the order: drawn on the CPU
        self.augment_generator = torch.Generator(self.device).manual_seed(seed + 1)

    @classmethod
    def from_dataset(cls, dataset, batch_size: int, **kwargs) -> "DeviceLoader":
        """Read every example of a map-style dataset once (its transform applied once, so use
        the un-augmented dataset and pass `augment` here) and hold the result on the device."""
        pairs = [dataset[i] for i in range(len(dataset))]
        X = torch.stack([torch.as_tensor(x) for x, _ in pairs])
        y = torch.as_tensor([int(t) for _, t in pairs], dtype=torch.int64)
        return cls(X, y, batch_size, **kwargs)

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            X = self.X[idx]                                                  # (B, ...) gathered on the device
            if self.augment is not None:
                X = self.augment(X, self.augment_generator)
            yield X, self.y[idx]
