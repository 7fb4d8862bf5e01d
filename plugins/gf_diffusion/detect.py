"""What a model file is, from its key names and tensor shapes (read without loading it).

Every kind of file is one declaration in :data:`KINDS`: a name, a label, a rule on the file's
keys/shapes, and either the shipped config it loads with (``configs/<config>``) or the models
sub-folder it belongs in. :func:`detect_file` reads a safetensors header (never the tensors;
``.ckpt``/``.pt`` only with the pickle opt-in, weights-only) and returns the first kind whose
rule matches, in declaration order.

The key names are diffusers' own (``single_file_utils.CHECKPOINT_KEY_NAMES``) where it has
them; the shipped configs are the ones diffusers' single-file loader fetches for the same
model types (``infer_diffusers_model_type``), so a file detected here loads the way
``from_single_file`` would load it with the hub's config.

SD 2.x ε vs v-prediction cannot be read from the weights. The rule, as diffusers': a
non-inpainting SD 2.x file is the 768 v-prediction model (SD 2.1), unless its safetensors
metadata says otherwise (``modelspec.prediction_type`` = ``epsilon``, or a
``modelspec.architecture`` naming ``512``) or a pickle's ``global_step`` is 875000 (the
512-base release); then it is the 512 ε model. The loader's config choice overrides it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphflow.runtime.models import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    ModelFileError,
    check_pickle_rule,
)

UNET = "model.diffusion_model."
CONV_IN = UNET + "input_blocks.0.0.weight"
# A cross-attention key every SD UNet has: its last dimension is the text context width.
CONTEXT = UNET + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"


class NotAModelError(ModelFileError):
    """The file is not a model file graphflow can read (not safetensors, unreadable header)."""


class UnsupportedModelError(ModelFileError):
    """The file is a model of a family graphflow recognises but does not run."""


class WrongFolderError(ModelFileError):
    """The file is a model of another kind (a LoRA, a VAE, ...) than its folder holds."""


class ConfigNeededError(ModelFileError):
    """A checkpoint laid out like a known family but of other sizes: it needs a config."""


@dataclass(frozen=True)
class Header:
    """A model file's key → shape table, dtypes and safetensors metadata."""

    shapes: Mapping[str, tuple[int, ...]]
    dtypes: Mapping[str, str]
    metadata: Mapping[str, str]

    def has(self, *keys: str) -> bool:
        """True when every one of ``keys`` is present."""
        return all(k in self.shapes for k in keys)

    def any_prefix(self, *prefixes: str) -> bool:
        """True when some key starts with one of ``prefixes``."""
        return any(k.startswith(prefixes) for k in self.shapes)

    def any_part(self, *parts: str) -> bool:
        """True when some key contains one of ``parts``."""
        return any(p in k for k in self.shapes for p in parts)

    def dim(self, key: str, axis: int) -> int | None:
        """``shape[axis]`` of ``key``, or None when the key is absent."""
        shape = self.shapes.get(key)
        return shape[axis] if shape is not None and len(shape) > abs(axis) else None


@dataclass(frozen=True)
class Kind:
    """One kind of model file: how it is recognised and what graphflow does with it.

    ``config`` names the shipped config folder of a supported checkpoint family; ``folder``
    is the models sub-folder a file of this kind belongs in; ``sizes`` are the shapes the
    shipped config expects (a file with the family's names but other sizes needs its own
    config folder).
    """

    name: str
    label: str
    matches: Callable[[Header], bool]
    folder: str = "checkpoints"
    config: str | None = None
    sizes: Mapping[str, tuple[int, ...]] | None = None


def _text_encoders(h: Header) -> str | None:
    """Which text encoders a checkpoint holds: "clip-l", "openclip-h", "xl", "xl-refiner"."""
    if h.any_prefix("conditioner.embedders.1.model."):
        return "xl"
    if h.any_prefix("conditioner.embedders.0.model."):
        return "xl-refiner"
    if h.any_prefix("cond_stage_model.model."):
        return "openclip-h"
    if h.any_prefix("cond_stage_model.transformer."):
        return "clip-l"
    return None


