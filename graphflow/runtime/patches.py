"""Model patches as plain data: weight changes by parameter name, applied and undone exactly.

A :class:`ModelPatch` maps parameter names of one module (``"down_blocks.0.attentions.0.
transformer_blocks.0.attn1.to_q.weight"``, as ``module.named_parameters()`` spells them) to a
weight change:

- :class:`LowRankDelta` — ``up @ down``, scaled by ``alpha / rank`` when ``alpha`` is given
  and by ``scale`` (what LoRA and LoCon layers store; convolutions are flattened to
  ``(out, rank) @ (rank, in·kh·kw)`` and reshaped to the weight);
- :class:`FullDelta` — a difference of the weight's shape (model merges, full fine-tune diffs);
- :class:`WeightFunction` — any function ``(weight, strength) -> new weight`` for exotic types.

A file parser (LoRA, LyCORIS...) only has to produce these; :class:`~graphflow.runtime.handles.
ModelHandle` applies them when a module is taken for compute and restores the original tensors
afterwards (:func:`apply_patches` / :func:`restore_patches`). Restoring puts the *original
tensor objects* back, never subtracts the delta, so it is bit-exact.

Each patch has a content ``identity`` (a hash of its keys, tensors and scalars): equal
contents give equal identities, whatever objects hold them.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import GraphflowError


class PatchError(GraphflowError):
    """A patch does not fit the module it is applied to (unknown key, wrong shape)."""


def tensor_digest(tensor: Any) -> bytes:
    """A content hash of a tensor: dtype, shape and every byte (any dtype, any device)."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{flat.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(flat.view(torch.uint8).numpy())
    return digest.digest()


@dataclass(frozen=True, eq=False)
class LowRankDelta:
    """The weight change ``up @ down · (alpha / rank if alpha else 1) · scale`` (LoRA)."""

    up: Any  # (out, rank) or, for a convolution, (out, rank, 1, 1)
    down: Any  # (rank, in) or (rank, in, kh, kw)
    alpha: float | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        inner = self.up.numel() // max(int(self.up.shape[0]), 1)
        if inner != int(self.down.shape[0]):
            raise PatchError(
                f"a low-rank change needs up (out, rank) and down (rank, in) of one rank; got up "
                f"{list(self.up.shape)} and down {list(self.down.shape)}"
            )

    @property
    def rank(self) -> int:
        """The inner dimension of ``up @ down``."""
        return int(self.down.shape[0])

    @property
    def factor(self) -> float:
        """The scalar the product is multiplied by (before the patch strength)."""
        return (float(self.alpha) / self.rank if self.alpha is not None else 1.0) * self.scale

    def applied(self, weight: Any, strength: float) -> Any:
        """``weight`` (float32, changed in place) plus ``strength`` times this delta."""
        import torch

        up = self.up.to(weight.device, torch.float32).flatten(1)
        down = self.down.to(weight.device, torch.float32).flatten(1)
        return weight.add_((up @ down).reshape(weight.shape), alpha=strength * self.factor)

    def digest(self) -> bytes:
        """Content hash of the two factors and the scalars."""
        scalars = f"lowrank|{self.alpha!r}|{float(self.scale)!r}".encode()
        return scalars + tensor_digest(self.up) + tensor_digest(self.down)

    def numel(self) -> int:
        """How many elements ``up @ down`` has (checked against the weight)."""
        return int(self.up.shape[0]) * int(self.down[0].numel())


@dataclass(frozen=True, eq=False)
class FullDelta:
    """The weight change ``diff`` (same number of elements as the weight)."""

    diff: Any

    def applied(self, weight: Any, strength: float) -> Any:
        """``weight`` (float32, changed in place) plus ``strength · diff``."""
        import torch

        diff = self.diff.to(weight.device, torch.float32).reshape(weight.shape)
        return weight.add_(diff, alpha=strength)

    def digest(self) -> bytes:
        """Content hash of the difference."""
        return b"full|" + tensor_digest(self.diff)

    def numel(self) -> int:
        """How many elements the difference has."""
        return int(self.diff.numel())


@dataclass(frozen=True, eq=False)
class WeightFunction:
    """Any weight change: ``function(weight, strength)`` returns the new weight.

    ``weight`` is a float32 copy the function may change in place. ``identity`` must name the
    function *and* everything it depends on: it is all the cache sees of this patch.
    """

    function: Callable[[Any, float], Any]
    identity: str

    def applied(self, weight: Any, strength: float) -> Any:
        """The function's result for ``weight`` and ``strength``."""
        return self.function(weight, strength)

    def digest(self) -> bytes:
        """The declared identity."""
        return b"function|" + self.identity.encode()

    def numel(self) -> int | None:
        """Unknown in advance (the result's shape is checked instead)."""
        return None


