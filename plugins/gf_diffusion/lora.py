"""LoRA and friends as model patches: parse a file into one ModelPatch per component.

A LoRA file holds, per layer, tensors whose key suffix says what they are (``lora_down`` /
``lora_up`` / ``alpha`` for kohya-ss and A1111, ``lora_A`` / ``lora_B`` for PEFT, ``hada_*``
for LoHa, ``lokr_*`` for LoKr, ``diff`` / ``diff_b`` for full differences). The layer part
of the key is mapped to a parameter name of *our* module (``lora_keys``) and the tensors
become a weight change (``graphflow.runtime.patches``): LoRA and LoCon a
:class:`~graphflow.runtime.patches.LowRankDelta`, full diffs a ``FullDelta``, LoHa a
:class:`HadamardDelta`, LoKr a :class:`KroneckerDelta` (both in ``lycoris.py``). The
nodes return handles with these patches on their stack; the resident base modules are never
changed (see docs/lora.md).

Layers that match no weight of the model, or whose size does not fit, are reported (count
and first names) in the node's ui and the log, never silently dropped. A file without any
LoRA layer is a :class:`LoraFileError` saying what it looks like.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphflow import Boolean, Choice, Float, NodeContext, NodeResult, Outputs, node
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.models import (
    ModelFileError,
    check_pickle_rule,
    file_version,
    load_state_dict,
)
from graphflow.runtime.patches import (
    FullDelta,
    LowRankDelta,
    ModelPatch,
    PatchError,
)

from .lora_keys import split_component, text_encoder_table, underscored, unet_table
from .lycoris import HadamardDelta, KroneckerDelta
from .types import Model, TextEncoder
from .values import TextEncoders

log = logging.getLogger("graphflow.diffusion")

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".pth", ".bin")
LORAS = ModelCatalog("loras", LORA_SUFFIXES)
SHOWN = 5  # unmatched names shown in a warning

# key suffix → the role of the tensor in its layer (longest suffixes are tried first)
ROLES = {
    ".lora_down.weight": "down",
    ".lora_up.weight": "up",
    ".lora_mid.weight": "mid",
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    ".lora.down.weight": "down",
    ".lora.up.weight": "up",
    ".lora_linear_layer.down.weight": "down",
    ".lora_linear_layer.up.weight": "up",
    "_lora.down.weight": "down",  # old diffusers attention processors (to_q_lora...)
    "_lora.up.weight": "up",
    ".alpha": "alpha",
    ".dora_scale": "dora_scale",
    ".diff": "diff",
    ".diff_b": "diff_b",
    **{f".hada_{name}": f"hada_{name}" for name in ("w1_a", "w1_b", "w2_a", "w2_b", "t1", "t2")},
    **{f".lokr_{name}": f"lokr_{name}" for name in ("w1", "w1_a", "w1_b", "w2", "w2_a", "w2_b")},
    ".lokr_t2": "lokr_t2",
}
_BY_LENGTH = sorted(ROLES, key=len, reverse=True)


class LoraFileError(ModelFileError):
    """A LoRA file that cannot be used (not a LoRA, unreadable)."""


@dataclass
class ParsedLora:
    """A LoRA file's layers: layer name (as the file spells it) → {role: tensor}."""

    layers: dict[str, dict[str, Any]]
    ignored: list[str] = field(default_factory=list)  # keys with no known role


def describe_non_lora(keys: list[str]) -> str:
    """What a state dict without LoRA layers looks like, and where it belongs."""
    joined = "\n".join(keys)
    if "model.diffusion_model." in joined or "conditioner.embedders." in joined:
        return "a Stable Diffusion checkpoint (UNet weights); it belongs in models/checkpoints"
    if any(k.startswith(("string_to_param", "emb_params", "clip_l", "clip_g")) for k in keys):
        return "a textual-inversion embedding; it belongs in models/embeddings"
    if any(k.startswith(("encoder.down", "decoder.up", "first_stage_model.")) for k in keys):
        return "a VAE; it belongs in models/vae"
    if any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        return "a diffusers UNet; it belongs in models/diffusion_models"
    if any("text_model." in k or k.startswith("encoder.layers.") for k in keys):
        return "a text encoder; it belongs in models/text_encoders"
    return f"a file with no LoRA layers (first keys: {', '.join(keys[:SHOWN]) or 'none'})"


