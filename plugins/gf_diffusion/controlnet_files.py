"""ControlNet files in models/controlnet: listing, checking, layouts and loading.

Three forms load to a diffusers ``ControlNetModel``:

- a diffusers ControlNetModel folder (``config.json`` + weights);
- a single file in the diffusers layout (``controlnet_cond_embedding.*``, ``down_blocks.*``);
- a single file in the original (ControlNet repository / ComfyUI) layout:
  ``input_hint_block.*``, ``input_blocks.*``, ``zero_convs.*``, ``middle_block_out.*``,
  with or without the ``control_model.`` prefix.

An original-layout file is renamed to diffusers' keys here (:func:`to_diffusers_keys`); the
architecture of a single file is read from its tensor shapes (:func:`derive_config`), so
nothing is downloaded. What shapes cannot tell (attention heads, group-norm groups, SDXL's
size-embedding width) follows the released SD 1.x, SD 2.x and SDXL ControlNets; a file of
other sizes takes a diffusers ``config.json`` saved beside it as ``<file stem>.config.json``.
T2I-Adapter files in the same folder are handed to ``t2i_adapter.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from graphflow.runtime.models import ModelFileError, load_state_dict

from . import detect
from .component_files import ComponentFolders, cached_label, check_component_file, folder_config
from .embedded import embedded_controlnets

CONTROLNETS = ComponentFolders("controlnet")
CONTROLNETS.catalogs[0].bundle(embedded_controlnets)
PREFIX = "control_model."
ADAPTER_CLASSES = ("T2IAdapter", "MultiAdapter")
# The released SDXL ControlNets' size embedding: 6 size ids × 256 + the 1280 pooled width.
SDXL_ADDED_WIDTH = 2816
SDXL_TIME_EMBED = 256


def list_controlnets() -> list[str]:
    """ControlNet / T2I-Adapter files and diffusers folders in models/controlnet, sorted."""
    return CONTROLNETS.names()


def config_beside(path: Path) -> Path:
    """Where a diffusers ``config.json`` for a single file of unusual sizes may be put."""
    return path.with_name(path.stem + ".config.json")


def check_controlnet_file(path: Path, allow_pickle: bool) -> str:
    """The detected kind of a file in models/controlnet ("folder", "controlnet" or ""),
    or a one-line ModelFileError (pickle refused, a file of another folder)."""
    return check_component_file(path, "controlnet", {"controlnet"}, allow_pickle)


def is_adapter_keys(keys) -> bool:
    """True when ``keys`` are a T2I-Adapter's (asked of ``t2i_adapter.py`` when it says)."""
    from . import t2i_adapter

    test = getattr(t2i_adapter, "is_adapter_state_dict", None)
    if test is not None:
        return bool(test(list(keys)))
    return any(k.startswith(("adapter.body.", "body.0.", "adapter.conv_in.")) for k in keys)


def _describe(path: Path) -> str:
    check_controlnet_file(path, False)
    if path.is_dir():
        name = folder_config(path).get("_class_name", "")
        return "T2I-Adapter" if name in ADAPTER_CLASSES else "diffusers ControlNet"
    header = detect.read_header(path)
    if is_adapter_keys(header.shapes):
        return "T2I-Adapter"
    xl = any(
        k.endswith(("add_embedding.linear_1.weight", "label_emb.0.0.weight")) for k in header.shapes
    )
    return "ControlNet, SDXL" if xl else "ControlNet, SD 1.x/2.x"


def controlnet_label(name: str) -> str | None:
    """The dropdown label of a file or folder: ControlNet (SD or SDXL) or T2I-Adapter."""
    return cached_label(CONTROLNETS.path(name), _describe)


# --- original layout → diffusers keys ---------------------------------------------------

RESNET_PARTS = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
FIXED = {
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "label_emb.0.0": "add_embedding.linear_1",
    "label_emb.0.2": "add_embedding.linear_2",
    "input_blocks.0.0": "conv_in",
    "middle_block_out.0": "controlnet_mid_block",
}


