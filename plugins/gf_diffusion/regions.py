"""Regional prompts: a prompt restricted to an area or a mask, or to part of the run.

A :class:`~gf_diffusion.values.ConditioningEntry` is restricted by four fields:

- ``area``: a rectangle, in one of three forms, resolved against the latent when sampled
  (:func:`resolve_area`): ``(h, w, y, x)`` integers in latent pixels (ComfyUI's
  ConditioningSetArea stores image pixels // 8 there); ``("pixels", h, w, y, x)`` in image
  pixels, divided by the latent's own VAE downscale (4 for graphflow-tiny, 8 for SD) when
  sampled, so the same node works for any VAE; ``("fractions", h, w, y, x)`` of the latent's
  sides (ComfyUI's ConditioningSetAreaPercentage), rounded as ComfyUI rounds them.
- ``mask`` (× ``mask_strength``): a weight map at any size, resized to the latent
  (bilinear, as ComfyUI); ``set_area_to_bounds`` narrows the prompt to the mask's bounding
  box (at least 8 latent pixels a side, as ComfyUI's "mask bounds").
- ``strength``: the prompt's guidance weight within its region.
- ``timestep_range``: (start, end) fractions of the run in which the prompt is used.

The sigma-space sampler (k_denoiser.py) follows ComfyUI: an area prompt is evaluated on its
crop of the latent. The native sampler (:func:`combine`) runs every prompt on the whole
latent and mixes the predictions pixel by pixel, each weighted by weight × strength × its
region's map (an area's map is 1 inside, feathered at inner edges as ComfyUI feathers it, 0
outside); its timestep ranges count steps of the run: a prompt is used at step i of n when
start ≤ i/n < end (end = 1 includes the last step). Where no prompt covers a pixel (or none
is active at a step), the native sampler uses the weighted mean of the unrestricted prompts
there (no area, no mask), or of all prompts when every one is restricted; ComfyUI's
sampler predicts zeros there instead.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from graphflow import Choice, Float, node
from graphflow.types import Mask

from .types import Conditioning as ConditioningType
from .values import Conditioning, ConditioningEntry

FEATHER = 8  # latent pixels of ComfyUI's area-edge feathering (at most; side // 4 for small)
MIN_BOUNDS = 8  # ComfyUI's smallest "mask bounds" side, in latent pixels
AREA_UNITS = ["pixels", "fractions"]
SET_AREA = ["default", "mask bounds"]


# --------------------------------------------------------------------------- geometry


def is_latent_area(area: Any) -> bool:
    """Whether ``area`` is already (h, w, y, x) in latent pixels (not a tagged form)."""
    return area is not None and not isinstance(area[0], str)


def resolve_area(area: Any, latent_hw: tuple[int, int], downscale: int = 8):
    """``area`` in any of its forms as (h, w, y, x) latent pixels for a latent of
    ``latent_hw`` (h, w) whose VAE shrinks images ``downscale`` times; None stays None.

    Pixels become latent pixels by floor division (as ComfyUI's // 8), sides at least 1;
    fractions are rounded as ComfyUI rounds its percentages (sides at least 1).
    """
    if area is None or is_latent_area(area):
        return None if area is None else tuple(int(v) for v in area)
    unit, height, width, y, x = area
    if unit == "pixels":
        d = int(downscale)
        return max(1, int(height) // d), max(1, int(width) // d), int(y) // d, int(x) // d
    if unit == "fractions":
        full_h, full_w = latent_hw
        return (
            max(1, round(height * full_h)),
            max(1, round(width * full_w)),
            round(y * full_h),
            round(x * full_w),
        )
    raise ValueError(f"area unit {unit!r} is not one of {AREA_UNITS}")


def latent_mask(mask: Any, latent_hw: tuple[int, int], device=None, dtype=None):
    """A region mask (H, W), (B, H, W) or (B, 1, H, W) resized to the latent as ComfyUI
    resizes it (bilinear, align_corners=False): (B, h, w)."""
    import torch

    mask = torch.as_tensor(mask).to(device=device, dtype=dtype or torch.float32)
    mask = mask.reshape(-1, mask.shape[-2], mask.shape[-1])
    if tuple(mask.shape[-2:]) != tuple(latent_hw):
        mask = torch.nn.functional.interpolate(
            mask.unsqueeze(1), size=tuple(latent_hw), mode="bilinear", align_corners=False
        ).squeeze(1)
    return mask


def mask_bounds(mask: Any) -> tuple[int, int, int, int]:
    """ComfyUI's "mask bounds" of a latent-sized mask (B, h, w): the bounding box of the
    nonzero pixels of any item, (h, w, y, x) with sides at least 8; (8, 8, 0, 0) when the
    mask is empty (the prompt then adds nothing)."""
    import torch

    union = mask.abs().amax(dim=0)
    ys, xs = torch.nonzero(union, as_tuple=True)
    if len(ys) == 0:
        return MIN_BOUNDS, MIN_BOUNDS, 0, 0
    top, left = int(ys.min()), int(xs.min())
    height = max(MIN_BOUNDS, int(ys.max()) - top + 1)
    width = max(MIN_BOUNDS, int(xs.max()) - left + 1)
    return height, width, top, left


def resolved(entry: ConditioningEntry, latent_hw, downscale: int = 8, device=None, dtype=None):
    """``entry`` with its area in latent pixels and its mask resized to the latent (and the
    mask's bounding box as its area when ``set_area_to_bounds``), as ComfyUI resolves
    prompts before sampling. Entries without a region are returned as they are."""
    if entry.area is None and entry.mask is None:
        return entry
    area = resolve_area(entry.area, latent_hw, downscale)
    mask = entry.mask
    if mask is not None:
        mask = latent_mask(mask, latent_hw, device, dtype)
        if entry.set_area_to_bounds:
            area = mask_bounds(mask)
    return replace(entry, area=area, mask=mask)


def feathered(area, shape, device=None, dtype=None):
    """ComfyUI's weight ramp over an area crop (h, w): 1 inside, feathered where the area
    does not touch the latent's border, over min(8, side // 4) latent pixels per side.
    ``shape`` ends with the latent's (h, w)."""
    import torch

    height, width, y, x = area
    full_h, full_w = shape[-2:]
    ramp_mask = torch.ones(height, width, device=device, dtype=dtype)
    ramp_h, ramp_w = min(FEATHER, height // 4), min(FEATHER, width // 4)
    for t in range(ramp_h):
        ramp = (t + 1) / ramp_h
        if y != 0:
            ramp_mask[t] *= ramp
        if y + height < full_h:
            ramp_mask[height - 1 - t] *= ramp
    for t in range(ramp_w):
        ramp = (t + 1) / ramp_w
        if x != 0:
            ramp_mask[:, t] *= ramp
        if x + width < full_w:
            ramp_mask[:, width - 1 - t] *= ramp
    return ramp_mask


def clipped(area, latent_hw) -> tuple[int, int, int, int] | None:
    """``area`` cut to the latent (as ComfyUI narrows it); None when nothing is left."""
    height, width, y, x = area
    height, width = min(height, latent_hw[0] - y), min(width, latent_hw[1] - x)
    if height <= 0 or width <= 0:
        return None
    return height, width, y, x


def batch_mask(mask, batch: int):
    """A (B', h, w) mask as (batch, 1, h, w): its first ``batch`` items, cycled if fewer."""
    mask = mask[:batch]
    if mask.shape[0] < batch:
        mask = mask.repeat(-(-batch // mask.shape[0]), 1, 1)[:batch]
    return mask.unsqueeze(1)


# --------------------------------------------------------------------------- native sampler


def is_regional(entry: ConditioningEntry) -> bool:
    """Whether ``entry`` is restricted in space or time, or has a strength other than 1."""
    return (
        entry.area is not None
        or entry.mask is not None
        or entry.timestep_range is not None
        or float(entry.strength) != 1.0
    )


def active_at_step(entry: ConditioningEntry, step: Any) -> bool:
    """Whether ``entry`` is used at ``step`` (a StepInfo with step_index/step_count): when
    start ≤ i/n < end, the last step included when end ≥ 1. No step info: always."""
    if entry.timestep_range is None or step is None:
        return True
    index, count = getattr(step, "step_index", None), getattr(step, "step_count", None)
    if index is None or not count:
        return True
    start, end = entry.timestep_range
    progress = index / count
    return start <= progress and (progress < end or end >= 1.0)


def weight_map(entry: ConditioningEntry, shape, downscale: int, device=None, dtype=None):
    """The native sampler's weight of ``entry`` over a latent of ``shape`` (B, C, h, w):
    weight × strength × (its feathered area, or its mask × mask_strength cut to its area),
    (B|1, 1, h, w); a float for a prompt without a region."""
    import torch

    scale = float(entry.weight) * float(entry.strength)
    if entry.area is None and entry.mask is None:
        return scale
    latent_hw = tuple(shape[-2:])
    entry = resolved(entry, latent_hw, downscale, device, dtype)
    if entry.mask is not None:
        weights = batch_mask(entry.mask, shape[0]) * float(entry.mask_strength)
        if entry.area is not None:
            inside = torch.zeros_like(weights)
            area = clipped(entry.area, latent_hw)
            if area is not None:
                h, w, y, x = area
                inside[..., y : y + h, x : x + w] = weights[..., y : y + h, x : x + w]
            weights = inside
        return weights * scale
    weights = torch.zeros(1, 1, *latent_hw, device=device, dtype=dtype)
    area = clipped(entry.area, latent_hw)
    if area is not None:
        h, w, y, x = area
        weights[..., y : y + h, x : x + w] = feathered(area, latent_hw, device, dtype)
    return weights * scale


def _plain_mean(predictions: list, entries: list) -> Any:
    """The weighted mean of ``predictions`` by each entry's ``weight`` (no regions)."""
    if len(predictions) == 1:
        return predictions[0]
    total = sum(float(e.weight) for e in entries)
    out = predictions[0] * (float(entries[0].weight) / total)
    for prediction, entry in zip(predictions[1:], entries[1:], strict=True):
        out = out + prediction * (float(entry.weight) / total)
    return out


def _fallback(predictions: list, entries: list, step: Any) -> Any:
    """Where no region covers a pixel: the unrestricted prompts' weighted mean (the active
    ones first), else every prompt's."""
    for wanted in (
        lambda e: e.area is None and e.mask is None and active_at_step(e, step),
        lambda e: e.area is None and e.mask is None,
        lambda e: True,
    ):
        chosen = [(p, e) for p, e in zip(predictions, entries, strict=True) if wanted(e)]
        if chosen:
            return _plain_mean([p for p, _ in chosen], [e for _, e in chosen])
    raise ValueError("a conditioning without entries cannot guide a sampler")


def combine(predictions: list, entries: list, step: Any = None) -> Any:
    """The native sampler's mix of ``predictions`` (one per conditioning entry of one
    prompt list, in the same order, each (B, C, h, w) for the whole latent).

    Without regional fields: the weighted mean by each entry's ``weight`` (bit for bit the
    plain average). Otherwise each pixel is Σ pᵢ·mᵢ / Σ mᵢ with mᵢ = :func:`weight_map` of
    the entries active at ``step``; pixels where Σ mᵢ = 0 take :func:`_fallback`.
    """
    import torch

    if not any(is_regional(e) for e in entries):
        return _plain_mean(predictions, entries)
    first = predictions[0]
    image_size = getattr(step, "image_size", None)
    downscale = 8 if image_size is None else max(1, image_size[0] // first.shape[-2])
    total = torch.zeros_like(first)
    count = torch.zeros((first.shape[0], 1, *first.shape[-2:]), device=first.device)
    count = count.to(first.dtype)
    for prediction, entry in zip(predictions, entries, strict=True):
        if not active_at_step(entry, step):
            continue
        weights = weight_map(entry, first.shape, downscale, first.device, first.dtype)
        total = total + prediction * weights
        count = count + weights
    covered = count > 0
    out = total / torch.where(covered, count, torch.ones_like(count))
    if bool(covered.all()):
        return out
    return torch.where(covered, out, _fallback(predictions, entries, step))


# --------------------------------------------------------------------------- nodes


def _with(conditioning: Conditioning, **fields: Any) -> Conditioning:
    """A copy of ``conditioning`` with ``fields`` set on every entry."""
    return Conditioning([replace(entry, **fields) for entry in conditioning.entries])


@node("diffusion.condition_area", category="diffusion/conditioning", display_name="Area Prompt")
def condition_area(
    conditioning: ConditioningType,
    x: Float(0.0, 16384.0, step=0.01) = 0.0,
    y: Float(0.0, 16384.0, step=0.01) = 0.0,
    width: Float(0.0, 16384.0, step=0.01) = 1.0,
    height: Float(0.0, 16384.0, step=0.01) = 1.0,
    units: Choice(AREA_UNITS) = "fractions",
    strength: Float(0.0, 10.0, step=0.01) = 1.0,
) -> ConditioningType:
    """Use this prompt only inside a rectangle of the image; combine it with other prompts
    (a whole-image one, or other areas) with Combine Conditioning.

    units "fractions": x, y, width, height are fractions of the image (0.5 = half);
    "pixels": image pixels (whole numbers). The rectangle is kept in these units and turned
    into latent pixels when sampled, with the latent's own VAE scale (so the same values
    work for graphflow-tiny's 4× and SD's 8× VAEs). strength scales the prompt's guidance
    inside the rectangle (its edges inside the image are feathered over a few pixels).
    """
    if units == "fractions":
        area = ("fractions", float(height), float(width), float(y), float(x))
    else:
        area = ("pixels", int(height), int(width), int(y), int(x))
    return _with(conditioning, area=area, strength=float(strength))


@condition_area.check
def _area_in_range(x=0.0, y=0.0, width=1.0, height=1.0, units="fractions", **_) -> list[str]:
    problems = []
    if units == "fractions":
        for name, value in (("x", x), ("y", y)):
            if not 0.0 <= value < 1.0:
                problems.append(f"{name}: {value} is not a fraction in [0, 1) (units: fractions)")
        for name, value in (("width", width), ("height", height)):
            if not 0.0 < value <= 1.0:
                problems.append(f"{name}: {value} is not a fraction in (0, 1] (units: fractions)")
    else:
        for name, value in (("x", x), ("y", y), ("width", width), ("height", height)):
            if value != int(value):
                problems.append(f"{name}: {value} is not a whole number of pixels")
        for name, value in (("width", width), ("height", height)):
            if value < 1:
                problems.append(f"{name}: {value} pixels is empty; give at least 1")
    return problems


@node("diffusion.condition_mask", category="diffusion/conditioning", display_name="Mask Prompt")
def condition_mask(
    conditioning: ConditioningType,
    mask: Mask,
    strength: Float(0.0, 10.0, step=0.01) = 1.0,
    set_area: Choice(SET_AREA) = "default",
) -> ConditioningType:
    """Use this prompt where the mask is white, weighted by the mask (× strength); combine
    it with other prompts with Combine Conditioning.

    The mask may have any size: it is resized to the latent when sampled. set_area "mask
    bounds" makes the sigma-space sampler (K Sampler) evaluate the prompt on the mask's
    bounding box only, as if that part were the whole picture (ComfyUI's option); the native
    sampler always runs prompts on the whole latent.
    """
    mask = mask if mask.dim() >= 3 else mask.unsqueeze(0)
    return _with(
        conditioning,
        mask=mask,
        mask_strength=float(strength),
        set_area_to_bounds=set_area == "mask bounds",
    )


@node(
    "diffusion.condition_timesteps",
    category="diffusion/conditioning",
    display_name="Prompt Timestep Range",
)
def condition_timesteps(
    conditioning: ConditioningType,
    start: Float(0.0, 1.0, step=0.001) = 0.0,
    end: Float(0.0, 1.0, step=0.001) = 1.0,
) -> ConditioningType:
    """Use this prompt only for part of the sampling run: from start to end, fractions of
    the run (0 = the first step, 1 = the last). Combine a prompt for the start (the
    composition) with another for the end (the details) to switch prompts mid-run.

    The native sampler counts steps of its run; the K Sampler follows ComfyUI, where the
    fractions are of the model's noise schedule (so with denoise < 1 the early part of the
    range may lie before the run starts).
    """
    return _with(conditioning, timestep_range=(float(start), float(end)))


@condition_timesteps.check
def _start_before_end(start=0.0, end=1.0, **_) -> list[str]:
    if start > end:
        return [f"start: {start} is after end {end}; the prompt would never be used"]
    return []


NODES = [condition_area, condition_mask, condition_timesteps]
