"""Content signatures of nodes, and the output cache keyed by them.

A node's signature hashes its type, version, effective literal inputs, fingerprint and the
signatures (plus output names) of what it links from — never node ids. Computed in
topological order from the immediate upstream signatures only, so the whole pass is linear.
Changing one literal therefore changes exactly that node's signature and its descendants'.

The cache keeps values where they are (a CUDA tensor stays on the GPU), has a byte budget,
evicts by recompute-cost per byte (cheap-to-recompute bytes go first), and can spill device
values to the CPU before dropping them; a spilled value goes back to its device on a hit.
See docs/architecture.md for the invariants.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .disk_cache import DiskCache
from .node import NodeSpec


class FingerprintError(Exception):
    """A node's fingerprint function raised; carries the node id."""

    def __init__(self, node: str, error: BaseException):
        super().__init__(f"fingerprint of node {node!r} failed: {type(error).__name__}: {error}")
        self.node = node
        self.error = error


LOCAL_PREFIX = "~"
"""Starts a signature that holds process-local text (an object's memory address), so it is
valid in this process only: the memory cache uses it, the disk tier never does."""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class _ProcessLocal(Exception):
    """A value's only text form names a memory address (it differs in every process)."""


def _json_default(value: Any) -> Any:
    """Canonical JSON form of a non-JSON literal or fingerprint: the same in every process
    (sets sorted, not in hash order; no ``id()``), else :class:`_ProcessLocal`."""
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(v, sort_keys=True, default=_json_default) for v in value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    text = repr(value)
    if _ADDRESS.search(text):
        raise _ProcessLocal(text)
    return text


def _stable_text(value: Any) -> tuple[str, bool]:
    """(text, portable) of a literal dict or a fingerprint."""
    if value is None:
        return "null", True
    try:
        return json.dumps(value, sort_keys=True, default=_json_default), True
    except _ProcessLocal:
        return repr(value), False
    except (TypeError, ValueError):  # keys json cannot sort or take (mixed types, tuples)
        text = repr(value)
        return text, not _ADDRESS.search(text)


def node_signature(
    spec: NodeSpec,
    literals: dict[str, Any],
    links: Iterable[tuple[str, str, str]],
    fingerprint: object = None,
    nonce: str = "",
) -> str:
    """Hash one node: ``links`` are (input name, upstream signature, output name) triples.

    The same inputs give the same signature in every process (literals and fingerprints are
    hashed in a canonical form), so the disk tier can use it after a restart. When that is
    impossible — a literal or fingerprint whose only text is ``<... at 0x...>``, or an
    upstream signature that is process-local — the result starts with :data:`LOCAL_PREFIX`.
    """
    literal_text, portable = _stable_text(literals)
    fingerprint_text, portable_fingerprint = _stable_text(fingerprint)
    links = sorted(links)
    payload = "\x1f".join(
        (
            spec.id,
            spec.version,
            literal_text,
            "|".join(f"{name}={sig}:{out}" for name, sig, out in links),
            fingerprint_text,
            nonce,
        )
    )
    digest = hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()
    local = not (portable and portable_fingerprint)
    if local or any(sig.startswith(LOCAL_PREFIX) for _, sig, _ in links):
        return LOCAL_PREFIX + digest
    return digest


def is_portable(signature: str) -> bool:
    """True when ``signature`` means the same in every process (the disk tier may use it)."""
    return not signature.startswith(LOCAL_PREFIX)


@dataclass
class SignaturePlan:
    """Signatures of planned nodes, which of them must not be cached (volatile), and the
    fingerprints of the nodes that declare one (element signatures reuse them)."""

    signatures: dict[str, str]
    volatile: set[str]
    fingerprints: dict[str, object] = field(default_factory=dict)


