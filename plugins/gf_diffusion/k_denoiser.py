"""A diffusers UNet seen as a denoiser in sigma space, D(x, σ) → x0, with ComfyUI's guidance.

The sampler loops (k_samplers.py) work on x = x0 + σ·ε. A discrete ε-model sees
``x·c_in`` with c_in = 1/√(σ²+1) at timestep t(σ) (the table index nearest in log σ, as
ComfyUI passes it), and x0 = x − σ·ε; a v-model gives x0 = x·c_in² − v·σ·c_in.

Guidance follows ComfyUI: every conditioning entry is evaluated (entries of one prompt list
batched into one model call where they share a shape), each adds its prediction × weight ×
strength to the region it covers (its ``area``, feathered over min(8, side // 4) latent
pixels at inner edges), the sum is divided by the total weight there, and cfg mixes the two
in x0 space:
uncond + cfg·(cond − uncond); cfg = 1 skips the negative prompt. SDXL's pooled embedding
and size ids travel per entry (``sdxl_sizes`` / ``aesthetic_score`` when set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from . import unet_call
from .sigmas import ModelSigmas
from .unet_call import StepInfo
from .values import Conditioning, ConditioningEntry

FEATHER = 8  # latent pixels of ComfyUI's area-edge feathering


@dataclass
class _Prepared:
    """One conditioning entry moved to the run's device, with its SDXL extras."""

    embeds: Any
    pooled: Any
    weight: float
    area: tuple[int, int, int, int] | None
    time_ids: Any
    source: ConditioningEntry  # the entry itself (its controls and extra channels)


def _time_id_count(unet: Any, entry: ConditioningEntry) -> int:
    """How many size ids the SDXL UNet takes: 6 for the base, 5 for the refiner (which
    swaps the target size for an aesthetic score)."""
    config = unet.config
    projection = getattr(config, "projection_class_embeddings_input_dim", None)
    per_id = getattr(config, "addition_time_embed_dim", None)
    if not projection or not per_id or entry.pooled is None:
        return 6
    return (int(projection) - int(entry.pooled.shape[-1])) // int(per_id)


def _time_ids(entry: ConditioningEntry, height, width, device, dtype, count=6, negative=False):
    """SDXL's size ids as ComfyUI's encode_adm builds them: the base's (original, crop,
    target) or the refiner's (original, crop, aesthetic score; 6 for a positive prompt
    without one, 2.5 for a negative), whatever node encoded the prompt."""
    import torch

    if entry.sdxl_sizes is not None:
        (oh, ow), (top, left), (th, tw) = entry.sdxl_sizes
    else:
        (oh, ow), (top, left), (th, tw) = (height, width), (0, 0), (height, width)
    if count == 5:
        score = entry.aesthetic_score
        values = [oh, ow, top, left, (2.5 if negative else 6.0) if score is None else score]
    else:
        values = [oh, ow, top, left, th, tw]
    return torch.tensor([values], dtype=dtype, device=device)