def is_original_layout(keys) -> bool:
    """True for the original layout (``input_hint_block`` / ``zero_convs``), prefixed or not."""
    return any(
        k.startswith(("input_hint_block.", "zero_convs.", PREFIX + "input_hint_block."))
        for k in keys
    )


def _resnet_key(rest: str) -> str:
    for old, new in RESNET_PARTS.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    raise ModelFileError(f"unexpected ResBlock weight {rest!r} in an original-layout ControlNet")


def _is_resnet(rest: str) -> bool:
    return rest.startswith(("in_layers.", "emb_layers.", "out_layers.", "skip_connection."))


def _down_places(state: dict[str, Any]) -> dict[int, str]:
    """Where each ``input_blocks.N`` (N ≥ 1) goes in diffusers' layout: a down block's
    layer (``down_blocks.B|L``) or its downsampler, read from what each one holds."""
    pattern = re.compile(r"^input_blocks\.(\d+)\.0\.(.*)$")
    downsamplers: dict[int, bool] = {}
    for key in state:
        match = pattern.match(key)
        if match and int(match[1]) > 0:
            downsamplers[int(match[1])] = match[2].startswith("op.")
    places: dict[int, str] = {}
    block, layer = 0, 0
    for index in sorted(downsamplers):
        if downsamplers[index]:
            places[index] = f"down_blocks.{block}.downsamplers.0"
            block, layer = block + 1, 0
        else:
            places[index] = f"down_blocks.{block}|{layer}"
            layer += 1
    return places


def _mid_places(state: dict[str, Any]) -> dict[int, str]:
    """Where each ``middle_block.N`` goes: mid_block.resnets.K or mid_block.attentions.K."""
    kinds: dict[int, bool] = {}
    for key in state:
        if key.startswith("middle_block."):
            index, rest = key.split(".", 2)[1:]
            kinds.setdefault(int(index), _is_resnet(rest))
    places, counts = {}, {True: 0, False: 0}
    for index in sorted(kinds):
        resnet = kinds[index]
        places[index] = f"mid_block.{'resnets' if resnet else 'attentions'}.{counts[resnet]}"
        counts[resnet] += 1
    return places


def _hint_keys(state: dict[str, Any]) -> dict[str, str]:
    """``input_hint_block.N`` convolutions → conv_in, blocks.K, conv_out (in order)."""
    indexes = sorted({int(k.split(".")[1]) for k in state if k.startswith("input_hint_block.")})
    if len(indexes) < 2:
        raise ModelFileError("its input_hint_block has fewer than two convolutions")
    names = {indexes[0]: "conv_in", indexes[-1]: "conv_out"}
    names.update({i: f"blocks.{n}" for n, i in enumerate(indexes[1:-1])})
    return {f"input_hint_block.{i}": f"controlnet_cond_embedding.{n}" for i, n in names.items()}


def _renamed(key: str, down: dict[int, str], mid: dict[int, str], hints: dict[str, str]) -> str:
    head, _, param = key.rpartition(".")
    renamed = FIXED.get(head) or hints.get(head)
    if renamed:
        return f"{renamed}.{param}"
    parts = key.split(".")
    if parts[0] == "zero_convs":
        return f"controlnet_down_blocks.{parts[1]}.{param}"
    if parts[0] == "middle_block" and int(parts[1]) in mid:
        place, rest = mid[int(parts[1])], ".".join(parts[2:])
        return f"{place}.{_resnet_key(rest) if '.resnets.' in place else rest}"
    if parts[0] == "input_blocks" and int(parts[1]) in down:
        place, sub, rest = down[int(parts[1])], parts[2], ".".join(parts[3:])
        if place.endswith("downsamplers.0"):
            return f"{place}.conv.{rest.removeprefix('op.')}"
        block, layer = place.split("|")
        if sub == "0":
            return f"{block}.resnets.{layer}.{_resnet_key(rest)}"
        return f"{block}.attentions.{layer}.{rest}"
    raise ModelFileError(f"unexpected weight {key!r} in an original-layout ControlNet")


