"""LyCORIS weight changes: LoHa (Hadamard product) and LoKr (Kronecker product) deltas.

They follow the weight-change interface of ``graphflow.runtime.patches`` (``applied``,
``digest``, ``numel``), so a ModelPatch applies and undoes them like a LowRankDelta; the
LoRA file parser (``lora.py``) builds them from ``hada_*`` / ``lokr_*`` tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphflow.runtime.patches import tensor_digest


def _f32(tensor: Any, device: Any) -> Any:
    import torch

    return tensor.to(device, torch.float32)


def _tucker_numel(core: Any, a: Any, b: Any) -> int:
    """Elements of ``einsum("i j ..., i p, j r -> p r ...")``: p · r · the kernel's size."""
    return int(a.shape[1]) * int(b.shape[1]) * int(core[0, 0].numel())


def _digest(tag: str, alpha: float | None, *tensors: Any) -> bytes:
    parts = [tensor_digest(t) if t is not None else b"-" for t in tensors]
    return f"{tag}|{alpha!r}|".encode() + b"".join(parts)


@dataclass(frozen=True, eq=False)
class HadamardDelta:
    """LoHa: ``ΔW = (w1_a @ w1_b) ⊙ (w2_a @ w2_b) · alpha / rank`` (Tucker halves with t1/t2)."""

    w1_a: Any
    w1_b: Any
    w2_a: Any
    w2_b: Any
    t1: Any = None
    t2: Any = None
    alpha: float | None = None

    @property
    def factor(self) -> float:
        """``alpha / rank`` (1 without alpha)."""
        return float(self.alpha) / int(self.w1_b.shape[0]) if self.alpha is not None else 1.0

    def delta(self, shape: Any, device: Any) -> Any:
        """The change itself, shaped like the weight (float32, before strength)."""
        import torch

        halves = []
        for a, b, t in ((self.w1_a, self.w1_b, self.t1), (self.w2_a, self.w2_b, self.t2)):
            a, b = _f32(a, device), _f32(b, device)
            if t is not None:
                half = torch.einsum("i j ..., j r, i p -> p r ...", _f32(t, device), b, a)
            else:
                half = a.flatten(1) @ b.flatten(1)
            halves.append(half.reshape(shape))
        return halves[0] * halves[1] * self.factor

    def applied(self, weight: Any, strength: float) -> Any:
        """``weight`` (float32, changed in place) plus ``strength`` times this delta."""
        return weight.add_(self.delta(weight.shape, weight.device), alpha=strength)

    def digest(self) -> bytes:
        """Content hash of the factors and alpha."""
        return _digest(
            "loha", self.alpha, self.w1_a, self.w1_b, self.w2_a, self.w2_b, self.t1, self.t2
        )

    def numel(self) -> int:
        """Elements of the change (checked against the weight before it is made)."""
        if self.t1 is not None:
            return _tucker_numel(self.t1, self.w1_a, self.w1_b)
        return int(self.w1_a.shape[0]) * int(self.w1_b[0].numel())


@dataclass(frozen=True, eq=False)
class KroneckerDelta:
    """LoKr: ``ΔW = kron(w1, w2) · scale``; each half full or ``a @ b`` (w2 also Tucker).

    ``scale`` is ``alpha / rank`` when a half is factored and alpha is given, else 1 (the
    LyCORIS convention: a full-matrix LoKr has no rank to divide by).
    """

    w1: Any = None
    w1_a: Any = None
    w1_b: Any = None
    w2: Any = None
    w2_a: Any = None
    w2_b: Any = None
    t2: Any = None
    alpha: float | None = None

    @property
    def factor(self) -> float:
        """The scalar applied to the Kronecker product."""
        factored = self.w1_b if self.w1_b is not None else self.w2_b
        if self.alpha is None or factored is None:
            return 1.0
        return float(self.alpha) / int(factored.shape[0])

    def _halves(self, device: Any) -> tuple[Any, Any]:
        import torch

        if self.w1 is not None:
            w1 = _f32(self.w1, device)
        else:
            w1 = _f32(self.w1_a, device) @ _f32(self.w1_b, device)
        if self.w2 is not None:
            w2 = _f32(self.w2, device)
        elif self.t2 is not None:
            w2 = torch.einsum(
                "i j ..., i p, j r -> p r ...",
                _f32(self.t2, device),
                _f32(self.w2_a, device),
                _f32(self.w2_b, device),
            )
        else:
            w2 = _f32(self.w2_a, device) @ _f32(self.w2_b, device).flatten(1)
        return w1.flatten(1), w2.flatten(1)

    def delta(self, shape: Any, device: Any) -> Any:
        """The change itself, shaped like the weight (float32, before strength)."""
        import torch

        w1, w2 = self._halves(device)
        return (torch.kron(w1, w2) * self.factor).reshape(shape)

    def applied(self, weight: Any, strength: float) -> Any:
        """``weight`` (float32, changed in place) plus ``strength`` times this delta."""
        return weight.add_(self.delta(weight.shape, weight.device), alpha=strength)

    def digest(self) -> bytes:
        """Content hash of the factors and alpha."""
        return _digest(
            "lokr",
            self.alpha,
            self.w1,
            self.w1_a,
            self.w1_b,
            self.w2,
            self.w2_a,
            self.w2_b,
            self.t2,
        )

    def numel(self) -> int:
        """Elements of ``kron(w1, w2)`` (checked against the weight before it is made)."""
        if self.w1 is not None:
            first = int(self.w1.numel())
        else:
            first = int(self.w1_a.shape[0]) * int(self.w1_b[0].numel())
        if self.w2 is not None:
            second = int(self.w2.numel())
        elif self.t2 is not None:
            second = _tucker_numel(self.t2, self.w2_a, self.w2_b)
        else:
            second = int(self.w2_a.shape[0]) * int(self.w2_b[0].numel())
        return first * second
