"""ControlNet nodes: load a ControlNet (or T2I-Adapter) and apply it to conditioning.

``diffusion.load_controlnet`` reads a file or diffusers folder of models/controlnet
(``controlnet_files.py``) into a CONTROL_NET handle, once: a second run, or a run that only
changes a strength, reuses the resident model. ``diffusion.apply_controlnet`` appends a
:class:`~gf_diffusion.values.ControlSpec` to every prompt entry of the positive and negative
conditioning (copies; the inputs are never changed); the samplers apply it at each model call
(``control_apply.py``). Chaining several applies steers one prompt with several ControlNets,
whose residuals add up.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from graphflow import Boolean, Choice, Float, Image, NodeContext, Outputs, node
from graphflow.runtime.models import ModelFileError, file_version

from .controlnet_files import (
    ADAPTER_CLASSES,
    CONTROLNETS,
    check_controlnet_file,
    controlnet_label,
    is_adapter_path,
    is_difference_file,
    list_controlnets,
    read_controlnet,
)
from .loader import ATTENTION, DTYPES, _torch_dtype
from .types import Conditioning as ConditioningType
from .types import ControlNet, Vae
from .values import Conditioning, ControlSpec

log = logging.getLogger("graphflow.diffusion")


def _adapter_loader():
    """``t2i_adapter.load_adapter_file`` (the T2I-Adapter helper's), or a clear error."""
    from . import t2i_adapter

    load = getattr(t2i_adapter, "load_adapter_file", None)
    if load is None:
        raise ModelFileError(
            "this file is a T2I-Adapter, which this graphflow build cannot load yet "
            "(gf_diffusion.t2i_adapter.load_adapter_file is missing)"
        )
    return load


def load_controlnet_handle(
    ctx: NodeContext,
    name: str,
    dtype: str = "auto",
    allow_pickle: bool = False,
    attention: str = "auto",
    base_model: Any = None,
) -> Any:
    """The CONTROL_NET handle of ``name`` in models/controlnet (the resident one if loaded).

    ``base_model``: the MODEL a diff ControlNet's differences are added to (its base
    weights, without patches); the resident ControlNet is then per base model.
    """
    path = CONTROLNETS.path(name)
    check_controlnet_file(path, allow_pickle)
    torch_dtype = _torch_dtype(dtype, ctx.device, ctx.dtype)
    if is_adapter_path(path, allow_pickle):
        return _adapter_loader()(path, torch_dtype, allow_pickle, ctx)
    device = ctx.device
    diff = base_model is not None and is_difference_file(path, allow_pickle)

    def load() -> Any:
        from .attention_processor import install_attention_processor
        from .component_loaders import _quiet

        _quiet()
        base = base_model.unpatched.state_dict() if diff else None
        net = read_controlnet(path, torch_dtype, allow_pickle, base).to(device)
        install_attention_processor(net, enabled=ATTENTION[attention])
        log.info("%s: loaded as a ControlNet", path.name)
        return net

    options = {"dtype": dtype, "attention": attention}
    if diff:
        options["base"] = base_model.identity
    return ctx.models.load("controlnet", path, load, **options)


@node("diffusion.load_controlnet", category="diffusion/loaders", display_name="Load ControlNet")
def load_controlnet(
    control_net_name: Choice(list_controlnets, labels=controlnet_label),
    dtype: Choice(DTYPES) = "auto",
    allow_pickle: Boolean = False,
    attention: Choice(list(ATTENTION)) = "auto",
    ctx: NodeContext = None,
) -> ControlNet:
    """Load a ControlNet (or T2I-Adapter) from models/controlnet, for Apply ControlNet.

    A diffusers ControlNetModel folder, or one file in the diffusers layout or the original
    layout (``control_model.input_hint_block...``, as ComfyUI and A1111 use), SD 1.x/2.x or
    SDXL; its architecture is read from the weights (a ``<name>.config.json`` beside the
    file overrides it). T2I-Adapter files in the folder load as adapters. Loaded once: the
    resident model is reused while the file is unchanged. Pickle files load only with
    allow_pickle, weights-only.
    """
    return load_controlnet_handle(ctx, control_net_name, dtype, allow_pickle, attention)


@load_controlnet.check
def _controlnet_loadable(control_net_name: str = "", allow_pickle: bool = False, **_):
    if not list_controlnets() and not control_net_name:
        return "control_net_name: models/controlnet is empty: put a ControlNet file there"
    try:
        path = CONTROLNETS.path(control_net_name)
        check_controlnet_file(path, allow_pickle)
    except ModelFileError as error:
        return f"control_net_name: {error}"
    return None


@load_controlnet.fingerprint
def _controlnet_version(control_net_name: str = "", **_) -> tuple[int, int]:
    return file_version(CONTROLNETS.path(control_net_name))


def control_kind(control_net: Any) -> str:
    """ "t2i_adapter" for a T2I-Adapter handle, else "controlnet"."""
    kind = control_net.extras.get("control_kind") if hasattr(control_net, "extras") else None
    if kind:
        return str(kind)
    module = getattr(control_net, "unpatched", control_net)
    return "t2i_adapter" if type(module).__name__ in ADAPTER_CLASSES else "controlnet"


def with_control(conditioning: Conditioning, spec: ControlSpec) -> Conditioning:
    """``conditioning`` with ``spec`` appended to every entry's controls (copies)."""
    return Conditioning([replace(e, controls=(*e.controls, spec)) for e in conditioning.entries])


def control_spec(control_net, image, strength, start, end, vae=None) -> ControlSpec:
    """The ControlSpec of one apply (checked ranges; the image as IMAGE (B, H, W, C))."""
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"image must be an IMAGE (batch, height, width, 3), got shape {tuple(image.shape)}"
        )
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(
            f"start ({start}) and end ({end}) must be fractions with start ≤ end: the "
            "ControlNet acts from start to end of the sampling run (0 = first step)"
        )
    return ControlSpec(control_net, control_kind(control_net), image, strength, start, end, vae)


@node(
    "diffusion.apply_controlnet", category="diffusion/conditioning", display_name="Apply ControlNet"
)
def apply_controlnet(
    positive: ConditioningType,
    negative: ConditioningType,
    control_net: ControlNet,
    image: Image,
    strength: Float(0.0, 10.0, step=0.01) = 1.0,
    start: Float(0.0, 1.0, step=0.001) = 0.0,
    end: Float(0.0, 1.0, step=0.001) = 1.0,
    vae: Vae = None,
) -> Outputs(positive=ConditioningType, negative=ConditioningType):
    """Steer sampling with a ControlNet and its control image (edges, depth, pose...).

    The image (an edge map from Canny, a depth map...) is resized to the sampled image's
    size. strength scales the ControlNet's residuals; start/end are the fractions of the
    sampling run it acts in (0 = first step, 1 = last; diffusers' control_guidance_start/
    end on Sampler, ComfyUI's start_percent/end_percent on KSampler). Chain several applies
    for several ControlNets at once: their residuals add up. vae is accepted for
    ComfyUI's latent ControlNets and not used by SD 1.x/SDXL ones.
    """
    spec = control_spec(control_net, image, float(strength), float(start), float(end), vae)
    return with_control(positive, spec), with_control(negative, spec)


NODES = [load_controlnet, apply_controlnet]
