"""T2I-Adapter files: which layout a state dict is in, and reading it as a diffusers model.

Every file becomes a diffusers :class:`~diffusers.T2IAdapter` (``full_adapter``,
``full_adapter_xl`` or ``light_adapter``), so the sampler feeds its features to the UNet's
``down_intrablock_additional_residuals`` as diffusers' adapter pipelines do. Read are:

- TencentARC's original layout (what ComfyUI loads): ``conv_in`` + ``body.<k>.block1``
  (the full adapter, ``body`` flat: ``num_res_blocks`` resnets per level, ``in_conv`` where
  the width changes) or ``body.<i>.in_conv`` / ``body.<i>.body.<j>`` / ``body.<i>.out_conv``
  (the light adapter); keys may sit under an ``adapter.`` prefix or an ``"adapter"`` entry;
- the diffusers layout (``adapter.body.<i>.resnets.<j>...``) as one file;
- a diffusers T2IAdapter folder (``config.json`` + weights).

A file holds no config, so it is read from the weights: the pixel-unshuffle factor and the
input channels from ``conv_in`` (``channels × factor²``: 3 × f² and 1 × f² never coincide),
the widths from each level's convolutions. The full SD 1.x and SDXL adapters have the same
weight shapes; an unshuffle factor of 16 (SDXL's, 8 for SD 1.x) marks ``full_adapter_xl``,
as ComfyUI decides it. Nothing is downloaded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from graphflow.runtime.models import ModelFileError, check_pickle_rule, load_state_dict

ADAPTER_TYPES = ("full_adapter", "full_adapter_xl", "light_adapter")
XL_UNSHUFFLE = 16  # SDXL adapters unshuffle 16×16 pixels, SD 1.x ones 8×8

_FULL = re.compile(r"body\.(\d+)\.(block1|block2|in_conv)\.(weight|bias)$")
_LIGHT = re.compile(r"body\.(\d+)\.(?:body\.(\d+)\.(block1|block2)|(in_conv|out_conv))\.(\w+)$")


class AdapterFileError(ModelFileError):
    """A file that is not a T2I-Adapter graphflow reads (the message says what it is)."""


def _unprefixed(keys: list[str]) -> list[str]:
    """The keys without an ``adapter.`` prefix that every key carries."""
    if keys and all(k.startswith("adapter.") for k in keys):
        return [k[len("adapter.") :] for k in keys]
    return keys


def adapter_layout(keys) -> str | None:
    """The layout of a state dict's keys: "original-full", "original-light",
    "diffusers-full", "diffusers-light", or None when it is no T2I-Adapter."""
    keys = _unprefixed(list(keys))
    names = set(keys)
    if "body.0.resnets.0.block1.weight" in names:
        return "diffusers-full" if "conv_in.weight" in names else "diffusers-light"
    if "conv_in.weight" in names and "body.0.block1.weight" in names:
        return "original-full"
    if {"body.0.in_conv.weight", "body.0.body.0.block1.weight"} <= names:
        return "original-light"
    return None


def is_adapter_state_dict(keys) -> bool:
    """True when ``keys`` (a state dict's, or a file header's) are a T2I-Adapter's, in the
    original TencentARC layouts (full, light, SDXL; with or without ``adapter.``) or the
    diffusers layout."""
    return adapter_layout(keys) is not None


def _unwrapped(state: dict[str, Any]) -> dict[str, Any]:
    """A training checkpoint's ``{"adapter": state_dict}`` as the state dict itself."""
    inner = state.get("adapter")
    return inner if isinstance(inner, dict) else state


