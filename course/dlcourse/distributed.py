"""Data-parallel training on several processes: the same `fit`, launched by `torchrun`.

When one device is too slow, the standard recipe (PyTorch's DistributedDataParallel, DDP) runs
one process per device. Each process holds a full copy of the network and trains on its own
shard of every batch; after `loss.backward()` DDP averages the gradients of all processes
(an all-reduce), so every copy takes the same step and the copies stay identical:

    g = (1/P) * sum_p g_p,    g_p = gradient of the mean loss on process p's B examples

which is the gradient of the mean loss over all P*B examples: P processes with batch B train
like one process with batch P*B. Hence the rule for the learning rate: scaling to P processes
at a fixed per-process batch multiplies the effective batch by P, and the learning rate is
usually scaled with it (linear scaling, Goyal et al., 2017, "Accurate, Large Minibatch SGD:
Training ImageNet in 1 Hour", arXiv:1706.02677), with a warm-up.

We do not start processes or move tensors between them ourselves: `torchrun` starts the
processes and tells each its rank through environment variables, `torch.distributed` does the
communication (gloo on CPUs, NCCL on NVIDIA GPUs). A script becomes data-parallel with three
lines and runs unchanged as one plain process:

    device = dl.distributed.setup()                  # no-op (returns get_device()) without torchrun
    train_iter = dl.distributed.shard(train_iter)    # each process gets its part of every epoch
    history = dl.fit(net, train_iter, val_iter, num_epochs=..., device=device)
    dl.distributed.cleanup()

    torchrun --standalone --nproc_per_node=2 train.py     # two CPU processes (gloo)
    torchrun --standalone --nproc_per_node=8 train.py     # eight GPUs (nccl)

`fit` notices the process group: it wraps the network in DDP, reshuffles the shards every epoch,
sums the metrics of all processes so every process records the same History, and lets only
process 0 print, log to TensorBoard and write checkpoints.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from dlcourse.devices import get_device


def is_distributed() -> bool:
    """True inside a process group (after setup() under torchrun)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 .. world_size() - 1 (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Process 0 prints, logs and saves; the others only compute."""
    return rank() == 0


def setup(backend: str | None = None) -> torch.device:
    """Join the process group that torchrun describes, and return this process's device.

    Without torchrun (no WORLD_SIZE in the environment) nothing happens and the usual
    get_device() comes back, so the same script runs as a single process.

    Inputs:
    - backend: "nccl" (GPUs) or "gloo" (CPUs); default nccl when CUDA is available, else gloo.

    Returns: cuda:<LOCAL_RANK> on a GPU machine (one GPU per process), else the CPU.
    """
    if "WORLD_SIZE" not in os.environ or is_distributed():
        return get_device() if not is_distributed() else _device_of_this_process()
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    return _device_of_this_process()


def _device_of_this_process() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def cleanup() -> None:
    """Leave the process group (call once at the end of the script)."""
    if is_distributed():
        dist.destroy_process_group()


def shard(loader: DataLoader, *, seed: int = 0) -> DataLoader:
    """The same DataLoader, but each process iterates over its own 1/world_size of the data.

    A DistributedSampler deals the (shuffled, if the loader shuffled) indices round-robin:
    process r gets positions r, r + P, r + 2P, ... of the epoch's order. It pads the order
    with repeats so every process gets the same number of batches (the processes must take
    the same number of steps, or the gradient all-reduce would wait forever). fit() calls
    sampler.set_epoch(epoch) so each epoch is shuffled differently, the same way everywhere.

    Without a process group the loader comes back unchanged.
    """
    if not is_distributed():
        return loader
    shuffle = isinstance(loader.sampler, RandomSampler)
    sampler = DistributedSampler(loader.dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle,
                                 seed=seed)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn,
                      persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False)


def set_epoch(loader, epoch: int) -> None:
    """Tell a sharded loader's DistributedSampler which epoch starts (its shuffle seed)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of `tensor` over all processes (in place; itself without a group)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def wrap(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """net inside DistributedDataParallel (it averages gradients during backward); net itself
    without a process group. The wrapper shares net's parameters: training it trains net."""
    if not is_distributed() or isinstance(net, torch.nn.parallel.DistributedDataParallel):
        return net
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
