"""Load text encoders alone, from models/text_encoders (and models/clip, as ComfyUI lists it).

Single files: CLIP ViT-L (SD 1.x, SDXL's first encoder), OpenCLIP ViT-bigG ("CLIP-G", SDXL's
second) and OpenCLIP ViT-H (SD 2.x), in the transformers layout (``text_model.`` keys), the
original checkpoint layout (``cond_stage_model.transformer.``, ``cond_stage_model.model.``,
``conditioner.embedders.N.``) or OpenCLIP's own (``transformer.resblocks.``); a full
checkpoint's encoder is taken out of it. diffusers' converters map the original names; the
module is built from the shipped config of its family and its tokenizer from the shipped CLIP
BPE, so nothing is downloaded. Folders: a transformers T5 encoder (``config.json``, weights and
its tokenizer files) for models that use one.

The outputs are what ``diffusion.load_checkpoint`` gives (``values.TextEncoders`` /
``Tokenizers``), so ``diffusion.tokenize`` and ``encode_text`` take them as they are;
``diffusion.load_dual_text_encoder`` puts SDXL's two in the pipeline's order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphflow import Boolean, Choice, NodeContext, Outputs, node
from graphflow.runtime.models import ModelFileError, file_version, load_state_dict

from . import configs, detect
from .component_files import ComponentFolders, cached_label, check_component_file, folder_config
from .loader import DTYPES, _torch_dtype
from .types import TextEncoder, Tokenizer
from .values import TextEncoders, Tokenizers

log = logging.getLogger("graphflow.diffusion")

TEXT_ENCODERS = ComponentFolders("text_encoders", "clip")
ACCEPTED = {"text-encoder", "embedding"}  # a bare CLIP file can look like a tiny embedding


@dataclass(frozen=True)
class EncoderType:
    """One kind of CLIP text encoder: its shipped config, tokenizer and original names."""

    label: str
    family: str  # configs/<family>
    config: str  # the encoder's sub-folder there
    tokenizer: str  # the tokenizer's sub-folder there
    prefixes: tuple[str, ...]  # its names inside original-layout checkpoints
    openclip: bool  # OpenCLIP's layout (fused q/k/v) in original files


ENCODER_TYPES = {
    "clip_l": EncoderType(
        "CLIP ViT-L",
        "sd1",
        "text_encoder",
        "tokenizer",
        ("cond_stage_model.transformer.", "conditioner.embedders.0.transformer."),
        False,
    ),
    "clip_g": EncoderType(
        "OpenCLIP ViT-bigG",
        "sdxl",
        "text_encoder_2",
        "tokenizer_2",
        ("conditioner.embedders.1.model.", "conditioner.embedders.0.model."),
        True,
    ),
    "openclip_h": EncoderType(
        "OpenCLIP ViT-H", "sd2-512", "text_encoder", "tokenizer", ("cond_stage_model.model.",), True
    ),
}
TYPES = ["auto", *ENCODER_TYPES, "t5"]


def list_text_encoders() -> list[str]:
    """Files and encoder folders in models/text_encoders, then models/clip."""
    return TEXT_ENCODERS.names()


def _describe(path: Path) -> str:
    if path.is_dir():
        return "T5 encoder folder"
    check_component_file(path, "text_encoders", ACCEPTED, False)
    return ENCODER_TYPES[chosen_type(path, "auto", False)].label


def text_encoder_label(name: str) -> str | None:
    """The dropdown label of a text encoder: CLIP ViT-L, OpenCLIP ViT-bigG, ... (headers)."""
    return cached_label(TEXT_ENCODERS.path(name), _describe)


def _width(name: str) -> int:
    kind = ENCODER_TYPES[name]
    return folder_config(configs.config_folder(kind.family) / kind.config)["hidden_size"]


def encoder_type(path: Path, header: detect.Header) -> str:
    """Which of :data:`ENCODER_TYPES` a file holds: its original-layout prefix, else its
    width compared with the shipped configs' (CLIP-L first when two are as wide)."""
    for name, kind in ENCODER_TYPES.items():
        if header.any_prefix(*kind.prefixes):
            return name
    if header.any_prefix("encoder.block.", "shared.weight"):
        raise ModelFileError(
            f"{path.name} is a T5 encoder: put its transformers folder (config.json, "
            "weights, tokenizer) in models/text_encoders/ and choose that folder"
        )
    norm = next(
        (
            header.shapes[k]
            for k in (
                "text_model.final_layer_norm.weight",
                "final_layer_norm.weight",
                "ln_final.weight",
            )
            if k in header.shapes
        ),
        None,
    )
    if norm is None:
        raise ModelFileError(f"{path.name} holds no CLIP text encoder (no final layer norm)")
    openclip = header.any_prefix("transformer.resblocks.")
    candidates = [n for n, k in ENCODER_TYPES.items() if k.openclip or not openclip]
    for name in candidates:
        if _width(name) == norm[0]:
            return name
    raise ModelFileError(
        f"{path.name} is a text encoder {norm[0]} wide, which none of graphflow's "
        f"({', '.join(f'{n} {_width(n)}' for n in ENCODER_TYPES)}) is"
    )