def _sd(encoders: str, in_channels: int) -> Callable[[Header], bool]:
    """Rule for an SD checkpoint with these text encoders and this many UNet input channels."""

    def rule(h: Header) -> bool:
        return (
            h.has(CONV_IN)
            and _text_encoders(h) == encoders
            and h.dim(CONV_IN, 1) == in_channels
            and not h.any_part(".time_stack.", "time_mixer")
        )

    return rule


def sd2_is_epsilon(h: Header) -> bool:
    """The SD 2.x ε (512-base) rule; see the module docstring."""
    meta = h.metadata
    if meta.get("modelspec.prediction_type", "").lower() == "epsilon":
        return True
    if "512" in meta.get("modelspec.architecture", ""):
        return True
    return meta.get("global_step") == "875000"


def _sd2(epsilon: bool) -> Callable[[Header], bool]:
    base = _sd("openclip-h", 4)
    return lambda h: base(h) and sd2_is_epsilon(h) == epsilon


def _sizes(width: int, in_channels: int, context: int) -> dict[str, tuple[int, ...]]:
    return {CONV_IN: (width, in_channels, 3, 3), CONTEXT: (width * 2, context)}


def _lora(h: Header) -> bool:
    parts = ("lora_down", "lora_up", ".lora_A.", ".lora_B.", "hada_w1_a", "lokr_w1")
    full_diff = any(k.endswith((".diff", ".diff_b")) for k in h.shapes)
    return h.any_part(*parts) or full_diff or h.any_prefix("lora_unet_", "lora_te")


def _embedding(h: Header) -> bool:
    keys = set(h.shapes)
    return len(keys) <= 4 and bool(
        keys & {"emb_params", "clip_l", "clip_g"} or h.any_prefix("string_to_param")
    )


def _vae_alone(h: Header) -> bool:
    vae = h.has("decoder.conv_in.weight") or h.has("first_stage_model.decoder.conv_in.weight")
    return vae and not h.any_prefix(UNET, "down_blocks.", "cond_stage_model.", "conditioner.")


def _text_encoder_alone(h: Header) -> bool:
    names = ("text_model.encoder.", "transformer.resblocks.", "encoder.block.0.layer.0.")
    return h.any_prefix(*names, "text_encoders.", "shared.weight") and not h.any_prefix(UNET)


def _unet_alone(h: Header) -> bool:
    ldm = h.any_prefix(UNET) and not h.any_prefix("first_stage_model.")
    return ldm or h.has("conv_in.weight", "time_embedding.linear_1.weight")


def _upscaler(h: Header) -> bool:
    esrgan = h.has("conv_first.weight") or h.any_prefix("RRDB_trunk.", "model.1.sub.")
    return esrgan or (h.has("model.0.weight", "model.2.weight") and len(h.shapes) < 400)


def _any(*names: str) -> Callable[[Header], bool]:
    return lambda h: any(n in h.shapes for n in names)


SD3 = (
    "joint_blocks.0.context_block.adaLN_modulation.1.bias",
    UNET + "joint_blocks.0.context_block.adaLN_modulation.1.bias",
    "joint_blocks.0.x_block.attn.qkv.weight",
    UNET + "joint_blocks.0.x_block.attn.qkv.weight",
)
FLUX = (
    "double_blocks.0.img_attn.norm.key_norm.scale",
    UNET + "double_blocks.0.img_attn.norm.key_norm.scale",
)