def to_diffusers_keys(state: dict[str, Any]) -> dict[str, Any]:
    """An original-layout ControlNet state dict (``control_model.`` prefix or none) under
    diffusers ``ControlNetModel`` keys; the tensors are the same objects."""
    if any(k.startswith(PREFIX) for k in state):
        state = {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}
    down, mid, hints = _down_places(state), _mid_places(state), _hint_keys(state)
    return {_renamed(k, down, mid, hints): v for k, v in state.items()}


# --- the architecture, from the shapes --------------------------------------------------


def _numbers(state: dict[str, Any], prefix: str) -> list[int]:
    return sorted({int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)})


def _cond_embedding(state: dict[str, Any]) -> tuple[int, list[int]]:
    conv_in = state["controlnet_cond_embedding.conv_in.weight"].shape
    blocks = _numbers(state, "controlnet_cond_embedding.blocks.")
    widths = [conv_in[0]] + [
        state[f"controlnet_cond_embedding.blocks.{b}.weight"].shape[0] for b in blocks[1::2]
    ]
    return conv_in[1], widths


def _added_embedding(state: dict[str, Any], name: str) -> dict[str, Any]:
    weight = state.get("add_embedding.linear_1.weight")
    if weight is None:
        return {}
    if weight.shape[1] != SDXL_ADDED_WIDTH:
        raise detect.ConfigNeededError(
            f"{name} is an SDXL-style ControlNet whose size embedding takes {weight.shape[1]} "
            f"values, not SDXL's {SDXL_ADDED_WIDTH}: its config cannot be read from the "
            f"weights; save its diffusers config.json beside it as {name.rsplit('.', 1)[0]}"
            ".config.json"
        )
    return {
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": SDXL_TIME_EMBED,
        "projection_class_embeddings_input_dim": SDXL_ADDED_WIDTH,
    }