def parse_lora(state_dict: dict[str, Any], name: str = "file") -> ParsedLora:
    """Group a LoRA state dict's tensors by layer; a :class:`LoraFileError` if it has none."""
    layers: dict[str, dict[str, Any]] = {}
    ignored = []
    for key, tensor in state_dict.items():
        suffix = next((s for s in _BY_LENGTH if key.endswith(s)), None)
        if suffix is None:
            ignored.append(key)
            continue
        layers.setdefault(key[: -len(suffix)], {})[ROLES[suffix]] = tensor
    if not any(set(roles) - {"alpha"} for roles in layers.values()):
        raise LoraFileError(
            f"{name} is not a LoRA: it looks like {describe_non_lora(list(state_dict))}"
        )
    return ParsedLora(layers, ignored)


def _adapter_settings(metadata: dict[str, str] | None) -> dict[str, dict]:
    """PEFT's adapter config from a diffusers-saved file's metadata, by layer-name prefix.

    diffusers writes ``lora_adapter_metadata`` (JSON): ``{"r", "lora_alpha", ...}`` for one
    model, or the same keys behind ``unet.`` / ``text_encoder.`` / ``text_encoder_2.``.
    """
    raw = (metadata or {}).get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except ValueError:
        return {}
    by_prefix: dict[str, dict] = {}
    for key, value in config.items():
        prefix, _, name = key.rpartition(".")
        by_prefix.setdefault(prefix + "." if prefix else "", {})[name] = value
    return by_prefix


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's ``alpha_pattern`` lookup: the module's own name, else the first key that matches
    its end at a dot boundary as a regular expression (``"to_k"``, ``"attn1.to_out.0"``)."""
    if module in patterns:
        return patterns[module]
    for key, value in patterns.items():
        try:
            if re.match(rf"(.*\.)?({key})$", module):
                return value
        except re.error:
            continue
    return default


def add_peft_alphas(parsed: ParsedLora, metadata: dict[str, str] | None) -> None:
    """Give PEFT layers without an ``.alpha`` tensor the ``lora_alpha`` of their adapter config
    (``alpha_pattern`` per module, ``use_rslora``: alpha/√r), so the scale is alpha / rank."""
    settings = _adapter_settings(metadata)
    for layer, roles in parsed.layers.items():
        if "alpha" in roles or "down" not in roles:
            continue
        prefix = next((p for p in settings if p and layer.startswith(p)), "")
        config = settings.get(prefix)
        if not config or config.get("lora_alpha") is None:
            continue
        module = layer[len(prefix) :]
        patterns = config.get("alpha_pattern") or {}
        alpha = float(_pattern_value(patterns, module, config["lora_alpha"]))
        if config.get("use_rslora"):
            alpha *= float(roles["down"].shape[0]) ** 0.5
        roles["alpha"] = alpha


def _alpha(roles: dict[str, Any]) -> float | None:
    alpha = roles.get("alpha")
    return float(alpha.item() if hasattr(alpha, "item") else alpha) if alpha is not None else None


def _has(roles: dict[str, Any], *names: str) -> bool:
    return all(name in roles for name in names)


def _has_half(roles: dict[str, Any], name: str) -> bool:
    """A LoKr half is there as a full matrix or as both factors."""
    return name in roles or _has(roles, f"{name}_a", f"{name}_b")


def weight_changes(roles: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """{"weight"/"bias": change} for one layer's tensors, or a reason it is not supported."""
    alpha = _alpha(roles)
    changes: dict[str, Any] = {}
    if "mid" in roles or "dora_scale" in roles:
        kind = "CP-decomposed LoCon (lora_mid)" if "mid" in roles else "DoRA (dora_scale)"
        return {}, f"{kind} is not supported"
    if "up" in roles and "down" in roles:
        try:
            changes["weight"] = LowRankDelta(roles["up"], roles["down"], alpha=alpha)
        except PatchError as error:  # up and down of different ranks
            return {}, str(error)
    elif _has(roles, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
        changes["weight"] = HadamardDelta(
            roles["hada_w1_a"], roles["hada_w1_b"], roles["hada_w2_a"], roles["hada_w2_b"],
            roles.get("hada_t1"), roles.get("hada_t2"), alpha,
        )  # fmt: skip
    elif _has_half(roles, "lokr_w1") and _has_half(roles, "lokr_w2"):
        changes["weight"] = KroneckerDelta(
            *(roles.get(f"lokr_{n}") for n in ("w1", "w1_a", "w1_b", "w2", "w2_a", "w2_b", "t2")),
            alpha=alpha,
        )
    elif "diff" in roles:
        changes["weight"] = FullDelta(roles["diff"])
    if "diff_b" in roles:
        changes["bias"] = FullDelta(roles["diff_b"])
    if not changes:
        return {}, f"incomplete layer (has only {', '.join(sorted(roles))})"
    return changes, None


def _module_name(rest: str) -> str:
    """A layer name's module part, spelled as the tables spell it (underscored)."""
    rest = rest.replace(".processor.", ".")  # old diffusers attention-processor LoRAs
    if rest.endswith(".to_out"):
        rest += ".0"
    return underscored(rest)


@dataclass
class LoraPatches:
    """A file's patches for one model: one ModelPatch per component, and what did not fit."""

    patches: dict[Any, ModelPatch]  # "unet" or a text-encoder index → patch
    unmatched: list[str]  # layer names no weight of the model answers to
    unsupported: list[str]  # "layer: reason"


def build_patches(
    parsed: ParsedLora, modules: dict[Any, Any], content_id: str, name: str = "lora"
) -> LoraPatches:
    """Map a parsed file onto ``modules`` ("unet" / text-encoder index → module)."""
    tables = {
        component: (unet_table(module) if component == "unet" else text_encoder_table(module))
        for component, module in modules.items()
    }
    params = {c: dict(m.named_parameters()) for c, m in modules.items()}
    found: dict[Any, dict[str, Any]] = {c: {} for c in modules}
    unmatched: list[str] = []
    unsupported = [f"{key}: not a kind of LoRA tensor graphflow knows" for key in parsed.ignored]
    for layer, roles in parsed.layers.items():
        split = split_component(layer)
        component, rest = split if split else ("unet", layer)
        path = tables[component].get(_module_name(rest)) if component in tables else None
        if path is None:
            unmatched.append(layer)
            continue
        changes, reason = weight_changes(roles)
        if reason:
            unsupported.append(f"{layer}: {reason}")
        for which, change in changes.items():
            key = f"{path}.{which}"
            target = params[component].get(key)
            numel = change.numel()
            if target is None or (numel is not None and numel != target.numel()):
                shape = list(target.shape) if target is not None else "no such weight"
                unsupported.append(f"{layer}: does not fit {key} ({shape})")
                continue
            found[component][key] = change
    patches = {
        c: ModelPatch(changes, name=f"{name}:{c}", content_id=f"{content_id}|{c}|{sorted(changes)}")
        for c, changes in found.items()
        if changes
    }
    return LoraPatches(patches, unmatched, unsupported)


def _read_lora(path: Path, allow_pickle: bool) -> ParsedLora:
    """Parse a LoRA file; an unreadable or non-weights file is a :class:`LoraFileError`."""
    try:
        state = load_state_dict(path, allow_pickle)
        metadata = None
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as handle:
                metadata = handle.metadata()
    except ModelFileError:
        raise
    except Exception as error:  # safetensors and torch.load raise many types for a bad file
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LoraFileError(f"{path.name} is not a readable weights file ({first})") from error
    if not isinstance(state, dict):
        raise LoraFileError(f"{path.name} is not a LoRA: it holds no named tensors")
    parsed = parse_lora(state, path.name)
    add_peft_alphas(parsed, metadata)
    return parsed


class _ParsedCache:
    """The last few parsed files, by (path, file version): a file is read once per version."""

    def __init__(self, size: int = 8):
        self.size = size
        self.lock = threading.Lock()
        self.entries: OrderedDict[tuple, ParsedLora] = OrderedDict()
        self.reads = 0

    def get(self, path: Path, allow_pickle: bool) -> tuple[ParsedLora, str]:
        """The parsed file and a content id that changes whenever the file does."""
        refusal = check_pickle_rule(path.name, allow_pickle)  # asked on every use
        if refusal:
            raise LoraFileError(refusal)
        key = (str(path), file_version(path))
        content_id = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key], content_id
        parsed = _read_lora(path, allow_pickle)
        with self.lock:
            self.reads += 1
            self.entries[key] = parsed
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return parsed, content_id