KINDS: tuple[Kind, ...] = (
    # SDXL's layout with an EDM noise schedule: declared first, so it is not taken for SDXL.
    Kind("playground-v2.5", "Playground v2.5 (EDM)", _any("edm_mean")),
    Kind("sd1", "SD 1.x", _sd("clip-l", 4), config="sd1", sizes=_sizes(320, 4, 768)),
    Kind(
        "sd1-inpainting",
        "SD 1.x inpainting",
        _sd("clip-l", 9),
        config="sd1-inpainting",
        sizes=_sizes(320, 9, 768),
    ),
    Kind(
        "sd1-instruct-pix2pix",
        "SD 1.x InstructPix2Pix",
        _sd("clip-l", 8),
        config="sd1-instruct-pix2pix",
        sizes=_sizes(320, 8, 768),
    ),
    Kind(
        "sd2-768-v",
        "SD 2.x 768 v-prediction",
        _sd2(epsilon=False),
        config="sd2-768-v",
        sizes=_sizes(320, 4, 1024),
    ),
    Kind(
        "sd2-512",
        "SD 2.x 512 ε-prediction",
        _sd2(epsilon=True),
        config="sd2-512",
        sizes=_sizes(320, 4, 1024),
    ),
    Kind(
        "sd2-inpainting",
        "SD 2.x inpainting",
        _sd("openclip-h", 9),
        config="sd2-inpainting",
        sizes=_sizes(320, 9, 1024),
    ),
    Kind("sdxl", "SDXL base", _sd("xl", 4), config="sdxl", sizes=_sizes(320, 4, 2048)),
    Kind(
        "sdxl-inpainting",
        "SDXL inpainting",
        _sd("xl", 9),
        config="sdxl-inpainting",
        sizes=_sizes(320, 9, 2048),
    ),
    Kind(
        "sdxl-refiner",
        "SDXL refiner",
        _sd("xl-refiner", 4),
        config="sdxl-refiner",
        sizes={CONV_IN: (384, 4, 3, 3)},
    ),
    # Recognised, not run: what the user is told, and where such a file belongs.
    Kind("sd3", "Stable Diffusion 3 / 3.5 (MMDiT)", _any(*SD3)),
    Kind("flux", "Flux diffusion model", _any(*FLUX), folder="diffusion_models"),
    Kind("svd", "Stable Video Diffusion", lambda h: h.any_part(".time_stack.", "time_mixer")),
    Kind("sd-upscaler", "SD x4 upscaler", _any(UNET + "input_blocks.10.0.skip_connection.bias")),
    Kind(
        "controlnet",
        "ControlNet",
        _any("control_model.time_embed.0.weight", "controlnet_cond_embedding.conv_in.weight"),
        folder="controlnet",
    ),
    Kind("lora", "LoRA / LyCORIS", _lora, folder="loras"),
    Kind("embedding", "textual-inversion embedding", _embedding, folder="embeddings"),
    Kind("vae", "VAE", _vae_alone, folder="vae"),
    Kind("text-encoder", "text encoder", _text_encoder_alone, folder="text_encoders"),
    Kind(
        "unet",
        "UNet / diffusion model without VAE and text encoder",
        _unet_alone,
        folder="diffusion_models",
    ),
    Kind(
        "upscaler",
        "super-resolution (ESRGAN-style) upscale model",
        _upscaler,
        folder="upscale_models",
    ),
)
SUPPORTED = tuple(k for k in KINDS if k.config)