WeightChange = LowRankDelta | FullDelta | WeightFunction


class ModelPatch:
    """Weight changes for one module, by parameter name: one LoRA file, one merge, ...

    ``content_id`` may replace the content hash when the producer knows a cheaper identity
    that changes whenever the content does (e.g. a file's hash); by default the tensors are
    hashed once, on first use of :attr:`identity`.
    """

    def __init__(
        self,
        changes: Mapping[str, WeightChange],
        *,
        name: str = "",
        content_id: str | None = None,
    ):
        self.changes: Mapping[str, WeightChange] = dict(changes)
        self.name = name
        self._content_id = content_id

    @cached_property
    def identity(self) -> str:
        """A hash of the content: equal for equal changes, different otherwise."""
        if self._content_id is not None:
            return hashlib.blake2b(self._content_id.encode(), digest_size=16).hexdigest()
        digest = hashlib.blake2b(digest_size=16)
        for key in sorted(self.changes):
            digest.update(key.encode() + b"\x1f" + self.changes[key].digest() + b"\x1e")
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.changes)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"ModelPatch({label}{len(self.changes)} weights, id={self.identity[:12]})"


PatchStack = Sequence[tuple[ModelPatch, float]]


def stack_identity(stack: PatchStack) -> str:
    """A hash of a patch stack: each patch's identity and strength, in order ('' if empty)."""
    if not stack:
        return ""
    digest = hashlib.blake2b(digest_size=16)
    for patch, strength in stack:
        digest.update(f"{patch.identity}@{float(strength)!r};".encode())
    return digest.hexdigest()


def _targets(module: Any) -> dict[str, Any]:
    """Every parameter and buffer of ``module`` by name (shared ones under each name)."""
    found = dict(module.named_buffers(remove_duplicate=False))
    found.update(module.named_parameters(remove_duplicate=False))
    return found


def _changes_by_key(
    targets: Mapping[str, Any], stack: PatchStack
) -> dict[str, list[tuple[WeightChange, float]]]:
    """The stack grouped by weight, in order; every key and size checked first."""
    by_key: dict[str, list[tuple[WeightChange, float]]] = {}
    for patch, strength in stack:
        for key, change in patch.changes.items():
            target = targets.get(key)
            if target is None:
                close = difflib.get_close_matches(key, list(targets), n=3)
                hint = f" (weights such as: {', '.join(close)})" if close else ""
                raise PatchError(
                    f"patch {patch.name or patch.identity[:12]}: the model has no "
                    f"weight {key!r}{hint}"
                )
            numel = change.numel()
            if numel is not None and numel != target.numel():
                raise PatchError(
                    f"patch {patch.name or patch.identity[:12]}: {key} has shape "
                    f"{list(target.shape)} ({target.numel()} values) but the change has {numel}"
                )
            by_key.setdefault(key, []).append((change, float(strength)))
    return by_key


def apply_patches(module: Any, stack: PatchStack) -> dict[str, Any]:
    """Change ``module``'s weights by ``stack``; returns the original tensors to restore.

    Each changed weight gets a new tensor (computed in float32, stored in the weight's dtype);
    the original tensor is never written, only set aside, so :func:`restore_patches` is exact.
    Nothing is changed when a key or a size does not fit (:class:`PatchError`).
    """
    import torch

    if not stack:
        return {}
    targets = _targets(module)
    by_key = _changes_by_key(targets, stack)
    originals: dict[str, Any] = {}
    try:
        with torch.no_grad():
            for key, changes in by_key.items():
                tensor = targets[key]
                weight = tensor.detach().to(torch.float32, copy=True)
                for change, strength in changes:
                    weight = change.applied(weight, strength)
                if tuple(weight.shape) != tuple(tensor.shape):
                    raise PatchError(
                        f"a patch changed the shape of {key}: {list(tensor.shape)} → "
                        f"{list(weight.shape)}"
                    )
                originals[key] = tensor.data
                tensor.data = weight.to(tensor.dtype)
    except BaseException:
        restore_patches(module, originals)
        raise
    return originals


def restore_patches(module: Any, originals: Mapping[str, Any]) -> None:
    """Put back the original tensors :func:`apply_patches` set aside.

    Last set aside, first put back: a weight shared under two names (tied weights) that a
    patch changes under both ends with the tensor it had before the first change.
    """
    if not originals:
        return
    targets = _targets(module)
    for key, tensor in reversed(originals.items()):
        targets[key].data = tensor
