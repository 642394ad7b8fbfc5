"""Data sets for the notebooks: MNIST and CIFAR-10, with offline stand-ins that are never noise.

Every notebook starts the same way::

    train_iter, val_iter, test_iter, info = load_data("cifar10", batch_size=128)

and gets three DataLoaders that yield ``(X, y)`` with ``X`` of shape ``(N, C, H, W)`` (float32,
normalised per channel) and ``y`` of shape ``(N,)`` (int64 class indices), plus ``info``
(a ``DatasetInfo``: class names, the mean/std used, the image shape).

Where the data come from
------------------------
- "mnist" and "cifar10" are read with torchvision's own loading code (``torchvision.datasets.MNIST``
  and ``CIFAR10``, which also verify the files), from ``root`` (default ``DATA_DIR``), and
  downloaded there when missing.
- When that is impossible (no network, a failed download, ``offline=True`` or the environment
  variable ``DLCOURSE_OFFLINE=1``) the notebook still has to run, so we fall back, with ONE printed
  warning, to data that teach the same lesson:

  * "mnist" -> "digits": scikit-learn's bundled handwritten digits (1,797 real scans, 8x8 pixels,
    shipped inside the scikit-learn package), resized to 28x28 (or ``image_size``, e.g. 32 for LeNet).
  * "cifar10" -> "shapes": generated coloured shapes (3x32x32, 10 shape classes) with random
    position, size, colours and pixel noise (``make_shapes``). A CNN has to learn shape, not colour,
    to classify them, which is the point of the CIFAR exercises.

Splits and normalisation
------------------------
The training files are split once into train and validation parts with a fixed ``seed``; the test
set is the data set's own test split and never used for choices. Each channel is normalised with
the mean and standard deviation of the *training* part only::

    x_norm = (x - mean_c) / std_c,   x in [0, 1]

because statistics taken from validation or test data would leak them into training.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from dlcourse.devices import get_device, loader_kwargs

__all__ = [
    "DATA_DIR", "NAMES", "DatasetInfo", "DataLoaders", "ImageDataset",
    "load_data", "get_datasets", "make_shapes", "SHAPE_CLASSES", "DIGIT_CLASSES",
]

DATA_DIR = Path(os.environ.get("DLCOURSE_DATA") or Path.home() / ".cache" / "dlcourse" / "data").expanduser()
NAMES = ("mnist", "cifar10", "digits", "shapes")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring",
                 "horizontal bar", "vertical bar", "diamond", "star", "ellipse")

_FALLBACK = {"mnist": "digits", "cifar10": "shapes"}
_TITLE = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
_TORCHVISION_CLASS = {"mnist": "MNIST", "cifar10": "CIFAR10"}
_DEFAULT_SIZE = {"mnist": 28, "digits": 28, "cifar10": 32, "shapes": 32}
_SHAPES_SIZES = (5000, 1000)        # train, test: a CPU epoch takes seconds
_SHAPES_SEEDS = (0, 1)              # fixed: the data set is the same for everyone, `seed` only splits it
_DOWNLOAD_TIMEOUT_S = 30            # torchvision's urlopen has no timeout; a silent network would hang


@dataclass(frozen=True)
class DatasetInfo:
    """What ``load_data`` loaded.

    - name: the data actually used ("mnist", "cifar10", "digits" or "shapes").
    - source: "torchvision" (the real files) or "offline" (the bundled / generated stand-ins).
    - classes: class names; ``classes[y]`` names label ``y``.
    - mean, std: per-channel statistics of the training part, pixels in [0, 1]; pass them to
      ``plots.show_images`` to undo the normalisation.
    - shape: (C, H, W) of one example.
    - requested: the name asked for ("mnist" even when "digits" stood in for it).
    - num_train, num_val, num_test: number of examples in each split.
    """

    name: str
    source: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    shape: tuple[int, int, int]
    requested: str = ""
    num_train: int = 0
    num_val: int = 0
    num_test: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class DataLoaders(NamedTuple):
    """``train, val, test`` DataLoaders (``val`` is None when ``val_size=0``) and ``info``."""

    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    info: DatasetInfo


class ImageDataset(Dataset):
    """Images held in one uint8 tensor; the transform runs per example when it is read.

    Keeping uint8 (1 byte per pixel) instead of float32 keeps CIFAR-10 at 150 MB instead of
    600 MB, and random augmentations then draw a new version of an image every epoch.

    Inputs:
    - images: (N, C, H, W) uint8 tensor.
    - labels: (N,) int64 tensor.
    - transform: callable on one (C, H, W) uint8 tensor, e.g. a ``transforms.v2.Compose``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a (N, C, H, W) uint8 tensor, got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        X = self.images[i]                          # (C, H, W) uint8
        if self.transform is not None:
            X = self.transform(X)                   # (C, H, W) float32, normalised
        return X, self.labels[i]


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------

