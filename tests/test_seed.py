"""dlcourse.seed: every generator is seeded, deterministic mode makes training bit-identical."""
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dlcourse.seed import rng_state, seed_everything, seed_worker, set_rng_state


@pytest.fixture(autouse=True)
def restore_torch_flags():
    flags = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2], flags[3]


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_seeds_python_numpy_and_torch():
    seed_everything(123)
    first = draws()
    seed_everything(123)
    assert draws() == first
    # Independent oracle: each library seeded by hand gives the same numbers.
    assert first[0] == random.Random(123).random()
    assert first[1] == np.random.RandomState(123).rand()
    assert first[2] == torch.rand(3, generator=torch.Generator().manual_seed(123)).tolist()
    seed_everything(124)
    assert draws() != first


def test_returned_generator_is_seeded_and_independent_of_global_state():
    g = seed_everything(7)
    torch.rand(100)                                      # other code draws from the global generator
    assert torch.equal(torch.randperm(10, generator=g),
                       torch.randperm(10, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_deterministic_flags_set_and_reset():
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_seed_worker_derives_numpy_and_random_from_torch_seed():
    torch.manual_seed(2**40 + 5)                    # larger than NumPy accepts: must be reduced
    seed_worker(0)
    expected = (2**40 + 5) % 2**32
    assert np.random.rand() == np.random.RandomState(expected).rand()
    assert random.random() == random.Random(expected).random()


class NumpyNoise(Dataset):
    """An 'augmentation' drawn with NumPy inside the worker process."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor(np.random.rand())


def test_workers_are_reproducible_and_differ_from_each_other():
    def run():
        g = seed_everything(3)
        loader = DataLoader(NumpyNoise(), batch_size=2, num_workers=2, worker_init_fn=seed_worker,
                            generator=g)
        return torch.cat(list(loader))

    a, b = run(), run()
    assert torch.equal(a, b)
    assert len(set(a.tolist())) == 8                 # the two workers did not repeat each other


def short_training_run(seed):
    """A small CNN with dropout, shuffled batches: every source of randomness is used."""
    g = seed_everything(seed, deterministic=True)
    X = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    y = torch.arange(64) % 3
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True, generator=g)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5), nn.Linear(144, 3))
    initial = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        for Xb, yb in loader:
            loss = nn.functional.cross_entropy(net(Xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return initial, [p.detach().clone() for p in net.parameters()]


def test_deterministic_mode_makes_two_training_runs_bit_identical():
    init_a, final_a = short_training_run(0)
    init_b, final_b = short_training_run(0)
    assert all(torch.equal(a, b) for a, b in zip(final_a, final_b))
    assert not all(torch.equal(a, b) for a, b in zip(init_a, final_a))     # training did change them
    _, final_c = short_training_run(1)
    assert not all(torch.equal(a, c) for a, c in zip(final_a, final_c))   # and the seed matters


def test_rng_state_round_trip():
    g = torch.Generator().manual_seed(5)
    seed_everything(11)
    state = rng_state([g])
    expected = draws() + (torch.rand(2, generator=g).tolist(),)
    seed_everything(99)
    g.manual_seed(0)
    set_rng_state(state, [g])
    assert draws() + (torch.rand(2, generator=g).tolist(),) == expected
    with pytest.raises(ValueError, match="generator"):
        set_rng_state(state, [])


def test_seeding_without_deterministic_mode_leaves_the_compiler_unimported():
    # Oracle: a fresh interpreter's sys.modules. seed_everything(0) opens most notebooks; importing
    # torch._inductor there cost 0.8 s for a flag that was already off.
    code = ("import sys, torch\n"
            "from dlcourse.seed import seed_everything\n"
            "seed_everything(0)\n"
            "assert not torch.are_deterministic_algorithms_enabled()\n"
            "print('torch._inductor' in sys.modules)\n"
            "seed_everything(0, deterministic=True)\n"
            "print('torch._inductor' in sys.modules, torch.are_deterministic_algorithms_enabled(),\n"
            "      torch.is_deterministic_algorithms_warn_only_enabled())\n"
            "import torch._inductor.config as c\n"
            "print(c.deterministic)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:3] == ["False", "True True True", "True"]
