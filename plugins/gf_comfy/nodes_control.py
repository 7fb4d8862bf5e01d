"""ComfyUI's ControlNet class types on graphflow's ControlNet nodes: ControlNetLoader,
DiffControlNetLoader, ControlNetApply (the old one) and ControlNetApplyAdvanced.

They call ``gf_diffusion.controlnet``'s functions, so a ControlNet loaded under either name
is the same resident model and the specs they append are graphflow's
(:class:`~gf_diffusion.values.ControlSpec`), applied by both samplers. As in ComfyUI, a
strength of 0 returns the conditioning as it is, and T2I-Adapter files of
models/controlnet load through ControlNetLoader too. Pickle files follow graphflow's rule
(refused unless allowed in the settings, then weights-only).
"""

from __future__ import annotations

from gf_diffusion import controlnet
from gf_diffusion.controlnet_files import list_controlnets
from gf_diffusion.types import Conditioning, ControlNet, Model, Vae
from graphflow import Choice, Float, Image, NodeContext, Outputs

from .names import comfy_node

STRENGTH = Float(0.0, 10.0, step=0.01)
PERCENT = Float(0.0, 1.0, step=0.001)


@comfy_node(
    "ControlNetLoader",
    display_name="Load ControlNet Model",
    category="loaders",
    output_names=("CONTROL_NET",),
)
def control_net_loader(
    control_net_name: Choice(list_controlnets), ctx: NodeContext = None
) -> ControlNet:
    """Load a ControlNet (or T2I-Adapter) from models/controlnet.

    graphflow's ControlNet loader: diffusers folders and single files in the diffusers or
    the original layout, SD 1.x/2.x and SDXL; the resident model is reused.
    """
    return controlnet.load_controlnet_handle(ctx, control_net_name)


@comfy_node(
    "DiffControlNetLoader",
    display_name="Load ControlNet Model (diff)",
    category="loaders",
    output_names=("CONTROL_NET",),
)
def diff_control_net_loader(
    model: Model, control_net_name: Choice(list_controlnets), ctx: NodeContext = None
) -> ControlNet:
    """Load a ControlNet whose file holds differences from a base model's weights.

    A file with a ``difference`` key gets the model's (unpatched) UNet weights added to
    its shared layers; any other ControlNet file loads as with Load ControlNet Model.
    """
    return controlnet.load_controlnet_handle(ctx, control_net_name, base_model=model)


def _loadable(control_net_name: str = "", **_) -> str | None:
    return controlnet.load_controlnet.check_function(control_net_name=control_net_name)


def _version(control_net_name: str = "", **_) -> object:
    return controlnet.load_controlnet.fingerprint_function(control_net_name=control_net_name)


for _spec in (control_net_loader, diff_control_net_loader):
    _spec.check(_loadable)
    _spec.fingerprint(_version)


@comfy_node(
    "ControlNetApply",
    display_name="Apply ControlNet (OLD)",
    category="conditioning/controlnet",
    output_names=("CONDITIONING",),
    deprecated=True,
)
def control_net_apply(
    conditioning: Conditioning,
    control_net: ControlNet,
    image: Image,
    strength: STRENGTH = 1.0,
) -> Conditioning:
    """Apply a ControlNet to one conditioning, over the whole run (deprecated in ComfyUI).

    Strength 0 returns the conditioning unchanged. It steers this conditioning only: as in
    ComfyUI, the negative prompt is evaluated without the ControlNet (Apply ControlNet,
    the newer node, steers both).
    """
    if strength == 0:
        return conditioning
    spec = controlnet.control_spec(control_net, image, float(strength), 0.0, 1.0)
    return controlnet.with_control(conditioning, spec)


@comfy_node(
    "ControlNetApplyAdvanced",
    display_name="Apply ControlNet",
    category="conditioning/controlnet",
    output_names=("positive", "negative"),
)
def control_net_apply_advanced(
    positive: Conditioning,
    negative: Conditioning,
    control_net: ControlNet,
    image: Image,
    strength: STRENGTH = 1.0,
    start_percent: PERCENT = 0.0,
    end_percent: PERCENT = 1.0,
    vae: Vae = None,
) -> Outputs(positive=Conditioning, negative=Conditioning):
    """Apply a ControlNet to the positive and negative conditioning.

    graphflow's Apply ControlNet: start_percent/end_percent are fractions of the run (the
    sigma-space sampler acts between their noise levels, as ComfyUI). Strength 0 returns
    both unchanged; chained applies add their ControlNets' residuals.
    """
    if strength == 0:
        return positive, negative
    return controlnet.apply_controlnet.function(
        positive, negative, control_net, image, strength, start_percent, end_percent, vae
    )


NODES = [control_net_loader, diff_control_net_loader, control_net_apply, control_net_apply_advanced]
