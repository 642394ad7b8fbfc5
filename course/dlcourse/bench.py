"""Benchmark: does `fit` cost anything compared with a hand-written PyTorch loop?

    python -m dlcourse.bench                 # LeNet-5 on the CPU, about 30 s
    python -m dlcourse.bench --quick         # a few seconds (the test suite runs this)
    python -m dlcourse.bench --device cuda   # also: ResNet-18 on the GPU, fp32 against data on the
                                             # device, AMP, channels_last and torch.compile

The same LeNet-5 is trained on the same in-memory data (a TensorDataset of random 1x32x32
images, batch 128) with the same seed, once by `fit` and once by the minimal loop below. Both
runs must end with identical weights: `fit` adds bookkeeping, not different arithmetic.

Machine noise (other processes, CPU frequency) changes speed over time, so the two are measured
alternately, in A-B then B-A order, in many short rounds after a warm-up round. Each round gives
one ratio fit/hand; we report their median and the spread, which shows how noisy the machine
was (on a shared machine single rounds vary by 5-10% even between two runs of the same loop,
while fit's bookkeeping costs about 50 microseconds per batch). torch uses one CPU thread by
default (--threads): multi-threaded kernels slow down erratically when other programs share
the cores.

The last line of the output is always ``fit/hand-loop ratio: <median ratio, 2 decimals>``.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlcourse.devices import get_device, set_cudnn_benchmark
from dlcourse.seed import seed_everything
from dlcourse.training import fit

BATCH_SIZE = 128


def lenet() -> nn.Sequential:
    """LeNet-5 (LeCun et al., 1998), modern variant: ReLU and max-pooling. Input (N, 1, 32, 32)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), nn.ReLU(),       # (N, 6, 28, 28)
        nn.MaxPool2d(2),                                 # (N, 6, 14, 14)
        nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(),      # (N, 16, 10, 10)
        nn.MaxPool2d(2),                                 # (N, 16, 5, 5)
        nn.Flatten(),                                    # (N, 400)
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),           # (N, 120)
        nn.Linear(120, 84), nn.ReLU(),                   # (N, 84)
        nn.Linear(84, 10),                               # (N, 10)
    )


