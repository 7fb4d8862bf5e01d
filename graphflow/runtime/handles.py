"""Model handles: what a node holds instead of a raw module.

``ctx.models.load(...)`` returns a :class:`ModelHandle`. A handle knows its resident part (the
torch module the model manager keeps, sizes and offloads), and its patch stack. Nodes take
the module for compute with one mechanism::

    with model.on_device(ctx.device) as unet:
        ...  # unet is on ctx.device, with the handle's patches applied

``on_device`` moves an offloaded module back through the manager (so its byte budget and LRU
order stay right), applies the handle's patches, and on exit restores the original weight
tensors. :meth:`ModelHandle.with_patches` returns a *new* handle over the same base weights:
the base is never changed as seen by any other handle. Two handles of one base in different
patch states (or on different devices) are never taken at once: a second thread waits until
the first is done; the same thread asking for both gets a :class:`ModelHandleError`.

A loaded dict of components (a checkpoint's UNet, VAE, text encoders, tokenizers...) gives a
composite handle: :meth:`ModelHandle.component` is each module's own handle (patching the
UNet never touches the VAE) and :attr:`ModelHandle.extras` holds the entries that are not
modules (tokenizers, schedulers).

Patches are applied when a module is taken and removed afterwards; no patched copy is kept
(applying a LoRA-sized stack costs a few matrix products per weight, small next to sampling).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from ..errors import GraphflowError
from .patches import ModelPatch, PatchStack, WeightChange, apply_patches, restore_patches
from .patches import stack_identity as _stack_identity


class ModelHandleError(GraphflowError):
    """A handle was used in a way it cannot be (wrong component, conflicting takes...)."""


@dataclass
class ModelPart:
    """What a loader may return for a module that nodes call through another object.

    ``module`` is the torch module the manager moves, sizes and patches (patch keys are its
    parameter names); ``view`` is what ``on_device`` hands out (e.g. a spandrel descriptor
    around the network), the module itself when None.
    """

    module: Any
    view: Any = None


def is_module(value: Any) -> bool:
    """True for torch modules (anything with a callable ``parameters``)."""
    return callable(getattr(value, "parameters", None))


def normalised_device(device: Any) -> Any:
    """``device`` as a torch.device with its index filled in (``cuda`` → ``cuda:0``)."""
    import torch

    target = torch.device(device)
    if target.type == "cuda" and target.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return target


def _first_tensor(module: Any) -> Any:
    for tensor in module.parameters():
        return tensor
    for tensor in module.buffers():
        return tensor
    return None


class Residency(Protocol):
    """What a handle needs from whoever keeps its part resident (the model manager)."""

    lock: Any  # a threading.RLock shared by every part it holds

    def part_for(self, key: Any, module: Any, label: str) -> ResidentPart:
        """The part that holds ``module`` (None for a weightless model) under ``key``."""
        ...

    def admit(self, part: ResidentPart, device: Any) -> None:
        """Count ``part`` as resident again if it was dropped, make room, move it to device."""
        ...


class Unmanaged:
    """The residency of handles made by :meth:`ModelHandle.of`: no budget, moves on demand.

    One serves the whole process and remembers each module's part while a handle holds it, so
    every handle made of one module shares one take state (a patched take of one excludes
    takes of the others, as for a manager's handles).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        # id(module) → its part; an entry lives as long as its part, which holds the module,
        # so an id here always names a live module
        self._parts: weakref.WeakValueDictionary[int, ResidentPart] = weakref.WeakValueDictionary()
        self._serial = itertools.count()

    def part_for(self, key: Any, module: Any, label: str) -> ResidentPart:
        """The live part of ``module`` if a handle holds one, else a new one."""
        with self.lock:
            part = self._parts.get(id(module)) if module is not None else None
            if part is None:
                part = ResidentPart(("unmanaged", next(self._serial)), module, label, self.lock)
                if module is not None:
                    self._parts[id(module)] = part
            return part

    def admit(self, part: ResidentPart, device: Any) -> None:
        """Move the part to ``device``."""
        part.move(device)


class ResidentPart:
    """One module a residency holds, and the state of its current takes (internal)."""

    def __init__(self, key: Any, module: Any, label: str, lock: Any):
        self.key = key  # the residency's key for this part
        self.identity = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
        self.module = module
        self.label = label
        self.nbytes = (
            sum(p.numel() * p.element_size() for p in module.parameters())
            if module is not None
            else 0
        )
        self.owner: Any = None  # the residency's record of the model this part belongs to
        self.changed = threading.Condition(lock)
        self.takers = 0
        self.holders: dict[int, int] = {}  # thread id → takes held
        self.state: tuple[str, str] | None = None  # (device, stack identity) while taken
        self.originals: dict[str, Any] = {}

    @property
    def device(self) -> Any:
        """The torch device the module's weights are on now (None without weights)."""
        tensor = _first_tensor(self.module) if self.module is not None else None
        return tensor.device if tensor is not None else None

    def move(self, device: Any) -> None:
        """Move the module to ``device`` unless it is there already."""
        target = normalised_device(device)
        if self.module is not None and self.device not in (None, target):
            self.module.to(target)

    @contextmanager
    def taken(self, residency: Residency, device: Any, stack: PatchStack) -> Iterator[Any]:
        """The module on ``device`` with ``stack`` applied, for the duration of the block."""
        state = (str(normalised_device(device)), _stack_identity(stack))
        me = threading.get_ident()
        with self.changed:
            while self.takers and self.state != state:
                if self.holders.get(me):
                    raise ModelHandleError(
                        f"{self.label} is already taken by this thread with other patches or "
                        "on another device; finish with one before taking the other"
                    )
                self.changed.wait()
            if not self.takers:
                residency.admit(self, device)
                if stack and self.module is None:
                    raise ModelHandleError(f"{self.label} has no weights to patch")
                self.originals = apply_patches(self.module, stack) if stack else {}
                self.state = state
            self.takers += 1
            self.holders[me] = self.holders.get(me, 0) + 1
        try:
            yield self.module
        finally:
            with self.changed:
                self.takers -= 1
                self.holders[me] -= 1
                if not self.holders[me]:
                    del self.holders[me]
                if not self.takers:
                    restore_patches(self.module, self.originals)
                    self.originals = {}
                    self.state = None
                    self.changed.notify_all()


class ModelHandle:
    """A loaded model as nodes hold it: a resident base module plus a patch stack.

    Take the module with :meth:`on_device`; derive patched handles with :meth:`with_patches`;
    read configuration (never compute) through :attr:`unpatched`. :attr:`identity` is stable
    for equal bases and equal patch stacks, so a fingerprint may include it.
    """

    __slots__ = (
        "_components",
        "_extras",
        "_identity",
        "_part",
        "_residency",
        "_stack",
        "_view",
        "label",
    )

    def __init__(
        self,
        residency: Residency,
        label: str,
        *,
        part: ResidentPart | None = None,
        view: Any = None,
        components: Mapping[str, ModelHandle] | None = None,
        extras: Mapping[str, Any] | None = None,
        stack: PatchStack = (),
        base_identity: str = "",
    ):
        self._residency = residency
        self.label = label
        self._part = part
        self._view = view  # what on_device hands out instead of the module (None: the module)
        self._components = dict(components or {})
        self._extras = MappingProxyType(dict(extras or {}))
        self._stack = tuple(stack)
        base = part.identity if part is not None else base_identity
        self._identity = (
            hashlib.blake2b(
                f"{base}+{_stack_identity(self._stack)}".encode(), digest_size=16
            ).hexdigest()
            if self._stack
            else base
        )

    @classmethod
    def of(cls, value: Any, label: str = "model") -> ModelHandle:
        """A handle over a model no manager holds (tests, scripts): moved on demand only.

        Handles made of one module (by several calls) share its take state, so one of them
        taken with patches is never seen unpatched through another.
        """
        key = ("unmanaged", label, next(_UNMANAGED_SERIAL))  # a composite's own identity
        return build_handle(key, value, label, _UNMANAGED)[0]

    # -- what it is -------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """Hash of the base (kind, file, version, options, component) and the patch stack."""
        return self._identity

    @property
    def patches(self) -> tuple[tuple[ModelPatch, float], ...]:
        """The patch stack: (patch, strength) pairs, applied in order."""
        return self._stack

    @property
    def components(self) -> tuple[str, ...]:
        """Names of a composite handle's module components (empty for a single module)."""
        return tuple(self._components)

    def component(self, name: str) -> ModelHandle:
        """The handle of one module component (the same object every time)."""
        try:
            return self._components[name]
        except KeyError:
            raise ModelHandleError(
                f"{self.label} has no component {name!r} (it has: "
                f"{', '.join(self._components) or 'none'})"
            ) from None

    @property
    def extras(self) -> Mapping[str, Any]:
        """A composite's entries that are not modules (tokenizers, schedulers...), read-only;
        on a single module, what :meth:`with_extras` attached (kept by :meth:`with_patches`)."""
        return self._extras

    @property
    def unpatched(self) -> Any:
        """The base module (or its view), unpatched, wherever it is now: read config only."""
        part = self._single("read")
        return part.module if self._view is None else self._view

    @property
    def device(self) -> Any:
        """The torch device the base weights are on now (None for weightless models)."""
        return self._single("locate").device

    @property
    def nbytes(self) -> int:
        """Bytes of the base parameters (all components for a composite)."""
        if self._part is not None:
            return self._part.nbytes
        return sum(handle.nbytes for handle in self._components.values())

    # -- deriving and taking ----------------------------------------------------------------

    def with_patches(
        self, patches: ModelPatch | Mapping[str, WeightChange], strength: float = 1.0
    ) -> ModelHandle:
        """A new handle over the same base weights with ``patches`` added to the stack."""
        part = self._single("patch")
        if not isinstance(patches, ModelPatch):
            patches = ModelPatch(patches)
        stack = (*self._stack, (patches, float(strength)))
        return ModelHandle(
            self._residency,
            self.label,
            part=part,
            view=self._view,
            extras=self._extras,
            stack=stack,
        )

    def with_extras(self, extras: Mapping[str, Any]) -> ModelHandle:
        """The same module and patch stack with ``extras`` merged into :attr:`extras`.

        For facts that travel with a model without being weights (a UNet's noise schedule,
        its prediction type); the identity is unchanged, so say nothing here that changes
        what the model computes.
        """
        part = self._single("describe")
        merged = {**self._extras, **extras}
        return ModelHandle(
            self._residency,
            self.label,
            part=part,
            view=self._view,
            extras=merged,
            stack=self._stack,
        )

    @contextmanager
    def on_device(self, device: Any) -> Iterator[Any]:
        """The module (or view) on ``device`` with this handle's patches applied.

        An offloaded module is moved back through its manager; the original weights are
        restored when the block ends. Blocks of handles in the same state may overlap.
        """
        part = self._single("take")
        with part.taken(self._residency, device, self._stack) as module:
            yield module if self._view is None else self._view

    def _single(self, verb: str) -> ResidentPart:
        if self._part is None:
            raise ModelHandleError(
                f"cannot {verb} {self.label} as a whole: it has components "
                f"({', '.join(self._components) or 'none'}); use .component(name)"
            )
        return self._part

    def __repr__(self) -> str:
        if self._part is None:
            return f"ModelHandle({self.label}, components={list(self._components)})"
        patches = f", {len(self._stack)} patch(es)" if self._stack else ""
        return f"ModelHandle({self.label}, {self._part.device}{patches}, id={self.identity[:12]})"


def build_handle(
    key: Any, value: Any, label: str, residency: Residency
) -> tuple[ModelHandle, list[ResidentPart]]:
    """The handle for what a loader returned, and the parts the residency must track.

    A module or :class:`ModelPart` is one part; a dict gives a composite whose module (or
    ModelPart) entries are parts and whose other entries are extras (of the composite and of
    each component); anything else is a weightless part handed out as it is.
    """
    if isinstance(value, dict):
        components, parts = {}, []
        extras = {
            name: item
            for name, item in value.items()
            if not (is_module(item) or isinstance(item, ModelPart))
        }
        for name, item in value.items():
            if name not in extras:
                handle, (part,) = build_handle((key, name), item, f"{label}/{name}", residency)
                # A component sees its composite's facts (a UNet its scheduler).
                components[name] = handle.with_extras(extras) if extras else handle
                parts.append(part)
        base = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
        handle = ModelHandle(
            residency, label, components=components, extras=extras, base_identity=base
        )
        return handle, parts
    if isinstance(value, ModelPart):
        module, view = value.module, value.view
    elif is_module(value):
        module, view = value, None
    else:
        module, view = None, value
    part = residency.part_for(key, module, label)
    return ModelHandle(residency, label, part=part, view=view), [part]


_UNMANAGED = Unmanaged()
_UNMANAGED_SERIAL = itertools.count()


def compute_device(handle: ModelHandle, ctx: Any) -> Any:
    """Where a node takes ``handle``: the run's device (``ctx.device``), or, called without a
    context (as tests and scripts do), wherever the model is now."""
    return ctx.device if ctx is not None else handle.device
