"""Affinity keys: which loaded models (and warm cache entries) a job would reuse.

A node *loads a model* when one of its outputs is a model port type (one declared with
``model=True``: ``MODEL``, ``VAE``, ``TEXT_ENCODER``, ``TOKENIZER``, ``UPSCALE_MODEL``, and any
a plugin adds, such as ``FAST_STYLE_MODEL``) and none of its inputs is: a checkpoint loader,
an upscaler loader, a plugin's own loader. Callers pass ``registry.types.model_types()``.
Nothing here names a node id.

A job's affinity keys hash its model-loading nodes the way the cache does (node type,
version, literal inputs, upstream hashes) but without fingerprints, so the server can compute
them without the model files. Each worker maps the keys of the jobs it ran to the loaders'
real cache signatures, and reports the keys whose outputs are still in its cache: those
models are resident there and their outputs warm, and the router sends the next job that
needs them to that worker.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from ..cache import FingerprintError, compute_signatures, node_signature
from ..executor import planned_inputs
from ..graph import ValidatedGraph, plan_execution
from ..node import NodeSpec

# Signatures of idempotent nodes do not depend on the run: any fixed nonce will do.
_NONCE = "affinity"


def loads_model(spec: NodeSpec, model_types: Collection[str]) -> bool:
    """True for a node that produces a model from inputs that are not models (a loader).

    ``model_types``: the names of the model port types (``registry.types.model_types()``).
    """
    produces = any(output.type in model_types for output in spec.outputs)
    consumes = any(item.type in model_types for item in spec.inputs)
    return produces and not consumes


def _label(spec: NodeSpec, literals: dict[str, Any]) -> str:
    shown = ", ".join(
        f"{name}={value}" for name, value in literals.items() if isinstance(value, str) and value
    )
    return f"{spec.id}({shown})"


def _loader_keys(
    validated: ValidatedGraph, outputs: Iterable[str] | None, model_types: Collection[str]
) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, list], dict[str, str]]:
    """The plan, its literals and links, and ``{loader node: affinity key}``."""
    plan = plan_execution(validated, outputs)
    loaders = [node_id for node_id in plan if loads_model(validated.specs[node_id], model_types)]
    if not loaders:
        return plan, {}, {}, {}
    literals, links = planned_inputs(validated, plan)
    hashes: dict[str, str] = {}
    for node_id in plan:
        upstream = [(name, hashes[source], out) for name, source, out in links[node_id]]
        spec = validated.specs[node_id]
        hashes[node_id] = node_signature(spec, literals[node_id], upstream, None, _NONCE)
    return plan, literals, links, {node_id: hashes[node_id] for node_id in loaders}


def affinity_keys(
    validated: ValidatedGraph,
    outputs: Iterable[str] | None = None,
    *,
    model_types: Collection[str],
) -> dict[str, str]:
    """``{key: label}`` for the model-loading nodes a run of ``outputs`` would execute.

    The key hashes the loader and everything upstream of it (types, versions, literal inputs)
    but no fingerprint, so the head computes it without the model files, which may exist only
    on the workers. The label is readable: ``diffusion.load_checkpoint(checkpoint=...)``.
    """
    _, literals, _, keys = _loader_keys(validated, outputs, model_types)
    return {key: _label(validated.specs[node], literals[node]) for node, key in keys.items()}


def cache_signatures(
    validated: ValidatedGraph,
    outputs: Iterable[str] | None = None,
    *,
    model_types: Collection[str],
) -> dict[str, str]:
    """``{affinity key: output-cache signature}`` of the model-loading nodes (worker side).

    The signature is what the executor stores the loader's outputs under, so a worker can
    tell whether a model is still warm with ``signature in executor.cache``. Loaders whose
    fingerprint fails, or that are not idempotent (never cached), are left out.
    """
    plan, literals, links, keys = _loader_keys(validated, outputs, model_types)
    if not keys:
        return {}
    try:
        signed = compute_signatures(
            plan, validated.specs, literals.__getitem__, links.__getitem__, _NONCE
        )
    except FingerprintError:
        return {}
    return {
        key: signed.signatures[node] for node, key in keys.items() if node not in signed.volatile
    }