def _hf_names(state: dict[str, Any], kind: EncoderType, model: Any) -> dict[str, Any]:
    """The encoder's weights under transformers' names, whatever layout the file has."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_open_clip_checkpoint,
    )

    prefix = next((p for p in kind.prefixes if any(k.startswith(p) for k in state)), None)
    if prefix is not None and kind.openclip:
        return convert_open_clip_checkpoint(model, state, prefix=prefix)
    if prefix is not None:
        return convert_ldm_clip_checkpoint(state)
    if any(k.startswith("transformer.resblocks.") for k in state):
        return convert_open_clip_checkpoint(model, state, prefix="")
    return {
        k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k: v
        for k, v in state.items()
    }


def _fit_names(state: dict[str, Any], model: Any) -> dict[str, Any]:
    """Names as this transformers version has them (5.x dropped the ``text_model.`` level
    that 4.x and the files keep)."""
    own = set(model.state_dict())
    fitted = {}
    for key, value in state.items():
        if key not in own:
            bare = key.removeprefix("text_model.")
            key = (
                bare if bare in own else "text_model." + key if "text_model." + key in own else key
            )
        fitted[key] = value
    return fitted


def _clip_module(path: Path, kind: EncoderType, torch_dtype: Any, allow_pickle: bool) -> Any:
    """Build the encoder empty from its shipped config and assign the file's tensors."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = configs.config_folder(kind.family) / kind.config
    config = CLIPTextConfig.from_pretrained(str(folder), local_files_only=True)
    projected = folder_config(folder).get("architectures") == ["CLIPTextModelWithProjection"]
    cls = CLIPTextModelWithProjection if projected else CLIPTextModel
    with torch.device("meta"):
        model = cls(config)
    state = _fit_names(_hf_names(load_state_dict(path, allow_pickle), kind, model), model)
    state = {k: v.to(torch_dtype) for k, v in state.items() if hasattr(v, "to")}
    result = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise ModelFileError(
            f"{path.name} is not a whole {kind.label} text encoder: {len(missing)} weight(s) "
            f"missing (first: {missing[0]})"
        )
    if result.unexpected_keys:
        log.info("%s: %d tensor(s) not used", path.name, len(result.unexpected_keys))
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta and name.endswith("position_ids"):
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            ids = torch.arange(config.max_position_embeddings).expand((1, -1))
            owner.register_buffer("position_ids", ids, persistent=False)
    return model.to(torch_dtype)


def _t5(path: Path, torch_dtype: Any) -> dict[str, Any]:
    from transformers import AutoTokenizer, T5EncoderModel

    tokenizer_folder = path / "tokenizer" if (path / "tokenizer").is_dir() else path
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{path.name} has no tokenizer files graphflow can read") from error
    encoder = T5EncoderModel.from_pretrained(str(path), local_files_only=True, dtype=torch_dtype)
    return {"text_encoder": encoder, "tokenizer": tokenizer}


def chosen_type(path: Path, type: str, allow_pickle: bool) -> str:
    """The encoder type a file is loaded as: ``type``, or the detected one for "auto"."""
    if path.is_dir():
        return "t5"
    if type == "t5":
        raise ModelFileError(f"{path.name}: a T5 encoder is a folder, not a single file")
    if type != "auto":
        return type
    return encoder_type(path, detect.read_header(path, allow_pickle))