def _factor_and_channels(packed: int, name: str) -> tuple[int, int]:
    """(unshuffle factor, input channels) of a first convolution taking ``packed``
    channels: 3·f² for an RGB hint, 1·f² for a grey one."""
    for channels in (3, 1):
        factor = math.isqrt(packed // channels)
        if packed % channels == 0 and factor * factor * channels == packed:
            return factor, channels
    raise AdapterFileError(
        f"{name}: its first convolution takes {packed} channels, which is no pixel-unshuffled "
        "RGB or grey hint (3·f² or 1·f²); is it a T2I-Adapter?"
    )


def _levels(indices: dict[int, Any], per_level: int) -> int:
    count = max(indices) + 1
    if count % per_level:
        raise AdapterFileError(f"{count} adapter blocks do not split into levels of {per_level}")
    return count // per_level


def _from_original_full(state: dict[str, Any], name: str) -> tuple[dict, dict]:
    """The diffusers config and state dict of an original-layout full adapter."""
    unsupported = [k for k in state if ".skep." in k or "down_opt.op." in k]
    if unsupported or state["body.0.block2.weight"].shape[-1] != 1:
        raise AdapterFileError(
            f"{name} is a T2I-Adapter trained with skip or strided-convolution blocks "
            f"({unsupported[0] if unsupported else '3×3 block2'}), a layout diffusers' "
            "T2IAdapter (and graphflow) does not run; the released adapters use 1×1 blocks"
        )
    blocks: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        match = _FULL.fullmatch(key)
        if match:
            blocks.setdefault(int(match[1]), {})[f"{match[2]}.{match[3]}"] = value
        elif not key.startswith("conv_in."):
            raise AdapterFileError(f"{name}: unexpected key {key} for a full T2I-Adapter")
    widening = [k for k in sorted(blocks) if "in_conv.weight" in blocks[k]]
    per_level = widening[0] if widening else len(blocks)
    levels = _levels(blocks, per_level)
    conv_in = state["conv_in.weight"]
    factor, channels = _factor_and_channels(conv_in.shape[1], name)
    widths = [blocks[i * per_level]["block1.weight"].shape[0] for i in range(levels)]
    out = {"adapter." + k: v for k, v in state.items() if k.startswith("conv_in.")}
    for index, tensors in blocks.items():
        level, resnet = divmod(index, per_level)
        for key, value in tensors.items():
            if key.startswith("in_conv"):
                out[f"adapter.body.{level}.{key}"] = value
            else:
                out[f"adapter.body.{level}.resnets.{resnet}.{key}"] = value
    kind = "full_adapter_xl" if factor == XL_UNSHUFFLE else "full_adapter"
    config = _config(channels, widths, per_level, factor, kind)
    return config, out


def _from_original_light(state: dict[str, Any], name: str) -> tuple[dict, dict]:
    """The diffusers config and state dict of an original-layout light adapter."""
    out: dict[str, Any] = {}
    levels: dict[int, set[int]] = {}
    for key, value in state.items():
        match = _LIGHT.fullmatch(key)
        if not match:
            raise AdapterFileError(f"{name}: unexpected key {key} for a light T2I-Adapter")
        level = int(match[1])
        levels.setdefault(level, set())
        if match[2] is not None:
            levels[level].add(int(match[2]))
            out[f"adapter.body.{level}.resnets.{match[2]}.{match[3]}.{match[5]}"] = value
        else:
            out[f"adapter.body.{level}.{match[4]}.{match[5]}"] = value
    factor, channels = _factor_and_channels(state["body.0.in_conv.weight"].shape[1], name)
    widths = [state[f"body.{i}.out_conv.weight"].shape[0] for i in sorted(levels)]
    if len(widths) < 2 or widths[-1] != widths[-2]:
        raise AdapterFileError(f"{name}: a light T2I-Adapter ends with two equal widths")
    per_level = len(levels[0])
    return _config(channels, widths[:-1], per_level, factor, "light_adapter"), out


def _from_diffusers(state: dict[str, Any], layout: str, name: str) -> tuple[dict, dict]:
    """The config of a diffusers-layout file, read from its weights."""
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = re.match(r"adapter\.body\.(\d+)\.resnets\.(\d+)\.", key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    per_level = len(blocks[0])
    if layout == "diffusers-light":
        factor, channels = _factor_and_channels(
            state["adapter.body.0.in_conv.weight"].shape[1], name
        )
        widths = [state[f"adapter.body.{i}.out_conv.weight"].shape[0] for i in sorted(blocks)]
        return _config(channels, widths[:-1], per_level, factor, "light_adapter"), state
    factor, channels = _factor_and_channels(state["adapter.conv_in.weight"].shape[1], name)
    widths = [state[f"adapter.body.{i}.resnets.0.block1.weight"].shape[0] for i in sorted(blocks)]
    kind = "full_adapter_xl" if factor == XL_UNSHUFFLE else "full_adapter"
    return _config(channels, widths, per_level, factor, kind), state


def _config(channels: int, widths: list[int], per_level: int, factor: int, kind: str) -> dict:
    return {
        "in_channels": channels,
        "channels": [int(w) for w in widths],
        "num_res_blocks": per_level,
        "downscale_factor": factor,
        "adapter_type": kind,
    }


def diffusers_state(state: dict[str, Any], name: str = "file") -> tuple[dict, dict]:
    """(T2IAdapter config, diffusers-layout state dict) of a T2I-Adapter state dict in any
    layout :func:`adapter_layout` knows; AdapterFileError naming what it is otherwise."""
    state = _unwrapped(state)
    layout = adapter_layout(state)
    if layout is None:
        raise AdapterFileError(f"{name} is not a T2I-Adapter: {_what_else(state)}")
    if all(k.startswith("adapter.") for k in state) and layout.startswith("original"):
        state = {k[len("adapter.") :]: v for k, v in state.items()}
    if layout == "original-full":
        return _from_original_full(state, name)
    if layout == "original-light":
        return _from_original_light(state, name)
    if not all(k.startswith("adapter.") for k in state):
        state = {"adapter." + k: v for k, v in state.items()}
    return _from_diffusers(state, layout, name)


def _what_else(state: dict[str, Any]) -> str:
    keys = list(state)
    if any(k.startswith(("control_model.", "controlnet_cond_embedding.")) for k in keys):
        return "it is a ControlNet (load it with Load ControlNet)"
    if "style_embedding" in keys:
        return "it is a T2I style adapter (a style model for models/style_models/)"
    sample = ", ".join(keys[:3]) or "no tensors"
    return (
        f"none of its keys ({sample}, ...) are a T2I-Adapter's (conv_in + body.N.block1, "
        "body.N.in_conv + body.N.body.M, or diffusers' adapter.body.N.resnets.M)"
    )


def _quiet() -> None:
    import diffusers

    diffusers.utils.logging.disable_progress_bar()


def read_adapter(path: Path, torch_dtype: Any = None, allow_pickle: bool = False) -> Any:
    """A diffusers T2IAdapter (eval mode, on the CPU) read from a file or folder.

    Single files: ``.safetensors``, or a pickle file (``.pth``/``.pt``/``.ckpt``/``.bin``)
    only with ``allow_pickle`` (weights-only). Folders: a diffusers T2IAdapter folder.
    """
    from diffusers import T2IAdapter

    _quiet()
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, torch_dtype, allow_pickle)
    refusal = check_pickle_rule(path.name, allow_pickle)
    if refusal:
        raise ModelFileError(refusal)
    config, state = diffusers_state(load_state_dict(path, allow_pickle), path.name)
    adapter = T2IAdapter(**config)
    missing, unexpected = adapter.load_state_dict(state, strict=False)
    if missing or unexpected:
        wrong = (missing or unexpected)[0]
        raise AdapterFileError(
            f"{path.name} does not fit a {config['adapter_type']} T2I-Adapter with widths "
            f"{config['channels']}: {'missing' if missing else 'unexpected'} weight {wrong}"
        )
    return adapter.to(dtype=torch_dtype).eval() if torch_dtype else adapter.eval()


def _read_folder(path: Path, torch_dtype: Any, allow_pickle: bool) -> Any:
    import json

    from diffusers import T2IAdapter

    config_file = path / "config.json"
    if not config_file.is_file():
        raise AdapterFileError(f"{path.name} is a folder without config.json: no T2IAdapter")
    kind = json.loads(config_file.read_text()).get("_class_name")
    if kind != "T2IAdapter":
        raise AdapterFileError(f"{path.name} holds a {kind}, not a T2IAdapter")
    if not any(path.glob("*.safetensors")):
        pickled = next(iter(sorted(path.glob("*.bin"))), None)
        refusal = (
            check_pickle_rule(f"{path.name}/{pickled.name}", allow_pickle) if pickled else None
        )
        if refusal:
            raise ModelFileError(refusal)
    options = {"dtype": torch_dtype} if torch_dtype else {}
    return T2IAdapter.from_pretrained(str(path), local_files_only=True, **options).eval()


def load_adapter_file(path: Path, dtype: Any = None, allow_pickle: bool = False, ctx=None):
    """The ModelHandle of the T2I-Adapter in ``path`` (a file or diffusers folder).

    ``dtype``: a torch dtype, or None for the file's. With a node context the model
    manager holds it (loaded once, then the resident one, offloaded by budget); without one
    (scripts, tests) an unmanaged handle.
    """
    from graphflow.runtime.handles import ModelHandle

    path = Path(path)
    if ctx is None:
        return ModelHandle.of(read_adapter(path, dtype, allow_pickle), f"t2i_adapter {path.name}")
    device = ctx.device

    def load() -> Any:
        return read_adapter(path, dtype, allow_pickle).to(device)

    return ctx.models.load("t2i_adapter", path, load, dtype=str(dtype))