def load_data(name, batch_size=128, *, root=None, image_size=None, val_size=0.1, train_size=None,
              seed=0, augment=False, download=True, offline=None, num_workers=0, device=None) -> DataLoaders:
    """Load a data set as train/validation/test DataLoaders.

    Inputs:
    - name: "mnist", "cifar10", "digits" or "shapes" (see the module docstring for the fallbacks).
    - batch_size: examples per batch.
    - root: folder holding the data (default ``DATA_DIR``, env ``DLCOURSE_DATA``).
    - image_size: side length H = W of the images (default 28 for digits, 32 for colour images);
      e.g. 32 resizes MNIST for LeNet-5.
    - val_size: fraction (float in [0, 1)) or number (int) of training examples held out for validation.
    - train_size: optional fraction or number of the remaining training examples to keep
      (small-data experiments); subsets are nested and the validation part does not change.
    - seed: fixes the train/validation split and the shuffling order.
    - augment: random training-time augmentation (crop with padding + horizontal flip for colour
      images; small random affine for digits, never a flip: a mirrored 2 is not a 2).
    - download, offline: whether torchvision may download; ``offline=None`` reads ``DLCOURSE_OFFLINE``.
    - num_workers, device: DataLoader worker processes; pinned memory when ``device`` is CUDA
      (``device=None``: the device ``devices.get_device()`` picks, as ``fit`` does). See
      ``devices.loader_kwargs``.

    Returns ``DataLoaders(train, val, test, info)``; batches are ``X`` (B, C, H, W) float32 and
    ``y`` (B,) int64. Only the training loader shuffles (with a generator seeded by ``seed``).
    """
    train_ds, val_ds, test_ds, info = get_datasets(
        name, root=root, image_size=image_size, val_size=val_size, train_size=train_size, seed=seed,
        augment=augment, download=download, offline=offline)
    kwargs = _loader_kwargs(device, num_workers)
    generator = torch.Generator().manual_seed(seed)
    train_iter = DataLoader(train_ds, batch_size, shuffle=True, generator=generator, **kwargs)
    val_iter = DataLoader(val_ds, batch_size, shuffle=False, **kwargs) if val_ds is not None else None
    test_iter = DataLoader(test_ds, batch_size, shuffle=False, **kwargs)
    return DataLoaders(train_iter, val_iter, test_iter, info)


def get_datasets(name, *, root=None, image_size=None, val_size=0.1, train_size=None, seed=0,
                 augment=False, download=True, offline=None):
    """The datasets behind ``load_data`` (same arguments): ``(train_ds, val_ds, test_ds, info)``.

    Each dataset yields ``(X, y)``: X (C, H, W) float32 normalised with the training statistics,
    y a 0-d int64 tensor. ``train_ds`` and ``val_ds`` are ``Subset``s of the training files
    (``.indices`` tells which); ``val_ds`` is None when ``val_size`` is 0. Only ``train_ds`` is
    augmented.
    """
    requested = _check_name(name)
    root = Path(os.environ.get("DLCOURSE_DATA") or DATA_DIR if root is None else root).expanduser()
    size = _check_size(image_size, _DEFAULT_SIZE[requested])
    offline = _is_offline(offline)
    X_train, y_train, X_test, y_test, classes, used, source = _load_raw(requested, root, size, download, offline)
    train_idx, val_idx = _split_indices(len(y_train), val_size, train_size, seed)
    mean, std = _channel_stats(X_train, train_idx)
    kind = "digits" if used in ("mnist", "digits") else "objects"
    plain = _make_transform(kind, mean, std, size, augment=False)
    train_base = ImageDataset(X_train, y_train, _make_transform(kind, mean, std, size, augment=augment))
    train_ds = Subset(train_base, train_idx.tolist())
    val_ds = Subset(ImageDataset(X_train, y_train, plain), val_idx.tolist()) if len(val_idx) else None
    test_ds = ImageDataset(X_test, y_test, plain)
    info = DatasetInfo(name=used, source=source, classes=tuple(classes), mean=mean, std=std,
                       shape=tuple(X_train.shape[1:]), requested=requested, num_train=len(train_idx),
                       num_val=len(val_idx), num_test=len(y_test))
    return train_ds, val_ds, test_ds, info


