"""ComfyUI's regional-prompt class types on graphflow's conditioning entries.

Each sets the fields ComfyUI keeps in a conditioning's dict on every entry (a modified
copy): ``area`` as ("fractions", h, w, y, x) for ConditioningSetAreaPercentage (ComfyUI's
("percentage", …), resolved against the latent when sampled), ``strength``, ``mask`` /
``mask_strength`` / ``set_area_to_bounds`` for ConditioningSetMask, and ``timestep_range``
for ConditioningSetTimestepRange (ComfyUI's start_percent / end_percent). The samplers read
them as ComfyUI's does (gf_diffusion/k_denoiser.py, gf_diffusion/regions.py).
"""

from __future__ import annotations

from dataclasses import replace

from gf_diffusion.regions import SET_AREA
from gf_diffusion.types import Conditioning as ConditioningType
from gf_diffusion.values import Conditioning
from graphflow import Choice, Float
from graphflow.types import Mask

from .names import ComfyInput, comfy_node

STEP = ComfyInput(step=0.01)
FINE_STEP = ComfyInput(step=0.001)


def _set(conditioning: Conditioning, **fields) -> Conditioning:
    """A copy of ``conditioning`` with ``fields`` set on every entry (ComfyUI's
    conditioning_set_values)."""
    return Conditioning([replace(entry, **fields) for entry in conditioning.entries])


@comfy_node(
    "ConditioningSetAreaPercentage",
    display_name="Conditioning (Set Area with Percentage)",
    category="conditioning",
    inputs={name: STEP for name in ("width", "height", "x", "y", "strength")},
    output_names=("CONDITIONING",),
)
def conditioning_set_area_percentage(
    conditioning: ConditioningType,
    width: Float(0.0, 1.0, step=0.01) = 1.0,
    height: Float(0.0, 1.0, step=0.01) = 1.0,
    x: Float(0.0, 1.0, step=0.01) = 0.0,
    y: Float(0.0, 1.0, step=0.01) = 0.0,
    strength: Float(0.0, 10.0, step=0.01) = 1.0,
) -> ConditioningType:
    """Apply the conditioning only inside a rectangle given as fractions of the image
    (0.5 = half), with its guidance multiplied by strength there.

    The fractions are kept and turned into latent pixels when sampled (rounded as ComfyUI
    rounds them), so they fit any image size and VAE scale.
    """
    area = ("fractions", float(height), float(width), float(y), float(x))
    return _set(conditioning, area=area, strength=float(strength), set_area_to_bounds=False)


@comfy_node(
    "ConditioningSetAreaStrength",
    display_name=None,
    category="conditioning",
    inputs={"strength": STEP},
    output_names=("CONDITIONING",),
)
def conditioning_set_area_strength(
    conditioning: ConditioningType, strength: Float(0.0, 10.0, step=0.01) = 1.0
) -> ConditioningType:
    """Set the strength the conditioning's guidance is multiplied by within its area or
    mask (keeping the area)."""
    return _set(conditioning, strength=float(strength))


@comfy_node(
    "ConditioningSetMask",
    display_name="Conditioning (Set Mask)",
    category="conditioning",
    inputs={"strength": STEP},
    output_names=("CONDITIONING",),
)
def conditioning_set_mask(
    conditioning: ConditioningType,
    mask: Mask,
    strength: Float(0.0, 10.0, step=0.01) = 1.0,
    set_cond_area: Choice(SET_AREA) = "default",
) -> ConditioningType:
    """Apply the conditioning where the mask is white, weighted by the mask × strength.

    The mask is resized to the latent when sampled. set_cond_area "mask bounds" evaluates
    the prompt on the mask's bounding box only (at least 8 latent pixels a side), as if
    that part were the whole picture.
    """
    mask = mask if mask.dim() >= 3 else mask.unsqueeze(0)
    return _set(
        conditioning,
        mask=mask,
        mask_strength=float(strength),
        set_area_to_bounds=set_cond_area != "default",
    )


@comfy_node(
    "ConditioningSetTimestepRange",
    display_name=None,
    category="advanced/conditioning",
    inputs={"start": FINE_STEP, "end": FINE_STEP},
    output_names=("CONDITIONING",),
)
def conditioning_set_timestep_range(
    conditioning: ConditioningType,
    start: Float(0.0, 1.0, step=0.001) = 0.0,
    end: Float(0.0, 1.0, step=0.001) = 1.0,
) -> ConditioningType:
    """Use the conditioning only between start and end, fractions of the model's noise
    schedule (0 = pure noise, 1 = the end): the sampler skips it at noise levels outside
    (ComfyUI's percent-to-sigma)."""
    return _set(conditioning, timestep_range=(float(start), float(end)))


NODES = [
    conditioning_set_area_percentage,
    conditioning_set_area_strength,
    conditioning_set_mask,
    conditioning_set_timestep_range,
]