def read_header(path: Path, allow_pickle: bool = False) -> Header:
    """Key shapes, dtypes and metadata of a weights file, without loading its tensors."""
    if path.suffix.lower() in SAFE_SUFFIXES:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                slices = {k: f.get_slice(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
                return Header(
                    {k: tuple(s.get_shape()) for k, s in slices.items()},
                    {k: s.get_dtype() for k, s in slices.items()},
                    f.metadata() or {},
                )
        except Exception as error:  # safetensors raises several types for a bad header
            raise NotAModelError(
                f"{path.name} is not a readable .safetensors model file ({error})"
            ) from error
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        raise NotAModelError(
            f"{path.name} is not a model file graphflow reads (.safetensors, or "
            f"{', '.join(sorted(PICKLE_SUFFIXES))} with the pickle opt-in)"
        )
    return _read_pickle_header(path, allow_pickle)


def _read_pickle_header(path: Path, allow_pickle: bool) -> Header:
    refusal = check_pickle_rule(path.name, allow_pickle)
    if refusal:
        raise ModelFileError(refusal)
    import torch

    try:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or non-weights pickle
        raise NotAModelError(f"{path.name} is not a weights-only model file ({error})") from error
    meta = (
        {"global_step": str(data["global_step"])}
        if isinstance(data, dict) and "global_step" in data
        else {}
    )
    state = data.get("state_dict", data) if isinstance(data, dict) else {}
    state = state if isinstance(state, dict) else {}
    tensors = {k: v for k, v in state.items() if hasattr(v, "shape")}
    if not tensors:
        raise NotAModelError(f"{path.name} holds no tensors: it is not a model file")
    return Header(
        {k: tuple(v.shape) for k, v in tensors.items()},
        {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()},
        meta,
    )


def detect(header: Header) -> Kind | None:
    """The first kind in :data:`KINDS` whose rule matches, else None."""
    return next((kind for kind in KINDS if kind.matches(header)), None)


def supported_labels() -> str:
    """The supported checkpoint families, for messages."""
    return ", ".join(k.label for k in SUPPORTED)


def _mismatched_sizes(kind: Kind, header: Header) -> list[str]:
    return [
        f"{key.removeprefix(UNET)} is {list(header.shapes[key])}, not {list(shape)}"
        for key, shape in (kind.sizes or {}).items()
        if key in header.shapes and tuple(header.shapes[key]) != tuple(shape)
    ]


def checkpoint_family(path: Path, header: Header | None = None, allow_pickle: bool = False) -> Kind:
    """The supported family of a single-file checkpoint in models/checkpoints.

    Raises a one-line :class:`ModelFileError` subclass naming what the file is otherwise:
    unsupported family, a file of another folder's kind, other sizes, or not a model.
    """
    header = header or read_header(path, allow_pickle)
    kind = detect(header)
    if kind is None:
        raise NotAModelError(
            f"{path.name} is not a checkpoint graphflow recognises ({len(header.shapes)} "
            f"tensor(s), none laid out like {supported_labels()})"
        )
    if kind.config is None:
        if kind.folder == "checkpoints":
            raise UnsupportedModelError(
                f"{path.name} is a {kind.label} checkpoint, which graphflow does not run yet "
                f"(supported: {supported_labels()})"
            )
        raise WrongFolderError(
            f"{path.name} is a {kind.label}, not a checkpoint: it belongs in "
            f"models/{kind.folder}/, not models/checkpoints/"
        )
    mismatched = _mismatched_sizes(kind, header)
    if mismatched:
        raise ConfigNeededError(
            f"{path.name} is laid out like {kind.label} but its sizes differ "
            f"({'; '.join(mismatched)}); graphflow never downloads, so it needs a diffusers "
            "config folder (model_index.json, component configs and tokenizer)"
        )
    return kind


def describe(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """What a file is, for listings: kind name, label, folder, dtype, parameter count."""
    return describe_header(read_header(path, allow_pickle))


# What _text_encoders answers → the encoders' usual names, in the order the model uses them.
TEXT_ENCODER_NAMES = {
    "clip-l": ("CLIP ViT-L",),
    "openclip-h": ("OpenCLIP ViT-H",),
    "xl": ("CLIP ViT-L", "OpenCLIP ViT-bigG"),
    "xl-refiner": ("OpenCLIP ViT-bigG",),
}


def checkpoint_text_encoders(header: Header) -> tuple[str, ...]:
    """The text encoders a single-file checkpoint holds, by name (empty: none)."""
    return TEXT_ENCODER_NAMES.get(_text_encoders(header) or "", ())


def describe_header(header: Header) -> dict[str, Any]:
    """:func:`describe` of a header already read."""
    kind = detect(header)
    count = 0
    for shape in header.shapes.values():
        size = 1
        for d in shape:
            size *= d
        count += size
    dtypes = sorted(set(header.dtypes.values()))
    return {
        "kind": kind.name if kind else None,
        "label": kind.label if kind else "unknown",
        "folder": kind.folder if kind else None,
        "dtype": dtypes[0] if len(dtypes) == 1 else "mixed: " + ", ".join(dtypes),
        "parameters": count,
    }