def make_shapes(n, *, seed=0, image_size=32):
    """Generate ``n`` images of coloured shapes, 10 balanced classes (``SHAPE_CLASSES``).

    Each image has a random background colour, one shape of a random colour that differs from the
    background by 0.35-0.65 in every channel, a random size (radius 18-34% of the side), a random
    position that keeps the shape inside, and Gaussian pixel noise (std 0.06). Only the shape
    carries the label, so a classifier has to learn shape; colour and position are nuisances.
    Vectorised numpy: 5,000 images of 32x32 take well under a second. Deterministic given ``seed``.

    Inputs:
    - n: number of images.
    - seed: seed of the numpy generator; the same seed gives the same images.
    - image_size: side S of the square images.

    Returns:
    - X: (n, 3, S, S) float32 tensor in [0, 1].
    - y: (n,) int64 tensor of class indices.
    """
    if int(n) < 0 or int(image_size) < 8:
        raise ValueError(f"need n >= 0 and image_size >= 8, got n={n}, image_size={image_size}")
    n, S = int(n), int(image_size)
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))                  # (n,) balanced
    radius = rng.uniform(0.18, 0.34, n).astype(np.float32) * S              # (n,) in pixels
    cx = rng.uniform(radius, S - 1 - radius).astype(np.float32)             # (n,) keeps it inside
    cy = rng.uniform(radius, S - 1 - radius).astype(np.float32)
    grid = np.arange(S, dtype=np.float32)
    u = (grid[None, None, :] - cx[:, None, None]) / radius[:, None, None]   # (n, 1, S) x in radii
    v = (grid[None, :, None] - cy[:, None, None]) / radius[:, None, None]   # (n, S, 1) y, downwards
    mask = np.zeros((n, S, S), dtype=bool)
    for c, inside in enumerate(_SHAPE_MASKS):
        k = y == c
        mask[k] = inside(u[k], v[k])                                         # (n_c, S, S)
    background = rng.uniform(0, 1, (n, 3)).astype(np.float32)               # (n, 3)
    foreground = (background + rng.uniform(0.35, 0.65, (n, 3)).astype(np.float32)) % 1.0
    X = np.where(mask[:, None], foreground[:, :, None, None], background[:, :, None, None])  # (n, 3, S, S)
    X += rng.standard_normal(X.shape, dtype=np.float32) * 0.06
    np.clip(X, 0.0, 1.0, out=X)
    return torch.from_numpy(X), torch.from_numpy(y).long()


# The ten shapes as functions of unit coordinates (u, v): the shape's centre is (0, 0) and its
# radius is 1; v grows downwards as in an image. Each returns a boolean "pixel is inside" mask.
def _polar(u, v):
    return np.sqrt(u * u + v * v), np.arctan2(u, -v)          # angle 0 points up


_SHAPE_MASKS = (
    lambda u, v: u * u + v * v <= 1.0,                                              # circle
    lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.8,                           # square
    lambda u, v: (v <= 0.8) & (np.abs(u) <= (v + 1.0) / 2),                         # triangle
    lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0)),  # cross
    lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.55 ** 2),            # ring
    lambda u, v: (np.abs(u) <= 1.0) & (np.abs(v) <= 0.28),                          # horizontal bar
    lambda u, v: (np.abs(v) <= 1.0) & (np.abs(u) <= 0.28),                          # vertical bar
    lambda u, v: np.abs(u) + np.abs(v) <= 1.0,                                      # diamond
    lambda u, v: _polar(u, v)[0] <= 0.6 + 0.4 * np.cos(5 * _polar(u, v)[1]),        # five-pointed star
    lambda u, v: u * u + (v / 0.55) ** 2 <= 1.0,                                    # ellipse
)


# ----------------------------------------------------------------------------------------------
# Loading the raw images: uint8 (N, C, H, W) tensors
# ----------------------------------------------------------------------------------------------

