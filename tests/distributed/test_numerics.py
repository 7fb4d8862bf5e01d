"""TorchNumerics: the torch settings an actor takes on from the driver (no Ray needed)."""

from __future__ import annotations

import subprocess
import sys

from graphflow.distributed.numerics import TorchNumerics


def test_numerics_of_this_process_name_its_intra_op_thread_count():
    import torch

    numerics = TorchNumerics.of_this_process()
    assert numerics is not None
    assert numerics.intra_op_threads == torch.get_num_threads()
    assert (
        numerics.to_dict()["deterministic_algorithms"]
        is torch.are_deterministic_algorithms_enabled()
    )


def test_applied_numerics_become_the_settings_of_the_process():
    # In a fresh process: applying changes process-wide torch state.
    script = (
        "from graphflow.distributed.numerics import TorchNumerics\n"
        "wanted = TorchNumerics(intra_op_threads=3, deterministic_algorithms=True,\n"
        "    deterministic_warn_only=True, float32_matmul_precision='high',\n"
        "    cudnn_benchmark=True, cudnn_deterministic=True, cudnn_allow_tf32=False)\n"
        "wanted.apply()\n"
        "print(TorchNumerics.of_this_process() == wanted)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