PARSED = _ParsedCache()


def list_loras() -> list[str]:
    """LoRA files in models/loras."""
    return LORAS.names()


def lora_label(name: str) -> str | None:
    """The dropdown label of a LoRA file ("LoRA rank 8, SDXL"), from its header only and
    cached by file version."""
    from .model_listing import choice_label

    return choice_label(LORAS.path(name))


def _report(name: str, result: LoraPatches, counts: dict[str, int]) -> dict:
    """The node's ui: layers patched per component and warnings for what did not apply."""
    warnings = []
    if result.unmatched:
        shown = ", ".join(result.unmatched[:SHOWN])
        warnings.append(
            f"{name}: {len(result.unmatched)} layer(s) match no weight of this model "
            f"(e.g. {shown}); is it for another model family?"
        )
    if result.unsupported:
        warnings.append(
            f"{name}: {len(result.unsupported)} layer(s) not applied: "
            + "; ".join(result.unsupported[:SHOWN])
        )
    for warning in warnings:
        log.warning("%s", warning)
    ui: dict[str, Any] = {"lora": name, "patched": counts}
    if warnings:
        ui["warnings"] = warnings
    return ui


def apply_lora(
    lora: str,
    model: Any,
    text_encoder: TextEncoders | None,
    strength_model: float,
    strength_text: float,
    allow_pickle: bool,
) -> tuple[Any, TextEncoders | None, dict]:
    """Patched handles for ``lora`` at the strengths (strength 0 leaves a handle as it is)."""
    parsed, content_id = PARSED.get(LORAS.path(lora), allow_pickle)
    encoders = list(text_encoder.encoders) if text_encoder is not None else []
    handles: dict[Any, Any] = {"unet": model, **dict(enumerate(encoders))}
    modules = {c: h.unpatched for c, h in handles.items()}
    result = build_patches(parsed, modules, content_id, name=lora)
    counts = {
        ("model" if c == "unet" else f"text_encoder_{c + 1}"): len(p)
        for c, p in result.patches.items()
    }
    for component, patch in result.patches.items():
        strength = strength_model if component == "unet" else strength_text
        if strength != 0:
            handles[component] = handles[component].with_patches(patch, strength)
    new_text = TextEncoders([handles[i] for i in range(len(encoders))]) if text_encoder else None
    return handles["unet"], new_text, _report(lora, result, counts)


