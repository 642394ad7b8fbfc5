"""dlcourse.data: real on-disk formats round-trip through torchvision, fallbacks, splits, statistics.

Nothing downloads here: the MNIST and CIFAR-10 tests write small files in the real formats (IDX
files; pickled CIFAR batches whose md5 sums torchvision really checks) into a temporary folder,
and every test that could reach the network either runs offline or replaces torchvision's
download function with one that fails the way a missing network does.
"""
import collections
import hashlib
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from sklearn.datasets import load_digits

from dlcourse.data import (DIGIT_CLASSES, NAMES, SHAPE_CLASSES, DatasetInfo, get_datasets, load_data,
                           make_shapes)

WARNING = "dlcourse WARNING"


# ------------------------------------------------------------------------------------------------
# Small data sets written in the real file formats
# ------------------------------------------------------------------------------------------------

def _write_idx(path, array):
    """IDX format (LeCun): magic 0x00000800 | type (0x08 = ubyte) << 0 ... | ndim, big-endian dims, data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    data = {}
    for split, n in (("train", 30), ("t10k", 12)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        data[split] = (images, labels)
    return tmp_path, data


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """cifar-10-batches-py/ with 5 training batches of 4 images, a test batch of 6, and batches.meta.

    torchvision verifies every file against the md5 sums of the real release. We write our own
    files, so we give the CIFAR10 class the md5 sums of OUR files: the check still runs and
    still rejects a file that changes (see test_corrupted_cifar_file_falls_back).
    """
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    batches = {}
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 6)]:
        entry = {"batch_label": name, "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n).tolist(), "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry))
        batches[name] = entry
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}))
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "train_list",
                        [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "meta",
                        {"filename": "batches.meta", "key": "label_names", "md5": _md5(folder / "batches.meta")})
    return tmp_path, batches, names


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to download fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", forbidden)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", forbidden)


def _all_examples(ds):
    """Stack a dataset: X (N, C, H, W), y (N,)."""
    X, y = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(X), torch.stack(y)


def _unnormalise(X, info):
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    return X * std + mean                                       # back to [0, 1]


# ------------------------------------------------------------------------------------------------
# torchvision formats
# ------------------------------------------------------------------------------------------------

def test_mnist_idx_files_round_trip_through_torchvision(mnist_root, no_download, capsys):
    root, data = mnist_root
    train_iter, val_iter, test_iter, info = load_data("mnist", batch_size=5, root=root, val_size=0)
    assert (info.name, info.source, info.requested) == ("mnist", "torchvision", "mnist")
    assert info.classes == DIGIT_CLASSES and info.shape == (1, 28, 28) and val_iter is None
    assert (info.num_train, info.num_val, info.num_test) == (30, 0, 12)
    # statistics of the training images, computed independently with numpy
    train_images = data["train"][0] / 255.0
    assert info.mean == pytest.approx((train_images.mean(),), abs=1e-9)
    assert info.std == pytest.approx((train_images.std(),), abs=1e-9)
    # test pixels and labels in file order (the test loader does not shuffle)
    X, y = map(torch.cat, zip(*test_iter))
    assert X.shape == (12, 1, 28, 28) and X.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(_unnormalise(X, info)[:, 0], torch.from_numpy(data["t10k"][0] / 255.0).float(),
                               atol=1e-5, rtol=0)
    assert y.tolist() == data["t10k"][1].tolist()
    # the shuffled training loader holds every training example once
    X, y = map(torch.cat, zip(*train_iter))
    assert sorted(y.tolist()) == sorted(data["train"][1].tolist())
    assert WARNING not in capsys.readouterr().err


def test_cifar10_pickles_round_trip_with_md5_check(cifar_root, no_download, capsys):
    root, batches, names = cifar_root
    train_ds, val_ds, test_ds, info = get_datasets("cifar10", root=root, val_size=0)
    assert (info.name, info.source, info.classes, info.shape) == ("cifar10", "torchvision", tuple(names), (3, 32, 32))
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    rows = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)])
    expected = torch.from_numpy(rows.reshape(-1, 3, 32, 32) / 255.0).float()
    labels = sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    X, y = _all_examples(train_ds)
    order = torch.tensor(train_ds.indices)
    torch.testing.assert_close(_unnormalise(X, info), expected[order], atol=1e-5, rtol=0)
    assert y.tolist() == [labels[i] for i in order]
    X, y = _all_examples(test_ds)
    test_rows = batches["test_batch"]["data"].reshape(-1, 3, 32, 32) / 255.0
    torch.testing.assert_close(_unnormalise(X, info), torch.from_numpy(test_rows).float(), atol=1e-5, rtol=0)
    assert y.tolist() == batches["test_batch"]["labels"]
    per_channel = rows.reshape(-1, 3, 1024).transpose(1, 0, 2).reshape(3, -1) / 255.0
    assert info.mean == pytest.approx(tuple(per_channel.mean(1)), abs=1e-9)
    assert info.std == pytest.approx(tuple(per_channel.std(1)), abs=1e-9)
    assert WARNING not in capsys.readouterr().err


def test_corrupted_cifar_file_falls_back_to_shapes_with_one_warning(cifar_root, no_download, capsys):
    root, _, _ = cifar_root
    path = root / "cifar-10-batches-py" / "data_batch_3"
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF                                        # one flipped byte: the md5 no longer matches
    path.write_bytes(bytes(blob))
    info = load_data("cifar10", root=root, offline=True).info
    assert (info.name, info.source, info.requested, info.classes) == ("shapes", "offline", "cifar10", SHAPE_CLASSES)
    err = capsys.readouterr().err
    assert err.count(WARNING) == 1
    assert "CIFAR-10 is not available" in err and "corrupted" in err          # what happened
    assert "coloured shapes" in err                                          # what is used instead
    assert "load_data('cifar10', offline=False)" in err and "cifar-10-batches-py" in err   # how to fix


def test_failed_download_falls_back_to_digits_with_one_warning(tmp_path, monkeypatch, capsys):
    timeouts = []

    def no_network(url, *args, **kwargs):                   # what urllib raises without a network
        timeouts.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_network)
    monkeypatch.delenv("DLCOURSE_OFFLINE", raising=False)
    train_iter, val_iter, test_iter, info = load_data("mnist", root=tmp_path, offline=None, download=True)
    assert timeouts and all(t == 30 for t in timeouts)       # a silent network cannot hang the notebook
    assert socket.getdefaulttimeout() is None                # and the global timeout is restored
    assert (info.name, info.source, info.requested, info.shape) == ("digits", "offline", "mnist", (1, 28, 28))
    err = capsys.readouterr().err
    assert err.count(WARNING) == 1 and "download failed" in err and "name resolution" in err
    assert "handwritten digits" in err and str(tmp_path) in err
    X, y = next(iter(train_iter))
    assert X.shape == (128, 1, 28, 28) and y.dtype == torch.int64


def _can_isolate_network():
    unshare = shutil.which("unshare")
    return unshare is not None and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow                                     # a fresh Python process: ~5 s of imports
@pytest.mark.skipif(not _can_isolate_network(), reason="needs `unshare -n` (root on Linux) to cut the network")
def test_real_download_without_network_falls_back(tmp_path):
    """End to end, nothing mocked: torchvision's real download code in a process without a network."""
    script = ("from dlcourse.data import load_data\n"
              "for name in ('mnist', 'cifar10'):\n"
              "    info = load_data(name, root=r'%s', offline=False, device='cpu').info\n"
              "    print(info.requested, info.name, info.source)\n" % tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "DLCOURSE_OFFLINE"}
    run = subprocess.run(["unshare", "-n", sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["mnist digits offline", "cifar10 shapes offline"]
    assert run.stderr.count(WARNING) == 2 and run.stderr.count("the download failed") == 2
    assert not list(tmp_path.rglob("*-ubyte*")) and not list(tmp_path.rglob("*.tar.gz"))


def test_offline_env_uses_files_on_disk_and_never_downloads(mnist_root, no_download, monkeypatch, capsys):
    root, _ = mnist_root
    monkeypatch.setenv("DLCOURSE_OFFLINE", "1")
    monkeypatch.setenv("DLCOURSE_DATA", str(root))             # root=None reads the variable at call time
    assert load_data("mnist", val_size=0).info.source == "torchvision"
    monkeypatch.setenv("DLCOURSE_DATA", str(root / "empty"))
    info = load_data("mnist").info
    assert info.source == "offline" and info.name == "digits"
    err = capsys.readouterr().err
    assert err.count(WARNING) == 1 and "offline mode" in err


def test_unwritable_data_folder_is_a_clear_error(tmp_path, no_download):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot write to the data folder") as excinfo:
        load_data("cifar10", root=blocker / "data", offline=False)
    assert "DLCOURSE_DATA" in str(excinfo.value) and "offline=True" in str(excinfo.value)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as excinfo:
        load_data("imagenet")
    assert all(repr(name) in str(excinfo.value) for name in NAMES)
    assert get_datasets(" MNIST ", offline=True, root="/nonexistent")[3].requested == "mnist"


# ------------------------------------------------------------------------------------------------
# Offline data sets
# ------------------------------------------------------------------------------------------------

def test_digits_are_sklearns_images_at_native_size():
    train_ds, val_ds, test_ds, info = get_datasets("digits", image_size=8, val_size=0.2)
    assert (info.source, info.shape, info.classes) == ("offline", (1, 8, 8), DIGIT_CLASSES)
    assert info.num_train + info.num_val + info.num_test == 1797 and info.num_test == 360
    found = collections.Counter()
    for ds in (train_ds, val_ds, test_ds):
        X, y = _all_examples(ds)
        levels = (_unnormalise(X, info) * 16).round().to(torch.int64)          # back to sklearn's 0..16
        found.update((tuple(img.flatten().tolist()), label) for img, label in zip(levels, y.tolist()))
    digits = load_digits()
    expected = collections.Counter((tuple(img.astype(int).flatten()), int(t))
                                   for img, t in zip(digits.images, digits.target))
    assert found == expected
    assert set(_all_examples(test_ds)[1].tolist()) == set(range(10))           # stratified test split


@pytest.mark.parametrize("image_size", [28, 32])
def test_digits_resized_for_mnist_and_lenet(image_size):
    train_ds, _, test_ds, info = get_datasets("digits", image_size=image_size)
    X, _ = train_ds[0]
    assert X.shape == (1, image_size, image_size) == info.shape


def test_make_shapes_is_deterministic_balanced_and_in_range():
    X, y = make_shapes(200, seed=3)
    assert X.shape == (200, 3, 32, 32) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= X.min() and X.max() <= 1
    assert torch.bincount(y, minlength=10).tolist() == [20] * 10
    X2, y2 = make_shapes(200, seed=3)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    assert not torch.equal(make_shapes(200, seed=4)[0], X)
    assert make_shapes(10, image_size=48)[0].shape == (10, 3, 48, 48)


def _foreground(X):
    """Shape mask of each image: pixels far from the background colour (median of the border)."""
    border = torch.cat([X[:, :, 0], X[:, :, -1], X[:, :, :, 0], X[:, :, :, -1]], dim=2)   # (N, 3, 4S)
    background = border.median(dim=2).values[:, :, None, None]                            # (N, 3, 1, 1)
    return (X - background).abs().sum(1) > 0.5                                           # (N, S, S)


def test_each_shape_class_draws_its_shape():
    """Independent check of the labels: fill ratio and aspect ratio of each image's shape."""
    X, y = make_shapes(400, seed=5, image_size=64)
    mask = _foreground(X)
    rows, cols = mask.any(2), mask.any(1)                                    # (N, S)
    height = rows.sum(1).float()
    width = cols.sum(1).float()
    fill = mask.sum((1, 2)) / (height * width)                                # area / bounding box
    aspect = width / height

    def median(values, name):
        return values[y == SHAPE_CLASSES.index(name)].median().item()
    for name in ("square", "horizontal bar", "vertical bar"):
        assert median(fill, name) > 0.9, name                                 # rectangles fill their box
    for name in ("circle", "ellipse"):
        assert 0.7 < median(fill, name) < 0.86, name                          # pi / 4
    for name in ("triangle", "diamond", "cross", "ring"):
        assert 0.4 < median(fill, name) < 0.66, name                          # about 1/2
    assert median(fill, "star") < 0.45
    assert median(aspect, "horizontal bar") > 2.5 and median(aspect, "vertical bar") < 0.4
    assert 1.5 < median(aspect, "ellipse") < 2.1
    for name in ("circle", "square", "ring", "cross", "diamond"):
        assert 0.85 < median(aspect, name) < 1.18, name
    # a ring has background at its centre of mass, a circle has not
    centre = [(m.nonzero().float().mean(0)).round().long() for m in mask]
    at_centre = torch.stack([m[r, c] for m, (r, c) in zip(mask, centre)])
    assert not at_centre[y == SHAPE_CLASSES.index("ring")].any()
    assert at_centre[y == SHAPE_CLASSES.index("circle")].all()


# ------------------------------------------------------------------------------------------------
# Splits, normalisation, augmentation, loaders
# ------------------------------------------------------------------------------------------------

def test_split_sizes_are_fractions_or_counts_and_subsets_nest():
    train, val, _, info = get_datasets("digits", val_size=0.25)
    assert info.num_val == len(val) == round(0.25 * 1437) and info.num_train == len(train) == 1437 - info.num_val
    assert not set(train.indices) & set(val.indices)
    small, val_small, _, _ = get_datasets("digits", val_size=100, train_size=50)
    big, val_big, _, _ = get_datasets("digits", val_size=100, train_size=500)
    assert (len(small), len(val_small), len(big)) == (50, 100, 500)
    assert val_small.indices == val_big.indices                             # validation does not move
    assert set(small.indices) <= set(big.indices)                           # subsets nest
    assert get_datasets("digits", seed=1)[0].indices != train.indices       # the seed changes the split
    assert get_datasets("digits", val_size=0.25)[0].indices == train.indices
    for bad in (1.0, -0.1, 1437, -1, "10%", True):
        with pytest.raises(ValueError, match="val_size"):
            get_datasets("digits", val_size=bad)
    with pytest.raises(ValueError, match="train_size"):
        get_datasets("digits", val_size=100, train_size=2000)
    with pytest.raises(ValueError, match="image_size"):
        get_datasets("digits", image_size=4)


def test_normalisation_uses_the_training_part_only():
    train, val, _, info = get_datasets("digits", val_size=0.5)
    raw = train.dataset.images
    part = raw[torch.tensor(train.indices)].double() / 255
    assert info.mean == pytest.approx((part.mean().item(),), abs=1e-9)
    assert info.std == pytest.approx((part.std(unbiased=False).item(),), abs=1e-9)
    X, _ = _all_examples(train)
    assert X.mean().item() == pytest.approx(0, abs=1e-5) and X.std(unbiased=False).item() == pytest.approx(1, abs=1e-4)
    X_val, _ = _all_examples(val)
    assert abs(X_val.mean().item()) > 1e-4                                   # val was not used for the mean


def _matches_shift_or_flip(augmented, original, padding):
    """Is `augmented` (C, S, S) a crop of zero-padded `original`, possibly mirrored left-right?"""
    S = original.shape[-1]
    padded = torch.nn.functional.pad(original, [padding] * 4)
    for image in (padded, padded.flip(-1)):
        for dy in range(2 * padding + 1):
            for dx in range(2 * padding + 1):
                if torch.equal(image[:, dy:dy + S, dx:dx + S], augmented):
                    return True
    return False


def test_augmentation_is_crop_and_flip_for_colour_images_only_on_train():
    train, val, test, info = get_datasets("shapes", augment=True, val_size=100)
    images = train.dataset.images                                            # uint8 (N, 3, 32, 32)
    torch.manual_seed(0)
    for i in range(6):
        X, _ = train[i]
        raw = (_unnormalise(X, info) * 255).round().to(torch.uint8)
        assert _matches_shift_or_flip(raw, images[train.indices[i]], padding=4)
    X1, X2 = train[0][0], train[0][0]
    assert not torch.equal(X1, X2)                                            # a new version each read
    assert torch.equal(val[0][0], val[0][0]) and torch.equal(test[0][0], test[0][0])
    names = [type(t).__name__ for t in train.dataset.transform.transforms]
    assert "RandomHorizontalFlip" in names and "RandomCrop" in names


def test_digit_augmentation_is_a_small_affine_without_flip():
    train, _, _, info = get_datasets("digits", augment=True)
    names = [type(t).__name__ for t in train.dataset.transform.transforms]
    assert "RandomAffine" in names and "RandomHorizontalFlip" not in names
    torch.manual_seed(0)
    X1, X2 = train[0][0], train[0][0]
    assert X1.shape == X2.shape == (1, 28, 28) and not torch.equal(X1, X2)
    # a small affine moves pixels a little: the augmented image stays close to the original
    plain = train.dataset.images[train.indices[0]].float() / 255
    moved = _unnormalise(X1, info)
    assert torch.corrcoef(torch.stack([plain.flatten(), moved.flatten()]))[0, 1] > 0.3


def test_loaders_pin_memory_for_cuda_and_shuffle_reproducibly():
    cpu = load_data("digits", batch_size=32, device="cpu")
    assert cpu.train.pin_memory is False and cpu.train.batch_size == 32
    assert load_data("digits", device="cuda").train.pin_memory is True       # building the loader needs no GPU
    first = next(iter(cpu.train))[1]
    assert torch.equal(first, next(iter(load_data("digits", batch_size=32, device="cpu").train))[1])
    assert not torch.equal(first, next(iter(load_data("digits", batch_size=32, device="cpu", seed=1).train))[1])
    assert isinstance(cpu.info, DatasetInfo) and cpu.info.num_classes == 10
