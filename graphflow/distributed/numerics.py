"""The torch settings that decide float results, carried from the driver into worker actors.

A seed gives the same image only if every float operation adds its numbers in the same
order. On the CPU that order depends on the intra-op thread count (a parallel reduction or
a oneDNN convolution splits its work by threads), and Ray starts every actor with
``OMP_NUM_THREADS`` set to its CPU reservation (usually 1), while a local run uses all the
cores. So the runner captures this process's settings (:meth:`TorchNumerics.of_this_process`)
and each actor applies them before it computes anything (:meth:`TorchNumerics.apply`): by
construction an actor computes as a local run of the driver would. docs/distributed.md
says what that does and does not make bit-reproducible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TorchNumerics:
    """The process-wide torch settings that can change float results."""

    intra_op_threads: int
    """``torch.get_num_threads()``: threads one operator may split its work over."""
    deterministic_algorithms: bool = False
    """``torch.use_deterministic_algorithms``: only deterministic kernels (mostly CUDA)."""
    deterministic_warn_only: bool = False
    """With deterministic algorithms: warn, rather than raise, where torch has none."""
    float32_matmul_precision: str = "highest"
    """``torch.set_float32_matmul_precision``: ``highest`` (no TF32), ``high``, ``medium``."""
    cudnn_benchmark: bool = False
    """``torch.backends.cudnn.benchmark``: time convolution algorithms and keep the fastest
    (which may differ from process to process)."""
    cudnn_deterministic: bool = False
    """``torch.backends.cudnn.deterministic``: deterministic cuDNN convolutions only."""
    cudnn_allow_tf32: bool = True
    """``torch.backends.cudnn.allow_tf32``: TF32 in cuDNN convolutions on Ampere and later."""

    @classmethod
    def of_this_process(cls) -> TorchNumerics | None:
        """This process's settings (imports torch); None when torch is not installed."""
        try:
            import torch
        except ImportError:
            return None
        cudnn = torch.backends.cudnn
        return cls(
            intra_op_threads=torch.get_num_threads(),
            deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            float32_matmul_precision=torch.get_float32_matmul_precision(),
            cudnn_benchmark=bool(cudnn.benchmark),
            cudnn_deterministic=bool(cudnn.deterministic),
            cudnn_allow_tf32=bool(cudnn.allow_tf32),
        )

    def apply(self) -> None:
        """Make these the settings of this process (an actor calls it before any work)."""
        import torch

        if self.intra_op_threads >= 1 and torch.get_num_threads() != self.intra_op_threads:
            torch.set_num_threads(self.intra_op_threads)
        torch.use_deterministic_algorithms(
            self.deterministic_algorithms, warn_only=self.deterministic_warn_only
        )
        torch.set_float32_matmul_precision(self.float32_matmul_precision)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.allow_tf32 = self.cudnn_allow_tf32

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (reported by every worker in ``GET /api/system``)."""
        return dataclasses.asdict(self)
