"""dlcourse.devices: device choice, moving nested batches, autocast, DataLoader settings, channels_last."""
from collections import OrderedDict, namedtuple

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlcourse import devices
from dlcourse.devices import (amp_dtype, autocast, channels_last, get_device, loader_kwargs,
                              set_cudnn_benchmark, to_device)
from dlcourse.seed import seed_worker


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("DLCOURSE_DEVICE", raising=False)


def fake_hardware(monkeypatch, cuda=0, mps=False, bf16=True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(devices, "_mps_available", lambda: mps)


# ---- get_device -------------------------------------------------------------------------------
def test_get_device_matches_what_torch_reports(no_env):
    if torch.cuda.is_available():
        expected = "cuda"
    elif torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert get_device().type == expected


@pytest.mark.parametrize("cuda, mps, expected", [(1, True, "cuda"), (0, True, "mps"), (0, False, "cpu")])
def test_get_device_priority_cuda_then_mps_then_cpu(monkeypatch, no_env, cuda, mps, expected):
    fake_hardware(monkeypatch, cuda=cuda, mps=mps)
    assert get_device() == torch.device(expected)


def test_prefer_and_environment_override(monkeypatch):
    fake_hardware(monkeypatch, cuda=2)
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("cuda:1") == torch.device("cuda", 1)
    assert get_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv("DLCOURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device("cuda") == torch.device("cuda")          # an explicit argument beats the env
    monkeypatch.setenv("DLCOURSE_DEVICE", "auto")
    assert get_device() == torch.device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "tpu0", "meta", "cuda:x"])
def test_unknown_device_string_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="unknown device"):
        get_device(bad)


def test_unavailable_device_is_an_error_not_a_silent_fallback(monkeypatch):
    fake_hardware(monkeypatch, cuda=0, mps=False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device("cuda")
    with pytest.raises(RuntimeError, match="mps"):
        get_device("mps")
    fake_hardware(monkeypatch, cuda=1)
    with pytest.raises(RuntimeError, match="valid indices are 0..0"):
        get_device("cuda:1")
    with pytest.raises(TypeError):
        get_device(0)


# ---- to_device --------------------------------------------------------------------------------
Pair = namedtuple("Pair", "X y")


def test_to_device_walks_nested_structures():
    # The "meta" device holds shapes without data: a real move without needing a GPU.
    X, y, w = torch.randn(2, 3), torch.tensor([1, 0]), torch.ones(4)
    batch = {"pair": Pair(X, y), "list": [w, ("id-7", 3)], "od": OrderedDict(a=w), "name": "cat"}
    moved = to_device(batch, "meta")
    assert moved["pair"].X.device.type == "meta" and moved["pair"].y.device.type == "meta"
    assert isinstance(moved["pair"], Pair) and moved["pair"].X.shape == (2, 3)
    assert isinstance(moved["list"], list) and moved["list"][0].device.type == "meta"
    assert moved["list"][1] == ("id-7", 3) and isinstance(moved["list"][1], tuple)
    assert isinstance(moved["od"], OrderedDict) and moved["od"]["a"].device.type == "meta"
    assert moved["name"] == "cat"
    assert batch["pair"].X.device.type == "cpu"                     # the input is not modified


def test_to_device_same_device_does_not_copy():
    X = torch.randn(3)
    (X2,) = to_device((X,), "cpu")
    assert X2 is X


def test_to_device_non_blocking_only_towards_an_accelerator(monkeypatch):
    seen = []
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("non_blocking"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    to_device([torch.ones(1), torch.ones(1)], "meta")
    to_device([torch.ones(1)], "meta", non_blocking=False)
    to_device([torch.ones(1)], "cpu")          # to the host a non-blocking copy could be read too early
    assert seen == [True, True, False, False]


# ---- AMP --------------------------------------------------------------------------------------
def test_amp_dtype(monkeypatch):
    assert amp_dtype("cpu") is None
    fake_hardware(monkeypatch, cuda=1, bf16=True)
    assert amp_dtype("cuda") == torch.bfloat16
    fake_hardware(monkeypatch, cuda=1, bf16=False)
    assert amp_dtype("cuda") == torch.float16
    assert amp_dtype("mps") is None


def test_autocast_off_on_cpu_by_default_and_bf16_when_asked():
    A, B = torch.randn(4, 5), torch.randn(5, 3)
    with autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
        assert (A @ B).dtype == torch.float32
    with autocast("cpu", enabled=True):
        assert torch.is_autocast_enabled("cpu")
        out = A @ B
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), A @ B, rtol=2e-2, atol=2e-2)


# ---- loader_kwargs, cudnn, channels_last -------------------------------------------------------
def test_loader_kwargs():
    assert loader_kwargs("cpu") == {"num_workers": 0, "pin_memory": False}
    kw = loader_kwargs(torch.device("cuda"), num_workers=2)
    assert kw == {"num_workers": 2, "pin_memory": True, "persistent_workers": True,
                  "worker_init_fn": seed_worker}
    loader = DataLoader(TensorDataset(torch.arange(6.0)), batch_size=2, **loader_kwargs("cpu"))
    assert [b[0].tolist() for b in loader] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_workers"):
            loader_kwargs("cpu", bad)


def test_set_cudnn_benchmark_returns_previous_value():
    before = torch.backends.cudnn.benchmark
    try:
        set_cudnn_benchmark(False)
        assert set_cudnn_benchmark(True) is False
        assert torch.backends.cudnn.benchmark is True
        assert set_cudnn_benchmark(False) is True
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


def test_channels_last_changes_memory_order_not_values():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    X = torch.randn(2, 3, 8, 8)
    expected = net(X)
    assert channels_last(net) is net
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not net[0].weight.is_contiguous()
    X_cl = channels_last(X)
    assert X_cl.is_contiguous(memory_format=torch.channels_last) and X_cl.stride()[1] == 1
    assert torch.equal(X_cl, X)
    torch.testing.assert_close(net(X_cl), expected)
    with pytest.raises(ValueError, match="4-D"):
        channels_last(torch.randn(3, 8, 8))
    with pytest.raises(TypeError):
        channels_last([1, 2])
