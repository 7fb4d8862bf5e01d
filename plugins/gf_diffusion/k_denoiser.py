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

from . import regions, unet_call
from .sigmas import ModelSigmas
from .unet_call import StepInfo
from .values import Conditioning, ConditioningEntry

FEATHER = regions.FEATHER  # latent pixels of ComfyUI's area-edge feathering


@dataclass
class _Prepared:
    """One conditioning entry moved to the run's device, with its SDXL extras."""

    embeds: Any
    pooled: Any
    weight: float
    area: tuple[int, int, int, int] | None
    time_ids: Any
    source: ConditioningEntry  # the entry itself (its controls and extra channels)
    mask: Any = None  # (B', h, w) on the latent × mask_strength, or None
    sigma_range: tuple[float, float] | None = None  # (from σ, down to σ), both included

    def active(self, sigma: float) -> bool:
        """Whether the entry guides at ``sigma`` (ComfyUI's timestep_start / _end)."""
        if self.sigma_range is None:
            return True
        start, end = self.sigma_range
        return not (sigma > start or sigma < end)


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
    return regions.feathered(area, shape, device, dtype)


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
    as a copy of ``entry`` (its area, mask, strength, range, controls) carrying that prompt
    and its model inputs; None when no pairing is needed."""

    def size(area) -> int:
        return area[0] * area[1]

    smallest = None
    for other in entries:
        if other.area is None:
            smallest = other if smallest is None else smallest
        elif not regions.is_latent_area(other.area):
            continue  # not resolved: cannot be compared (only when pairing without a latent)
        elif _inside(entry.area, other.area) and (
            smallest is None or smallest.area is None or size(smallest.area) > size(other.area)
        ):
            smallest = other
    if smallest is None or (smallest.area is not None and smallest.area == entry.area):
        return None
    return replace(
        entry, embeds=smallest.embeds, pooled=smallest.pooled,
        sdxl_sizes=smallest.sdxl_sizes, aesthetic_score=smallest.aesthetic_score,
        concat_latent=smallest.concat_latent, concat_mask=smallest.concat_mask,
    )  # fmt: skip


def with_opposite_areas(positive: Conditioning, negative: Conditioning):
    """The two prompt lists with every area entry paired in the other list, as ComfyUI's
    process_conds does before sampling (positive areas first, then the negative's, which by
    then include the copies just added). Areas must be resolved (latent pixels,
    ``regions.resolved``); entries whose area is still in pixels or fractions are skipped."""
    lists = {"positive": list(positive.entries), "negative": list(negative.entries)}
    for name, other in (("positive", "negative"), ("negative", "positive")):
        for entry in lists[name]:
            if regions.is_latent_area(entry.area):
                paired = _opposite(lists[other], entry)
                if paired is not None:
                    lists[other].append(paired)
    return Conditioning(lists["positive"]), Conditioning(lists["negative"])


def percent_to_sigma(ms: ModelSigmas, percent: float) -> float:
    """ComfyUI's percent_to_sigma: the noise level a fraction of the schedule starts at
    (0 → above every σ, 1 → 0), read at timestep (1 − percent)·(T − 1)."""
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    return float(ms.sigma((1.0 - percent) * (len(ms.sigmas) - 1)))


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
        self._given = (positive, negative)  # resolved and paired per latent shape
        self.positive, self.negative = with_opposite_areas(positive, negative)
        self._lists: dict[tuple, tuple[Conditioning, Conditioning]] = {}
        self.calls = 0
        self.keep_uncond = False  # CFG++ samplers set it: the negative prompt even at cfg 1
        self.last_uncond = None  # the unguided x0 of the last call
        self.dtype = getattr(unet, "dtype", None)
        self._prepared: dict[tuple, list[_Prepared]] = {}
        self.inputs = SampledInputs()  # k_sample fills it in

    def _resolved_lists(self, x) -> tuple[Conditioning, Conditioning]:
        """Both prompt lists for a latent like ``x``: areas in latent pixels, masks on the
        latent, then paired as ComfyUI's process_conds does (in that order)."""
        key = (tuple(x.shape[-2:]), x.device)
        if key not in self._lists:
            latent_hw = tuple(x.shape[-2:])
            lists = []
            for conditioning in self._given:
                entries = conditioning.entries
                resolve = regions.resolved
                lists.append(
                    Conditioning([resolve(e, latent_hw, self.downscale, x.device) for e in entries])
                )
            self._lists[key] = with_opposite_areas(*lists)
        return self._lists[key]

    def _prepared_entry(self, entry: ConditioningEntry, which: str, x) -> _Prepared:
        """One resolved entry on the run's device, with its SDXL ids, mask and σ range."""
        if self.sdxl and entry.pooled is None:
            raise ValueError("this is an SDXL model: its conditioning needs the pooled embedding")
        time_ids = None
        if self.sdxl:
            height, width = (side * self.downscale for side in x.shape[-2:])
            count = _time_id_count(self.unet, entry)
            negative = which == "negative"
            time_ids = _time_ids(entry, height, width, x.device, self.dtype, count, negative)
        mask = None
        if entry.mask is not None:
            mask = entry.mask.to(x.device, x.dtype) * float(entry.mask_strength)
        sigma_range = None
        if entry.timestep_range is not None:
            start, end = entry.timestep_range
            sigma_range = (percent_to_sigma(self.ms, start), percent_to_sigma(self.ms, end))
        return _Prepared(
            entry.embeds.to(device=x.device, dtype=self.dtype),
            None if entry.pooled is None else entry.pooled.to(x.device, self.dtype),
            float(entry.weight) * float(entry.strength),
            entry.area,
            time_ids,
            entry,
            mask,
            sigma_range,
        )

    def _entries(self, which: str, x) -> list[_Prepared]:
        key = (which, tuple(x.shape), x.device, x.dtype)
        if key not in self._prepared:
            positive, negative = self._resolved_lists(x)
            conditioning = positive if which == "positive" else negative
            self._prepared[key] = [self._prepared_entry(e, which, x) for e in conditioning.entries]
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
        """The weighted, region-aware average x0 of one prompt list (ComfyUI's
        calc_cond_batch): entries outside their timestep range are skipped, whole-latent
        entries are batched, area entries run on their crop; each adds x0 × mult where mult
        is weight × strength × (its mask × mask_strength, or its area's feathered ramp)."""
        import torch

        entries = [e for e in self._entries(which, x) if e.active(sigma)]
        total = torch.zeros_like(x)
        count = torch.full_like(x, 1e-37)
        groups: dict[tuple, list[_Prepared]] = {}
        for e in entries:
            if e.area is None:
                groups.setdefault(tuple(e.embeds.shape[2:]), []).append(e)
        for group in groups.values():
            for e, x0 in zip(group, self._model_x0(x, sigma, group), strict=True):
                mult = e.weight
                if e.mask is not None:
                    mult = regions.batch_mask(e.mask, x.shape[0]) * e.weight
                total += x0 * mult
                count += mult
        for e in entries:
            area = None if e.area is None else regions.clipped(e.area, x.shape[-2:])
            if area is None:
                continue
            height, width, y, x_at = area
            crop = x[..., y : y + height, x_at : x_at + width]
            (x0,) = self._model_x0(crop, sigma, [e], area)
            if e.mask is not None:
                mask = e.mask[:, y : y + height, x_at : x_at + width]
                mult = regions.batch_mask(mask, x.shape[0]) * e.weight
            else:
                mult = _area_mask(area, x.shape, x.device, x.dtype) * e.weight
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
