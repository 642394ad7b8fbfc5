"""DeviceLoader and random_crop_flip against a DataLoader and a per-image crop computed by hand."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dlcourse as dl


def _data(n=50):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_unshuffled_batches_equal_a_dataloaders():
    X, y = _data()
    ours = list(dl.DeviceLoader(X, y, 16, device="cpu"))
    theirs = list(DataLoader(TensorDataset(X, y), batch_size=16))
    assert len(ours) == len(theirs) == 4
    for (a, b), (c, d) in zip(ours, theirs):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_shuffled_epochs_cover_every_example_once_in_new_orders_reproducibly():
    X, y = _data()
    loader = dl.DeviceLoader(X, y, 16, shuffle=True, device="cpu", seed=3)
    epochs = [torch.cat([yb for _, yb in loader]) for _ in range(2)]
    firsts = [torch.cat([Xb[:, 0, 0, 0] for Xb, _ in dl.DeviceLoader(X, y, 16, shuffle=True, device="cpu", seed=3)])
              for _ in range(2)]
    assert torch.equal(firsts[0], firsts[1])                         # same seed, same order
    for labels in epochs:
        assert torch.equal(labels.sort().values, y.sort().values)    # every example once
    order = torch.cat([Xb[:, 0, 0, 0] for Xb, _ in loader])
    assert not torch.equal(order, X[:, 0, 0, 0])                     # shuffled
    assert len(dl.DeviceLoader(X, y, 16, drop_last=True, device="cpu")) == 3


def test_random_crop_flip_is_a_shifted_window_of_the_padded_image_maybe_mirrored():
    X, _ = _data(64)
    out = dl.random_crop_flip(X, torch.Generator().manual_seed(1), padding=2)
    assert out.shape == X.shape
    Xp = F.pad(X, (2, 2, 2, 2))
    flipped = 0
    for i in range(len(X)):
        windows = [Xp[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        plain = any(torch.equal(out[i], w) for w in windows)
        mirrored = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or mirrored, i
        flipped += mirrored and not plain
    assert 16 < flipped < 48                                         # about half of 64


def test_fit_trains_on_a_device_loader_and_resumes_it_exactly(tmp_path):
    X, y = _data(64)

    def run(num_epochs, resume):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        train = dl.DeviceLoader(X, y, 16, shuffle=True, augment=dl.random_crop_flip, device="cpu")
        dl.fit(net, train, num_epochs=num_epochs, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
               progress=False, checkpoint_path=tmp_path / "ckpt.pt", resume=resume)
        return net

    straight = run(3, resume=False)
    (tmp_path / "ckpt.pt").unlink()
    run(2, resume=False)
    resumed = run(3, resume=True)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