def derive_config(state: dict[str, Any], name: str = "the file") -> dict[str, Any]:
    """A ``ControlNetModel`` config for a diffusers-layout state dict, from its shapes.

    Attention heads follow the released models: 8 per block for SD 1.x (convolution
    projections), width/64 for SD 2.x and SDXL (linear projections); group norms of 32.
    """
    if "conv_in.weight" not in state or "controlnet_cond_embedding.conv_in.weight" not in state:
        raise ModelFileError(f"{name} holds no ControlNet weights (conv_in, hint embedding)")
    blocks = _numbers(state, "down_blocks.")
    widths = [state[f"down_blocks.{b}.resnets.0.conv1.weight"].shape[0] for b in blocks]
    attention = [any(k.startswith(f"down_blocks.{b}.attentions.") for k in state) for b in blocks]
    to_k = next((v for k, v in state.items() if k.endswith("attn2.to_k.weight")), None)
    proj_in = next((v for k, v in state.items() if k.endswith(".proj_in.weight")), None)
    linear = proj_in is not None and proj_in.ndim == 2
    depth = [
        len(_numbers(state, f"down_blocks.{b}.attentions.0.transformer_blocks.")) or 1
        for b in blocks
    ]
    if any(k.startswith("mid_block.attentions.") for k in state):
        depth[-1] = len(_numbers(state, "mid_block.attentions.0.transformer_blocks.")) or 1
    hint_channels, hint_widths = _cond_embedding(state)
    return {
        "_class_name": "ControlNetModel",
        "in_channels": state["conv_in.weight"].shape[1],
        "conditioning_channels": hint_channels,
        "conditioning_embedding_out_channels": hint_widths,
        "block_out_channels": widths,
        "layers_per_block": len(_numbers(state, "down_blocks.0.resnets.")),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "mid_block_type": "UNetMidBlock2DCrossAttn"
        if any(k.startswith("mid_block.attentions.") for k in state)
        else "UNetMidBlock2D",
        "cross_attention_dim": to_k.shape[1] if to_k is not None else 768,
        "use_linear_projection": linear,
        "attention_head_dim": [max(1, w // 64) for w in widths] if linear else 8,
        "transformer_layers_per_block": depth,
        "norm_num_groups": 32,
        **_added_embedding(state, name),
    }


# --- loading ----------------------------------------------------------------------------


def _build(config: dict[str, Any], state: dict[str, Any], torch_dtype: Any, name: str) -> Any:
    """A ControlNetModel of ``config`` holding ``state`` (no random initialisation)."""
    import torch
    from diffusers import ControlNetModel

    with torch.device("meta"):
        net = ControlNetModel.from_config(config)
    expected = set(net.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ModelFileError(
            f"{name} does not fit a ControlNet of the sizes its weights suggest "
            f"({len(missing)} weight(s) missing, e.g. {sorted(missing)[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {sorted(unexpected)[:2]}); save its diffusers "
            "config.json beside it as <file stem>.config.json"
        )
    wrong = [k for k, p in net.state_dict().items() if tuple(p.shape) != tuple(state[k].shape)]
    if wrong:
        raise ModelFileError(
            f"{name}: {len(wrong)} weight(s) have other shapes than its config says (e.g. "
            f"{wrong[0]}); save its diffusers config.json beside it as <file stem>.config.json"
        )
    dtype = torch_dtype or torch.float32
    tensors = {k: v.to(dtype=dtype) for k, v in state.items()}
    net.load_state_dict(tensors, strict=True, assign=True)
    return net.eval()


def controlnet_state(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """The weights of a single ControlNet file under diffusers' keys."""
    state = load_state_dict(path, allow_pickle)
    if is_original_layout(state):
        difference = state.pop("difference", None)
        state = to_diffusers_keys(state)
        if difference is not None:
            state["difference"] = difference
    return state


def is_difference_file(path: Path, allow_pickle: bool = False) -> bool:
    """True for a "diff" ControlNet (a ``difference`` key: weights stored as differences
    from its base UNet's, ComfyUI's DiffControlNetLoader files)."""
    return not path.is_dir() and "difference" in detect.read_header(path, allow_pickle).shapes


def add_base_weights(state: dict[str, Any], base: dict[str, Any], name: str) -> dict[str, Any]:
    """A diff ControlNet's weights plus its base UNet's (same diffusers names: conv_in,
    time embedding, down and mid blocks); the ControlNet's own layers as they are."""
    shared = [k for k in state if k in base and tuple(base[k].shape) == tuple(state[k].shape)]
    if not shared:
        raise ModelFileError(f"{name} is a diff ControlNet whose layers the model does not have")
    return {k: (v + base[k].to(v.dtype) if k in shared else v) for k, v in state.items()}


def read_controlnet(path: Path, torch_dtype: Any, allow_pickle: bool, base: Any = None) -> Any:
    """A diffusers ControlNetModel from a folder or a single file (either layout).

    ``base``: the UNet state dict a diff ControlNet's differences are added to; a diff file
    without one is refused (it would not work).
    """
    from diffusers import ControlNetModel

    if path.is_dir():
        return ControlNetModel.from_pretrained(
            str(path), local_files_only=True, torch_dtype=torch_dtype
        ).eval()
    state = controlnet_state(path, allow_pickle)
    if state.pop("difference", None) is not None:
        if base is None:
            raise ModelFileError(
                f"{path.name} is a diff ControlNet: load it with Load ControlNet Model (diff) "
                "and the model it was made for"
            )
        state = add_base_weights(state, base, path.name)
    beside = config_beside(path)
    config = json.loads(beside.read_text()) if beside.is_file() else None
    config = config or derive_config(state, path.name)
    return _build(config, state, torch_dtype, path.name)


def is_adapter_path(path: Path, allow_pickle: bool) -> bool:
    """True for a T2I-Adapter folder or file (read from its config or its keys)."""
    if path.is_dir():
        return folder_config(path).get("_class_name") in ADAPTER_CLASSES
    return is_adapter_keys(detect.read_header(path, allow_pickle).shapes)
