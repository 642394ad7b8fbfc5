"""dlcourse: the helper library of the dlcourse notebooks.

    import dlcourse as dl

    dl.seed_everything(0)                         # random, numpy, torch: the same numbers every run
    device = dl.get_device()                      # cuda, then mps, then cpu
    data = dl.load_data("mnist", batch_size=128)  # falls back to offline digits without a network
    history = dl.fit(net, data.train, data.val, num_epochs=5, device=device)   # prints: fit: Adam(lr=0.001, ...)
    history = dl.fit(net, data.train, data.val, num_epochs=5, optimizer="sgd", lr=0.05)  # SGD, momentum 0.9
    dl.plot_history(history)

One idea per module, each short enough to read in one sitting:

    devices   where tensors live: device choice, moving batches, mixed precision, channels_last
    runsize   how long a notebook trains: small (CPU), large (GPU), tiny (grader and CI)
    runs      a run registry: config, git commit, metrics and weights of every run, as a table
    seed      reproducibility: seeds for every random number generator, deterministic mode
    data      MNIST / CIFAR-10 through torchvision, and offline stand-ins (digits, shapes)
    metrics   top-k accuracy, computed on the device without waiting for it
    training  fit / evaluate / predict, checkpoints, early stopping, overfitting one batch
    anatomy   what a model costs: parameters, FLOPs, per-layer shapes, receptive field
    device_data  small data sets held on the device, augmented there in batches
    distributed  data-parallel training on several processes (torchrun, DistributedDataParallel)
    gradcheck numerical gradient checks for backward passes you write yourself
    plots     training curves, image grids, filters, feature maps
    bench     `python -m dlcourse.bench`: fit against a hand-written loop
"""
from dlcourse import distributed
from dlcourse.anatomy import count_flops, count_macs, count_parameters, layer_table, receptive_field, summary
from dlcourse.data import DATA_DIR, DataLoaders, DatasetInfo, get_datasets, load_data, make_shapes
from dlcourse.device_data import DeviceLoader, random_crop_flip
from dlcourse.devices import amp_dtype, autocast, channels_last, get_device, loader_kwargs, set_cudnn_benchmark, to_device
from dlcourse.gradcheck import numerical_gradient, rel_error
from dlcourse.metrics import accuracy, num_correct, topk_accuracy
from dlcourse.plots import plot_history, show_feature_maps, show_filters, show_images
from dlcourse import runs
from dlcourse.runs import format_runs, list_runs, start_run
from dlcourse.runsize import run_size
from dlcourse.seed import seed_everything, seed_worker
from dlcourse.training import (EarlyStopping, History, describe_optimizer, evaluate, fit, load_checkpoint,
                               make_optimizer, overfit_one_batch, predict, save_checkpoint)

__version__ = "0.1.0"

__all__ = [
    "DATA_DIR", "DataLoaders", "DatasetInfo", "DeviceLoader", "EarlyStopping", "History", "accuracy",
    "amp_dtype", "autocast", "channels_last", "count_flops", "count_macs", "count_parameters", "describe_optimizer",
    "distributed",
    "evaluate", "fit", "format_runs", "get_datasets", "get_device", "layer_table", "list_runs",
    "load_checkpoint", "load_data", "loader_kwargs", "make_optimizer", "make_shapes", "num_correct", "numerical_gradient",
    "overfit_one_batch", "plot_history", "predict", "random_crop_flip", "receptive_field", "rel_error",
    "run_size", "runs", "save_checkpoint", "seed_everything", "seed_worker", "set_cudnn_benchmark",
    "show_feature_maps", "show_filters", "show_images", "start_run", "summary", "to_device", "topk_accuracy",
]