def _load_raw(name, root, size, download, offline):
    """Returns X_train, y_train, X_test, y_test (uint8 NCHW / int64), classes, used name, source."""
    if name in _FALLBACK:
        try:
            X_train, y_train, X_test, y_test, classes = _load_torchvision(name, root, download and not offline)
            return _resize(X_train, size), y_train, _resize(X_test, size), y_test, classes, name, "torchvision"
        except PermissionError:
            raise                                   # a folder the user must fix, not a reason to fall back
        except Exception as err:                    # no files, no network, corrupted download, ...
            _warn_fallback(name, root, size, _reason(err, download, offline))
        name = _FALLBACK[name]
    if name == "digits":
        return (*_load_digits(size), DIGIT_CLASSES, "digits", "offline")
    X_train, y_train = make_shapes(_SHAPES_SIZES[0], seed=_SHAPES_SEEDS[0], image_size=size)
    X_test, y_test = make_shapes(_SHAPES_SIZES[1], seed=_SHAPES_SEEDS[1], image_size=size)
    return _to_uint8(X_train), y_train, _to_uint8(X_test), y_test, SHAPE_CLASSES, "shapes", "offline"


def _load_torchvision(name, root, download):
    """Read MNIST / CIFAR-10 with torchvision (which checks the files); download only if missing."""
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION_CLASS[name])
    try:
        return _read_torchvision(cls, root, download=False)            # already on disk?
    except RuntimeError:                                                # "not found or corrupted"
        if not download:
            raise
    _check_writable(root)
    with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
        return _read_torchvision(cls, root, download=True)


def _read_torchvision(cls, root, download):
    train = cls(str(root), train=True, download=download)
    test = cls(str(root), train=False, download=download)
    classes = DIGIT_CLASSES if cls.__name__ == "MNIST" else tuple(train.classes)
    return (_to_nchw(train.data), torch.as_tensor(train.targets, dtype=torch.int64),
            _to_nchw(test.data), torch.as_tensor(test.targets, dtype=torch.int64), classes)


def _to_nchw(data):
    """MNIST keeps (N, H, W) uint8, CIFAR-10 (N, H, W, C) numpy: both become (N, C, H, W) uint8."""
    X = torch.as_tensor(data)
    return X[:, None] if X.ndim == 3 else X.permute(0, 3, 1, 2).contiguous()


def _load_digits(size):
    """scikit-learn's 8x8 digits (values 0..16) with a fixed, stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = torch.from_numpy(np.round(digits.images * (255 / 16))).to(torch.uint8)[:, None]  # (1797, 1, 8, 8)
    y = torch.from_numpy(digits.target).long()                                            # (1797,)
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0,
                                           stratify=digits.target)
    X = _resize(X, size)                                                                  # (1797, 1, S, S)
    return X[train_idx], y[train_idx], X[test_idx], y[test_idx]


def _resize(X, size, chunk=8192):
    """Bilinear resize of uint8 (N, C, H, W) images to (N, C, size, size), in chunks to bound memory."""
    if X.shape[-1] == size and X.shape[-2] == size:
        return X
    out = [F.interpolate(part.float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True) for part in X.split(chunk)]
    return _to_uint8(torch.cat(out) / 255)


def _to_uint8(X):
    """Float images in [0, 1] -> uint8 in 0..255 (rounded)."""
    return (X * 255).round_().clamp_(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# Fallback, download and folder helpers
# ----------------------------------------------------------------------------------------------

def _reason(err, download, offline):
    if offline:
        return f"offline mode (offline=True or DLCOURSE_OFFLINE=1) and no usable copy on disk ({_one_line(err)})"
    if not download:
        return f"download=False and no usable copy on disk ({_one_line(err)})"
    return f"the download failed ({_one_line(err)})"


def _one_line(err):
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def _warn_fallback(name, root, size, reason):
    """Print the ONE warning of a fallback: what happened, what is used instead, how to get the data."""
    if name == "mnist":
        instead = (f"scikit-learn's handwritten digits (1,797 real 8x8 scans, resized to {size}x{size}; "
                   "classes 0-9)")
        where = f"{root / 'MNIST' / 'raw'} (train-images-idx3-ubyte etc.)"
    else:
        instead = (f"generated coloured shapes ({_SHAPES_SIZES[0]:,} train + {_SHAPES_SIZES[1]:,} test images, "
                   f"3x{size}x{size}, 10 shape classes)")
        where = f"{root / 'cifar-10-batches-py'} (extracted cifar-10-python.tar.gz)"
    print(f"dlcourse WARNING: {_TITLE[name]} is not available: {reason}.\n"
          f"  Using instead: {instead}. The notebook runs the same way, but its numbers will differ "
          f"from {_TITLE[name]}'s.\n"
          f"  To get the real data: with internet access call load_data({name!r}, offline=False) "
          f"(and unset DLCOURSE_OFFLINE); it downloads into {root}. Or copy the files to {where}.",
          file=sys.stderr)


def _check_writable(root):
    """Fail early, with advice, when the data folder cannot be created or written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as err:
        raise PermissionError(
            f"dlcourse: cannot write to the data folder {root} ({err.strerror or err}). Downloading needs "
            "a writable folder: pass root='some/writable/folder' to load_data, or set the environment "
            "variable DLCOURSE_DATA; or pass offline=True to use the offline stand-in data.") from err