def synthetic_images(num_examples, shape=(1, 32, 32), num_classes=10, seed=0):
    """Random images (num_examples, *shape) and labels (num_examples,): speed does not depend on content."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(num_examples, *shape, generator=g)
    y = torch.randint(0, num_classes, (num_examples,), generator=g)
    return X, y


def _setup(dataset, seed):
    """The same starting point for both loops: seeded weights, optimizer and shuffling."""
    g = seed_everything(seed)
    net = lenet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    train_iter = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, generator=g)
    return net, optimizer, train_iter


def hand_loop(net, optimizer, train_iter, num_epochs=1):
    """The minimal training loop everyone writes first."""
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    for _ in range(num_epochs):
        for X, y in train_iter:
            loss = loss_fn(net(X), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def run_fit(net, optimizer, train_iter, num_epochs=1):
    fit(net, train_iter, num_epochs=num_epochs, optimizer=optimizer, device="cpu", progress=False)


def time_one(kind, dataset, seed=0):
    """Train once with `kind` ("fit" or "hand"); returns (images per second, final net)."""
    net, optimizer, train_iter = _setup(dataset, seed)
    train = run_fit if kind == "fit" else hand_loop
    gc.collect()
    gc.disable()                       # as timeit does: no garbage-collector pause inside one side
    try:
        start = time.perf_counter()
        train(net, optimizer, train_iter)
        seconds = time.perf_counter() - start
    finally:
        gc.enable()
    return len(dataset) / seconds, net


def same_weights(net_a, net_b) -> bool:
    return all(torch.equal(a, b) for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values()))


def compare_fit_and_hand_loop(num_batches, rounds):
    """Alternate fit and the hand loop; returns (fit img/s list, hand img/s list, ratios, same weights)."""
    dataset = TensorDataset(*synthetic_images(num_batches * BATCH_SIZE))
    time_one("fit", dataset)                      # warm-up: allocator, oneDNN kernels, imports
    time_one("hand", dataset)
    fit_ips, hand_ips, ratios, identical = [], [], [], True
    for r in range(rounds):
        order = ("fit", "hand") if r % 2 == 0 else ("hand", "fit")   # A-B, B-A: cancels drift
        result = {kind: time_one(kind, dataset) for kind in order}
        fit_ips.append(result["fit"][0])
        hand_ips.append(result["hand"][0])
        ratios.append(result["fit"][0] / result["hand"][0])
        identical &= same_weights(result["fit"][1], result["hand"][1])
    return fit_ips, hand_ips, ratios, identical


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)     # GPU work is asynchronous: wait before reading the clock


SPEEDUPS = ("fp32", "fp32, data on device", "amp", "amp+channels_last", "amp+channels_last+compile")


def compare_speedups(device, num_batches, batch_size, image_size=224, compile=True):
    """ResNet-18 on 3 x image_size x image_size inputs, images/s for each speed-up, one at a time:

    - "fp32": the baseline, batches from a DataLoader over tensors in host memory (pinned on CUDA)
    - "fp32, data on device": the same data held on the device (DeviceLoader): no per-example
      Python loop, no host-to-device copies
    - "amp": + mixed precision (bfloat16 autocast; float16 + GradScaler on older GPUs)
    - "amp+channels_last": + NHWC memory layout (tensor-core convolutions prefer it)
    - "amp+channels_last+compile": + torch.compile (kernel fusion; compile time excluded)

    All are trained with `fit`, each after a warm-up epoch (cuDNN autotuning, compilation).
    Returns {name: images/s} in that order (without compile when compile=False).
    """
    from torch.utils.data import TensorDataset
    from torchvision.models import resnet18

    from dlcourse.device_data import DeviceLoader
    from dlcourse.devices import loader_kwargs

    device = torch.device(device)
    X, y = synthetic_images(num_batches * batch_size, shape=(3, image_size, image_size), num_classes=1000)
    host = DataLoader(TensorDataset(X, y), batch_size=batch_size, **loader_kwargs(device))
    on_device = DeviceLoader(X, y, batch_size, device=device)
    previous = set_cudnn_benchmark(True)
    speeds = {}
    try:
        for name in SPEEDUPS if compile else SPEEDUPS[:-1]:
            seed_everything(0)
            net = resnet18(weights=None).to(device)
            fast = name.startswith("amp")
            if name.endswith("compile"):
                net = torch.compile(net)
            optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            kwargs = dict(num_epochs=1, optimizer=optimizer, device=device, amp=fast,
                          channels_last="channels_last" in name, progress=False)
            data = host if name == "fp32" else on_device
            fit(net, data, **kwargs)                             # warm-up
            _sync(device)
            start = time.perf_counter()
            fit(net, data, **kwargs)                             # ends by reading the sums: a sync
            _sync(device)
            speeds[name] = num_batches * batch_size / (time.perf_counter() - start)
    finally:
        set_cudnn_benchmark(previous)
    return speeds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlcourse.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: also compare fp32 with data on the device, AMP, channels_last and "
                             "torch.compile on ResNet-18")
    parser.add_argument("--quick", action="store_true", help="tiny run to check that it works")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: multi-threaded kernels slow down "
                             "erratically when other programs use the cores, which hides small differences)")
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds per loop")
    parser.add_argument("--batches", type=int, default=None, help="batches per training run")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 40)
    num_batches = args.batches or (3 if args.quick else 10)
    if rounds < 1 or num_batches < 1 or args.threads < 1:
        parser.error("--rounds, --batches and --threads must be >= 1")
    try:
        device = get_device(args.device)
    except RuntimeError as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    if device.type == "cuda":
        n, bs = (3, 16) if args.quick else (20, 128)
        speeds = compare_speedups(device, n, bs)
        print(f"ResNet-18, 3x224x224, batch {bs}, {torch.cuda.get_device_name(device)} "
              f"(each row adds one speed-up to the row above; ratio against fp32):")
        for name, ips in speeds.items():
            print(f"  {name:27s} {ips:9.1f} images/s  {ips / speeds['fp32']:5.2f}x")

    fit_ips, hand_ips, ratios, identical = compare_fit_and_hand_loop(num_batches, rounds)
    print(f"LeNet-5, 1x32x32, batch {BATCH_SIZE}, CPU, {num_batches} batches per run, "
          f"{rounds} rounds (medians):")
    print(f"  fit        {statistics.median(fit_ips):9.1f} images/s")
    print(f"  hand loop  {statistics.median(hand_ips):9.1f} images/s")
    if len(ratios) >= 4:
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        print(f"  per-round ratios: middle half {q1:.3f} .. {q3:.3f} (the machine's noise), "
              f"min {min(ratios):.3f}, max {max(ratios):.3f}")
    else:
        print(f"  per-round ratios: {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"  identical weights after training: {'yes' if identical else 'NO'}")
    print(f"fit/hand-loop ratio: {statistics.median(ratios):.2f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