def load_text_encoder_handles(
    ctx: NodeContext, name: str, type: str = "auto", dtype: str = "auto", allow_pickle=False
) -> tuple[Any, Any, str]:
    """(encoder handle, tokenizer, type) of ``name`` in models/text_encoders or clip."""
    path = TEXT_ENCODERS.path(name)
    check_component_file(path, "text_encoders", ACCEPTED, allow_pickle)
    chosen = chosen_type(path, type, allow_pickle)
    torch_dtype = _torch_dtype(dtype, ctx.device, ctx.dtype)
    device = ctx.device

    def load() -> dict[str, Any]:
        if chosen == "t5":
            loaded = _t5(path, torch_dtype)
        else:
            kind = ENCODER_TYPES[chosen]
            tokenizer = configs.clip_tokenizer(configs.config_folder(kind.family) / kind.tokenizer)
            loaded = {
                "text_encoder": _clip_module(path, kind, torch_dtype, allow_pickle),
                "tokenizer": tokenizer,
            }
        loaded["text_encoder"].to(device).eval()
        return loaded

    handle = ctx.models.load("text_encoder", path, load, type=chosen, dtype=dtype)
    return handle.component("text_encoder"), handle.extras["tokenizer"], chosen


@node(
    "diffusion.load_text_encoder",
    category="diffusion/loaders",
    display_name="Load Text Encoder",
)
def load_text_encoder(
    encoder_name: Choice(list_text_encoders, labels=text_encoder_label),
    type: Choice(TYPES) = "auto",
    dtype: Choice(DTYPES) = "auto",
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> Outputs(text_encoder=TextEncoder, tokenizer=Tokenizer):
    """Load one text encoder alone from models/text_encoders (or models/clip).

    CLIP-L, CLIP-G (OpenCLIP bigG) and OpenCLIP-H single files in the transformers or the
    original layout (auto: told apart by their names and widths), or a T5 encoder folder
    with its tokenizer. The tokenizer comes with it (CLIP's shipped vocabulary). Feed both
    outputs to Tokenize / Encode Text as a checkpoint's. Pickle files load only with
    allow_pickle, weights-only.
    """
    encoder, tokenizer, _ = load_text_encoder_handles(ctx, encoder_name, type, dtype, allow_pickle)
    return TextEncoders([encoder]), Tokenizers([tokenizer])


@load_text_encoder.check
def _encoder_loadable(encoder_name: str, type: str = "auto", allow_pickle=False, **_):
    try:
        path = TEXT_ENCODERS.path(encoder_name)
        check_component_file(path, "text_encoders", ACCEPTED, allow_pickle)
        chosen_type(path, type, allow_pickle)
    except ModelFileError as error:
        return f"encoder_name: {error}"
    return None


@load_text_encoder.fingerprint
def _encoder_file_version(encoder_name: str, **_) -> tuple[int, int]:
    return file_version(TEXT_ENCODERS.path(encoder_name))


@node(
    "diffusion.load_dual_text_encoder",
    category="diffusion/loaders",
    display_name="Load SDXL Text Encoders",
)
def load_dual_text_encoder(
    clip_l_name: Choice(list_text_encoders, labels=text_encoder_label),
    clip_g_name: Choice(list_text_encoders, labels=text_encoder_label),
    dtype: Choice(DTYPES) = "auto",
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> Outputs(text_encoder=TextEncoder, tokenizer=Tokenizer):
    """Load SDXL's two text encoders alone: CLIP-L then CLIP-G (OpenCLIP bigG).

    The outputs hold both in the SDXL pipeline's order, as an SDXL checkpoint's do, so
    Encode Text joins their states and takes the pooled embedding from CLIP-G.
    """
    first, tok1, _ = load_text_encoder_handles(ctx, clip_l_name, "clip_l", dtype, allow_pickle)
    second, tok2, _ = load_text_encoder_handles(ctx, clip_g_name, "clip_g", dtype, allow_pickle)
    return TextEncoders([first, second]), Tokenizers([tok1, tok2])


@load_dual_text_encoder.check
def _dual_loadable(clip_l_name: str, clip_g_name: str, allow_pickle=False, **_) -> str | None:
    for field, name, wanted in (
        ("clip_l_name", clip_l_name, "clip_l"),
        ("clip_g_name", clip_g_name, "clip_g"),
    ):
        try:
            path = TEXT_ENCODERS.path(name)
            check_component_file(path, "text_encoders", ACCEPTED, allow_pickle)
            found = chosen_type(path, "auto", allow_pickle)
        except ModelFileError as error:
            return f"{field}: {error}"
        if found != wanted:
            label = ENCODER_TYPES[found].label if found in ENCODER_TYPES else found
            return f"{field}: {name} is {label}, not {ENCODER_TYPES[wanted].label}"
    return None


@load_dual_text_encoder.fingerprint
def _dual_file_versions(clip_l_name: str, clip_g_name: str, **_) -> tuple:
    return tuple(file_version(TEXT_ENCODERS.path(n)) for n in (clip_l_name, clip_g_name))


NODES = [load_text_encoder, load_dual_text_encoder]