@contextlib.contextmanager
def _socket_timeout(seconds):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _is_offline(offline):
    if offline is not None:
        return bool(offline)
    return os.environ.get("DLCOURSE_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _check_name(name):
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(map(repr, NAMES))}")
    return key


def _check_size(image_size, default):
    if image_size is None:
        return default
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (the side of the square images), got {image_size!r}")
    return image_size


# ----------------------------------------------------------------------------------------------
# Splits, statistics, transforms, loaders
# ----------------------------------------------------------------------------------------------

def _count(size, n, what):
    """A fraction (float in [0, 1)) or a number (int in [0, n]) of n examples -> a number."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise ValueError(f"{what} must be a fraction in [0, 1) or a number of examples, got {size!r}")
    if isinstance(size, float):
        if not 0.0 <= size < 1.0:
            raise ValueError(f"{what}={size} as a fraction must be in [0, 1)")
        return int(round(size * n))
    if not 0 <= size <= n:
        raise ValueError(f"{what}={size} but only {n} examples are available")
    return size


def _split_indices(n, val_size, train_size, seed):
    """Random train / validation indices of n training examples.

    One permutation (seeded) is cut as ``perm[:num_val]`` = validation and
    ``perm[num_val:num_val + num_train]`` = training, so the validation part does not depend on
    ``train_size`` and smaller training subsets are contained in larger ones.
    """
    num_val = _count(val_size, n, "val_size")
    if num_val >= n:
        raise ValueError(f"val_size={val_size} leaves no training examples out of {n}")
    num_train = n - num_val if train_size is None else _count(train_size, n - num_val, "train_size")
    if num_train == 0:
        raise ValueError(f"train_size={train_size} selects no training examples")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[num_val:num_val + num_train], perm[:num_val]


def _channel_stats(X, idx, chunk=1024):
    """Per-channel mean and std of uint8 images X[idx], with pixels scaled to [0, 1].

    mean_c = sum(x) / M,  std_c = sqrt(sum(x^2) / M - mean_c^2),  M = len(idx) * H * W
    (population std, accumulated in float64 over chunks so CIFAR-10 never needs a float copy).
    """
    total = torch.zeros(X.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for part in idx.split(chunk):
        x = X[part].to(torch.float64) / 255                     # (chunk, C, H, W)
        total += x.sum(dim=(0, 2, 3))                           # (C,)
        total_sq += (x * x).sum(dim=(0, 2, 3))
    M = len(idx) * X.shape[2] * X.shape[3]
    mean = total / M
    std = (total_sq / M - mean ** 2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _make_transform(kind, mean, std, size, augment):
    """uint8 (C, H, W) -> [augmentations] -> float32 in [0, 1] -> (x - mean) / std."""
    from torchvision.transforms import v2

    steps = []
    if augment and kind == "digits":
        steps.append(v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)))
    elif augment:
        steps += [v2.RandomCrop(size, padding=max(1, size // 8)), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def _loader_kwargs(device, num_workers):
    """DataLoader options for the device the batches go to (pinned memory on CUDA, persistent
    seeded workers); ``device=None`` means the device ``get_device()`` picks, as ``fit`` does."""
    return loader_kwargs(get_device() if device is None else device, num_workers)
