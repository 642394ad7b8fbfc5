"""Reproducibility: one call that seeds every random number generator a training run uses.

A training run draws random numbers in many places: weight initialisation and dropout (torch),
shuffling (the DataLoader's sampler), augmentation (torch, NumPy or Python's `random`, possibly in
DataLoader worker processes), and some GPU kernels choose their algorithm or reduction order
at run time. "Fix the random seed!" (the lecture) means all of them:

    g = seed_everything(0, deterministic=True)
    train_iter = DataLoader(ds, batch_size=128, shuffle=True, generator=g, worker_init_fn=seed_worker)

With the same seed, code and machine, two runs then give bit-identical weights on the CPU. On a
GPU, deterministic mode removes the remaining run-to-run differences at some cost in speed.
Different hardware or library versions may still differ in the last bits.

rng_state / set_rng_state capture and restore all generators, so that a checkpoint can resume a
run exactly where it stopped (see training.save_checkpoint).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python's `random`, NumPy, torch (CPU and every CUDA device); optionally force determinism.

    Inputs:
    - seed: a non-negative integer.
    - deterministic: if True, make torch use only deterministic algorithms:
      torch.use_deterministic_algorithms(True) (operations without a deterministic version warn),
      cudnn.deterministic = True, cudnn.benchmark = False (autotuning may pick different
      algorithms in different runs), and CUBLAS_WORKSPACE_CONFIG for deterministic cuBLAS.
      If False, these torch flags go back to their defaults (cudnn.benchmark is left alone).

    Returns:
    - a torch.Generator seeded with `seed`. Pass it to DataLoader(generator=...) so that the
      shuffling order depends on this seed only and not on how many random numbers other code
      has drawn in between.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)          # NumPy accepts 32-bit seeds only
    torch.manual_seed(seed)               # also seeds every CUDA device
    _set_deterministic(deterministic)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _set_deterministic(deterministic: bool) -> None:
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    # warn_only: an operation with no deterministic implementation (some CUDA backward passes)
    # warns instead of stopping a student's notebook halfway through training.
    # use_deterministic_algorithms also sets the flag of torch's compiler (Inductor), which it
    # imports to do so: 0.8 s and 800 modules. Turning off a mode that is already off changes
    # nothing, so that call is skipped, and seed_everything(0) stays cheap.
    if deterministic or torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
    torch.backends.cudnn.deterministic = bool(deterministic)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed NumPy and `random` inside each worker process.

    torch gives each worker its own torch seed (base seed + worker id, where the base seed
    comes from the DataLoader's generator). Augmentations written with NumPy or `random` need
    their generators derived from it too, otherwise they may repeat across workers or runs.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def rng_state(generators=()) -> dict:
    """Snapshot of every random generator: Python, NumPy, torch CPU, CUDA, and `generators`.

    Inputs:
    - generators: torch.Generator objects owned by your code (e.g. a DataLoader's generator).

    Returns:
    - a dict of tensors, numbers and tuples only, so torch.load(weights_only=True) can read it.
    """
    np_state = np.random.get_state()            # ('MT19937', keys uint32 (624,), pos, has_gauss, gauss)
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "generators": [g.get_state() for g in generators],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators=()) -> None:
    """Restore a snapshot made by rng_state (same `generators`, in the same order)."""
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ValueError(f"the snapshot holds {len(saved)} generator state(s) but {len(generators)} "
                         "generator(s) were given")
    for g, s in zip(generators, saved):
        g.set_state(s)


def _as_tuple(obj):
    """random.setstate wants tuples; a round trip through some serialisers gives lists."""
    return tuple(_as_tuple(x) for x in obj) if isinstance(obj, (list, tuple)) else obj