def _area_mask(area, shape, device, dtype):
    """ComfyUI's weight ramp over an area crop: 1 inside, feathered where the area does not
    touch the latent's border, over min(8, side // 4) latent pixels per side."""
    import torch

    height, width, y, x = area
    full_h, full_w = shape[-2:]
    mask = torch.ones(height, width, device=device, dtype=dtype)
    ramp_h, ramp_w = min(FEATHER, height // 4), min(FEATHER, width // 4)  # as ComfyUI
    for t in range(ramp_h):
        ramp = (t + 1) / ramp_h
        if y != 0:
            mask[t] *= ramp
        if y + height < full_h:
            mask[height - 1 - t] *= ramp
    for t in range(ramp_w):
        ramp = (t + 1) / ramp_w
        if x != 0:
            mask[:, t] *= ramp
        if x + width < full_w:
            mask[:, width - 1 - t] *= ramp
    return mask


def _inside(inner, outer) -> bool:
    """Whether area ``inner`` (h, w, y, x) lies within area ``outer``."""
    for size, offset in ((0, 2), (1, 3)):
        if inner[offset] < outer[offset]:
            return False
        if inner[offset] + inner[size] > outer[offset] + outer[size]:
            return False
    return True


def _opposite(entries: list[ConditioningEntry], entry: ConditioningEntry):
    """ComfyUI's create_cond_with_same_area_if_none: the prompt of the other list to pair
    with an area entry (the smallest area enclosing it, else the first whole-latent entry),
    as a copy of ``entry`` carrying that prompt; None when no pairing is needed."""

    def size(area) -> int:
        return area[0] * area[1]

    smallest = None
    for other in entries:
        if other.area is None:
            smallest = other if smallest is None else smallest
        elif _inside(entry.area, other.area) and (
            smallest is None or smallest.area is None or size(smallest.area) > size(other.area)
        ):
            smallest = other
    if smallest is None or (smallest.area is not None and smallest.area == entry.area):
        return None
    return replace(
        entry, embeds=smallest.embeds, pooled=smallest.pooled,
        sdxl_sizes=smallest.sdxl_sizes, aesthetic_score=smallest.aesthetic_score,
    )  # fmt: skip


def with_opposite_areas(positive: Conditioning, negative: Conditioning):
    """The two prompt lists with every area entry paired in the other list, as ComfyUI's
    process_conds does before sampling (positive areas first, then the negative's, which by
    then include the copies just added)."""
    lists = {"positive": list(positive.entries), "negative": list(negative.entries)}
    for name, other in (("positive", "negative"), ("negative", "positive")):
        for entry in lists[name]:
            if entry.area is not None:
                paired = _opposite(lists[other], entry)
                if paired is not None:
                    lists[other].append(paired)
    return Conditioning(lists["positive"]), Conditioning(lists["negative"])


@dataclass
class SampledInputs:
    """What the sampler knows about the latent being denoised, for the model's extra inputs
    (inpainting UNets take the clean latent and the noise mask): on the model's device."""

    latent: Any = None
    noise_mask: Any = None
    image_size: tuple[int, int] | None = None


class KDenoiser:
    """D(x, σ) for a UNet under positive/negative conditioning and a cfg scale.

    ``downscale`` converts latent pixels to image pixels for SDXL's size ids. Calling it
    returns the guided x0 prediction; ``calls`` counts model evaluations.
    """

    def __init__(
        self,
        unet: Any,
        model_sigmas: ModelSigmas,
        positive: Conditioning,
        negative: Conditioning,
        cfg: float,
        downscale: int = 8,
    ):
        self.unet = unet
        self.ms = model_sigmas
        self.cfg = float(cfg)
        self.downscale = downscale
        self.sdxl = getattr(unet.config, "addition_embed_type", None) == "text_time"
        self.positive, self.negative = with_opposite_areas(positive, negative)
        self.calls = 0
        self.keep_uncond = False  # CFG++ samplers set it: the negative prompt even at cfg 1
        self.last_uncond = None  # the unguided x0 of the last call
        self.dtype = getattr(unet, "dtype", None)
        self._prepared: dict[tuple, list[_Prepared]] = {}
        self.inputs = SampledInputs()  # k_sample fills it in

    def _entries(self, which: str, x) -> list[_Prepared]:
        key = (which, tuple(x.shape), x.device, x.dtype)
        if key not in self._prepared:
            conditioning = self.positive if which == "positive" else self.negative
            height, width = (side * self.downscale for side in x.shape[-2:])
            out = []
            for entry in conditioning.entries:
                if self.sdxl and entry.pooled is None:
                    raise ValueError(
                        "this is an SDXL model: its conditioning needs the pooled embedding"
                    )
                time_ids = None
                if self.sdxl:
                    count = _time_id_count(self.unet, entry)
                    negative = which == "negative"
                    time_ids = _time_ids(
                        entry, height, width, x.device, self.dtype, count, negative
                    )
                out.append(
                    _Prepared(
                        entry.embeds.to(device=x.device, dtype=self.dtype),
                        None if entry.pooled is None else entry.pooled.to(x.device, self.dtype),
                        float(entry.weight) * float(entry.strength),
                        entry.area,
                        time_ids,
                        entry,
                    )
                )
            self._prepared[key] = out
        return self._prepared[key]

    def _model_x0(self, x, sigma, entries: list[_Prepared], area=None):
        """x0 predictions of ``x`` (B, C, h, w) for each entry, in one batched call
        (``area``: where ``x`` was cropped from, (h, w, y, x) in latent pixels)."""
        import torch

        batch = x.shape[0]
        lengths = [e.embeds.shape[1] for e in entries]
        target = math.lcm(*lengths)
        states = torch.cat(
            [e.embeds.repeat(batch, target // e.embeds.shape[1], 1) for e in entries]
        )
        added = None
        if self.sdxl:
            added = {
                "text_embeds": torch.cat([e.pooled.repeat(batch, 1) for e in entries]),
                "time_ids": torch.cat([e.time_ids.repeat(batch, 1) for e in entries]),
            }
        c_in = 1.0 / math.sqrt(sigma**2 + 1.0)
        timestep = self.ms.timestep(sigma).to(x.device)
        model_in = (torch.cat([x] * len(entries)) * c_in).to(self.dtype or x.dtype)
        step = StepInfo(
            sigma=sigma, model_sigmas=self.ms, latent=self.inputs.latent,
            noise_mask=self.inputs.noise_mask, area=area, image_size=self.inputs.image_size,
        )  # fmt: skip
        sources = [e.source for e in entries]
        out = unet_call.forward(self.unet, model_in, timestep, states, added, sources, batch, step)
        out = out.to(x.dtype)
        self.calls += 1
        x_all = torch.cat([x] * len(entries))
        if self.ms.prediction_type == "v_prediction":
            x0 = x_all * c_in**2 - out * sigma * c_in
        else:
            x0 = x_all - out * sigma
        return list(x0.chunk(len(entries)))

    def _combined(self, x, sigma, which: str):
        """The weighted, area-aware average x0 of one prompt list (ComfyUI's calc_cond)."""
        import torch

        entries = self._entries(which, x)
        total = torch.zeros_like(x)
        count = torch.full_like(x, 1e-37)
        whole = [e for e in entries if e.area is None]
        groups: dict[tuple, list[_Prepared]] = {}
        for e in whole:
            groups.setdefault(tuple(e.embeds.shape[2:]), []).append(e)
        for group in groups.values():
            for e, x0 in zip(group, self._model_x0(x, sigma, group), strict=True):
                total += x0 * e.weight
                count += e.weight
        for e in entries:
            if e.area is None:
                continue
            height, width, y, x_at = e.area
            height = min(height, x.shape[-2] - y)
            width = min(width, x.shape[-1] - x_at)
            if height <= 0 or width <= 0:
                continue
            crop = x[..., y : y + height, x_at : x_at + width]
            (x0,) = self._model_x0(crop, sigma, [e], (height, width, y, x_at))
            mult = _area_mask((height, width, y, x_at), x.shape, x.device, x.dtype) * e.weight
            total[..., y : y + height, x_at : x_at + width] += x0 * mult
            count[..., y : y + height, x_at : x_at + width] += mult
        return total / count

    def __call__(self, x, sigma: float):
        """The guided x0 prediction at noise level ``sigma`` (a float)."""
        import torch

        sigma = float(sigma)
        with torch.no_grad():
            cond = self._combined(x, sigma, "positive")
            skip = math.isclose(self.cfg, 1.0) and not self.keep_uncond
            if skip or not self.negative.entries:
                self.last_uncond = cond
                return cond
            uncond = self._combined(x, sigma, "negative")
            self.last_uncond = uncond
            return uncond + (cond - uncond) * self.cfg


class MaskedDenoiser:
    """ComfyUI's inpainting wrapper: outside ``mask`` (1 = change) the latent is held at the
    original noised to the current level, and the prediction there is the original."""

    def __init__(self, inner, latent, noise, mask):
        self.inner, self.latent, self.noise, self.mask = inner, latent, noise, mask

    @property
    def keep_uncond(self) -> bool:
        """The wrapped denoiser's ``keep_uncond`` (CFG++ samplers set it)."""
        return self.inner.keep_uncond

    @keep_uncond.setter
    def keep_uncond(self, value: bool) -> None:
        self.inner.keep_uncond = value

    @property
    def last_uncond(self):
        """The wrapped denoiser's unguided x0 of its last call."""
        return self.inner.last_uncond

    def __call__(self, x, sigma: float):
        """x0 with the unmasked region pinned to the original latent."""
        keep = 1.0 - self.mask
        x = x * self.mask + (self.latent + self.noise * float(sigma)) * keep
        return self.inner(x, sigma) * self.mask + self.latent * keep
