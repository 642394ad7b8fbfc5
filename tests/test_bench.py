"""python -m dlcourse.bench: runs end to end and prints the agreed format (speed is not tested here)."""
import os
import re
import subprocess
import sys

import pytest
import torch

from dlcourse import bench


def run_bench(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dlcourse.bench", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.slow
def test_quick_bench_output_format():
    result = run_bench("--quick")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"fit/hand-loop ratio: \d+\.\d\d", lines[-1]), lines[-1]
    assert float(lines[-1].split(": ")[1]) > 0
    assert re.search(r"^  fit +\d+\.\d images/s$", result.stdout, re.M)
    assert re.search(r"^  hand loop +\d+\.\d images/s$", result.stdout, re.M)
    # fit and the hand-written loop did the same arithmetic: same seed, same final weights.
    assert "identical weights after training: yes" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_gpu_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--device", "cuda", "--quick"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "Traceback" not in err


@pytest.mark.slow
def test_amp_comparison_runs_on_any_device():
    # The GPU comparison's code path, shrunk to CPU size (bf16 autocast on the CPU, 32x32 inputs).
    speeds = bench.compare_speedups("cpu", num_batches=1, batch_size=2, image_size=32, compile=False)
    assert list(speeds) == list(bench.SPEEDUPS[:-1])
    assert all(v > 0 for v in speeds.values())


def test_lenet_shapes():
    net = bench.lenet()
    assert net(torch.zeros(3, 1, 32, 32)).shape == (3, 10)
    assert sum(p.numel() for p in net.parameters()) == 61706     # LeNet-5's well-known count