STRENGTH = Float(-100.0, 100.0, step=0.01)


@node("diffusion.load_lora", category="diffusion/loaders", display_name="Load LoRA")
def load_lora(
    model: Model,
    text_encoder: TextEncoder,
    lora: Choice(list_loras, labels=lora_label),
    strength_model: STRENGTH = 1.0,
    strength_text: STRENGTH = 1.0,
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> Outputs(model=Model, text_encoder=TextEncoder):
    """Apply a LoRA (kohya/A1111, PEFT, LoCon, LoHa, LoKr, full diff) from models/loras.

    Returns the model and text encoder(s) with the file's changes on their patch stacks, at
    strength_model / strength_text; the loaded base models are never changed. Chain several
    to stack them in order. Layers that fit no weight of the model are listed as warnings.
    """
    patched, text, ui = apply_lora(
        lora, model, text_encoder, strength_model, strength_text, allow_pickle
    )
    return NodeResult((patched, text), ui=ui)


@node(
    "diffusion.load_lora_model_only",
    category="diffusion/loaders",
    display_name="Load LoRA (model only)",
)
def load_lora_model_only(
    model: Model,
    lora: Choice(list_loras, labels=lora_label),
    strength_model: STRENGTH = 1.0,
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> Model:
    """Apply a LoRA's UNet layers only (its text-encoder layers are not reported as missing)."""
    parsed, content_id = PARSED.get(LORAS.path(lora), allow_pickle)
    unet_only = ParsedLora(
        {k: v for k, v in parsed.layers.items() if (split_component(k) or ("unet",))[0] == "unet"},
        parsed.ignored,
    )
    result = build_patches(unet_only, {"unet": model.unpatched}, content_id, name=lora)
    patch = result.patches.get("unet")
    counts = {"model": len(patch) if patch else 0}
    patched = model.with_patches(patch, strength_model) if patch and strength_model else model
    return NodeResult(patched, ui=_report(lora, result, counts))


def _pickle_check(lora: str, allow_pickle: bool, **_) -> str | None:
    refusal = check_pickle_rule(lora, allow_pickle)
    return f"lora: {refusal}" if refusal else None


def _lora_version(lora: str, **_) -> tuple[int, int]:
    return file_version(LORAS.path(lora))


for _spec in (load_lora, load_lora_model_only):
    _spec.check(_pickle_check)
    _spec.fingerprint(_lora_version)

NODES = [load_lora, load_lora_model_only]