def compute_signatures(
    plan: list[str],
    specs: dict[str, NodeSpec],
    literal_inputs: Callable[[str], dict[str, Any]],
    link_inputs: Callable[[str], Iterable[tuple[str, str, str]]],
    nonce: str,
    known: SignaturePlan | None = None,
) -> SignaturePlan:
    """Signatures for ``plan`` (topological order).

    ``literal_inputs(node)`` gives the effective literals (defaults filled in);
    ``link_inputs(node)`` yields (input name, source node, output name). A node that is not
    idempotent gets the run's ``nonce`` and is volatile, and so is everything downstream.
    ``known`` holds nodes outside ``plan`` that it links from (a run-time expansion links
    to its parent's inputs); the result covers ``plan`` only.
    """
    signatures: dict[str, str] = {}
    volatile: set[str] = set()
    fingerprints: dict[str, object] = {}
    if known is not None:  # rare (one copy per expansion), so plain copies keep this simple
        signatures = dict(known.signatures)
        volatile = set(known.volatile)
    for node_id in plan:
        spec = specs[node_id]
        literals = literal_inputs(node_id)
        links = []
        is_volatile = not spec.idempotent
        for name, source, output in link_inputs(node_id):
            links.append((name, signatures[source], output))
            if source in volatile:
                is_volatile = True
        fingerprint = None
        if spec.fingerprint_function is not None:
            try:
                fingerprint = fingerprints[node_id] = spec.fingerprint_function(**literals)
            except Exception as error:
                raise FingerprintError(node_id, error) from error
        signatures[node_id] = node_signature(
            spec, literals, links, fingerprint, nonce if not spec.idempotent else ""
        )
        if is_volatile:
            volatile.add(node_id)
    if known is not None:
        signatures = {node_id: signatures[node_id] for node_id in plan}
        volatile = volatile.intersection(plan)
    return SignaturePlan(signatures, volatile, fingerprints)


# -- sizes and devices ------------------------------------------------------------------------


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "element_size") and hasattr(value, "device") and hasattr(value, "to")


def _on_device(value: Any) -> bool:
    device = getattr(value, "device", None)
    return getattr(device, "type", "cpu") != "cpu"


def estimate_nbytes(value: Any) -> tuple[int, int]:
    """(total bytes, bytes on an accelerator) held by a value, walking containers iteratively."""
    total = device = 0
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if _is_tensor(item):
            size = item.element_size() * item.nelement()
            total += size
            if _on_device(item):
                device += size
        elif hasattr(item, "nbytes") and isinstance(getattr(item, "nbytes", None), int):
            total += item.nbytes
        elif isinstance(item, (bytes, bytearray, str)):
            total += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
            total += 64 * len(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
            total += 8 * len(item)
        elif hasattr(item, "parameters") and callable(item.parameters):
            # A model: its memory belongs to the model manager (runtime/models.py), which
            # keeps it resident and offloads it; the cache only holds a reference.
            total += 1024
        else:
            total += 32
    return total, device


def _map_tensors(value: Any, move: Callable[[Any], Any]) -> Any:
    if _is_tensor(value):
        return move(value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, move) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, move) for v in value)
    return value


# -- the cache --------------------------------------------------------------------------------


class CacheEntry:
    """Cached outputs of one node execution."""

    __slots__ = ("cost", "device_bytes", "home_device", "nbytes", "on_disk", "outputs", "ui")

    def __init__(self, outputs: dict[str, Any], ui: dict | None, cost: float):
        self.outputs = outputs
        self.ui = ui
        self.cost = cost
        self.nbytes, self.device_bytes = estimate_nbytes(outputs)
        self.home_device: str | None = None  # set while spilled to the CPU
        self.on_disk = False  # also stored in (or read from) the disk tier

    @property
    def score(self) -> float:
        """Seconds of recompute saved per byte kept; the lowest score goes first."""
        return self.cost / max(self.nbytes, 1)


_FROM_SETTINGS: Any = object()


class OutputCache:
    """Node outputs keyed by signature, within a byte budget; optionally backed by a
    :class:`~graphflow.disk_cache.DiskCache` that outlives the process."""

    def __init__(
        self,
        max_bytes: int | None = None,
        max_device_bytes: int | None = None,
        disk: DiskCache | None = _FROM_SETTINGS,
    ):
        """Budgets default to the ``cache_bytes`` / ``cache_device_bytes`` settings; the
        disk tier to the ``disk_cache*`` settings (off unless ``disk_cache`` is on)."""
        if max_bytes is None or max_device_bytes is None or disk is _FROM_SETTINGS:
            from .settings import current_settings

            settings = current_settings()
            max_bytes = settings.cache_bytes if max_bytes is None else max_bytes
            if max_device_bytes is None:
                max_device_bytes = settings.cache_device_bytes
            if disk is _FROM_SETTINGS:
                disk = DiskCache.from_settings(settings)
        self.disk: DiskCache | None = disk
        self.max_bytes = max_bytes
        self.max_device_bytes = max_device_bytes
        self._entries: dict[str, CacheEntry] = {}
        self._lock = threading.RLock()
        self.total_bytes = 0
        self.device_bytes = 0
        self.hits = self.misses = self.evictions = self.spills = 0

    def __contains__(self, signature: str) -> bool:
        return signature in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, signature: str, durable: bool = False) -> CacheEntry | None:
        """The entry for ``signature`` (spilled values are moved back to their device).

        ``durable``: on a miss, look in the disk tier too (a hit there is kept in memory).
        """
        with self._lock:
            entry = self._entries.get(signature)
            if entry is None:
                self.misses += 1
        if entry is None:  # the disk is read outside the lock
            return self._from_disk(signature) if durable and self.disk else None
        with self._lock:
            self.hits += 1
            if entry.home_device is not None:
                home = entry.home_device
                entry.outputs = _map_tensors(entry.outputs, lambda t: t.to(home))
                entry.home_device = None
                entry.device_bytes = estimate_nbytes(entry.outputs)[1]
                self.device_bytes += entry.device_bytes
                self._enforce(protect=signature)
            return entry

    def put(self, signature: str, outputs: dict[str, Any], ui: dict | None, cost: float) -> bool:
        """Store a node's outputs; False when they alone exceed the budget (not stored)."""
        entry = CacheEntry(outputs, ui, cost)
        if entry.nbytes > self.max_bytes:
            return False
        with self._lock:
            self.discard(signature)
            self._entries[signature] = entry
            self.total_bytes += entry.nbytes
            self.device_bytes += entry.device_bytes
            self._enforce(protect=signature)
            return signature in self._entries

    def _from_disk(self, signature: str) -> CacheEntry | None:
        assert self.disk is not None
        hit = self.disk.get(signature)
        if hit is None:
            return None
        self.put(signature, hit.outputs, hit.ui, hit.cost)
        entry = self._entries.get(signature)
        if entry is None:  # larger than the memory budget: served once, not kept
            entry = CacheEntry(hit.outputs, hit.ui, hit.cost)
        entry.on_disk = True
        return entry

    def persist(
        self, signature: str, outputs: dict[str, Any], ui: dict | None, cost: float
    ) -> bool:
        """Store a node's outputs in the disk tier too; False when there is none, or when
        they cannot be stored there (values with no codec stay memory-only, counted)."""
        if self.disk is None or not is_portable(signature):
            return False
        stored = self.disk.put(signature, outputs, ui, cost)
        if stored:
            entry = self._entries.get(signature)
            if entry is not None:
                entry.on_disk = True
        return stored

    def flush(self) -> None:
        """Write the disk tier's pending counters (the executor calls it after each run)."""
        if self.disk is not None:
            self.disk.flush()

    def discard(self, signature: str) -> None:
        """Drop one entry if present."""
        with self._lock:
            entry = self._entries.pop(signature, None)
            if entry is not None:
                self.total_bytes -= entry.nbytes
                self.device_bytes -= entry.device_bytes

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._entries.clear()
            self.total_bytes = self.device_bytes = 0

    def _enforce(self, protect: str) -> None:
        if self.device_bytes > self.max_device_bytes:
            for sig, entry in sorted(self._entries.items(), key=lambda kv: kv[1].score):
                if self.device_bytes <= self.max_device_bytes:
                    break
                if sig != protect and entry.device_bytes:
                    self._spill(entry)
        if self.total_bytes > self.max_bytes:
            for sig, _entry in sorted(self._entries.items(), key=lambda kv: kv[1].score):
                if self.total_bytes <= self.max_bytes:
                    break
                if sig != protect:
                    self.discard(sig)
                    self.evictions += 1

    def _spill(self, entry: CacheEntry) -> None:
        devices = []
        entry.outputs = _map_tensors(
            entry.outputs,
            lambda t: (devices.append(str(t.device)), t.to("cpu"))[1] if _on_device(t) else t,
        )
        entry.home_device = devices[0] if devices else None
        self.device_bytes -= entry.device_bytes
        entry.device_bytes = 0
        self.spills += 1

    def stats(self) -> dict:
        """Entry count, bytes, budgets, hits, misses, evictions and spills."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self.total_bytes,
                "device_bytes": self.device_bytes,
                "max_bytes": self.max_bytes,
                "max_device_bytes": self.max_device_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "spills": self.spills,
                "disk": None if self.disk is None else dict(self.disk.local),
            }
