"""ControlNet and T2I-Adapter residuals for one UNet call, called by ``unet_call.forward``.

A call holds the rows of several prompt entries (entry k's ``batch`` rows at k·batch). Each
distinct :class:`~gf_diffusion.values.ControlSpec` among the entries' ``controls`` runs once,
on the rows of the entries that carry it, with those rows' latents, timestep, text states
and (SDXL) added conditioning; rows without it get zeros. Several controls add up, which is
what diffusers' ``MultiControlNetModel`` / ``MultiAdapter`` compute.

When a control acts (``t2i_adapter.control_active``): the native sampler uses diffusers'
rule on the step index (off while i/n < start or (i+1)/n > end); the sigma-space sampler
ComfyUI's on the noise level (off while σ > σ(start) or σ < σ(end), ``percent_to_sigma``).

The hint is sized for the ControlNet: (latent size) × (its hint embedding's downscale), the
native sampler stretching it (bilinear) and the sigma-space sampler cropping it to the
aspect and resizing nearest-exact (ComfyUI's rule), the same preparation as T2I-Adapters'
(``t2i_adapter.hint_tensor``). For an area crop the hint is sized to the whole image and
the crop's part is taken. Prepared hints are kept (a few, least recent out), so the
resizing happens once per run, not once per step.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

HINT_CACHE_SIZE = 8
_HINTS: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
_HINTS_LOCK = threading.Lock()


def distinct_controls(entries) -> list[Any]:
    """Every ControlSpec of ``entries``, once each (by identity), in order of appearance."""
    seen: dict[int, Any] = {}
    for entry in entries:
        for spec in getattr(entry, "controls", ()) or ():
            seen.setdefault(id(spec), spec)
    return list(seen.values())


def rows_of(spec: Any, entries, batch: int) -> list[int]:
    """The rows of a UNet call whose entry carries ``spec``."""
    rows: list[int] = []
    for k, entry in enumerate(entries):
        if any(s is spec for s in getattr(entry, "controls", ()) or ()):
            rows.extend(range(k * batch, (k + 1) * batch))
    return rows


def is_active(spec: Any, step: Any) -> bool:
    """Whether ``spec`` acts at ``step`` (the samplers' rules; see the module docstring)."""
    from .t2i_adapter import control_active

    return spec.strength != 0 and control_active(spec, step)


def hint_downscale(net: Any) -> int:
    """Hint pixels per latent pixel of a ControlNet (2 per stride-2 step of its hint
    embedding: 8 for the released SD ControlNets)."""
    return 2 ** (len(net.config.conditioning_embedding_out_channels) - 1)


def clear_cache() -> None:
    """Forget the prepared hints."""
    with _HINTS_LOCK:
        _HINTS.clear()


def _hint_pixels(spec: Any, net: Any, latent_size, step: Any):
    """The hint batch (Bh, 3, H, W) for a call on ``latent_size`` at ``step`` (kept)."""
    from .t2i_adapter import hint_tensor

    factor = hint_downscale(net)
    area = getattr(step, "area", None) if step is not None else None
    image_size = getattr(step, "image_size", None) if step is not None else None
    comfy = step is not None and step.sigma is not None
    want = (int(latent_size[0]) * factor, int(latent_size[1]) * factor)
    full = tuple(int(s) for s in image_size) if area is not None and image_size else want
    param = next(net.parameters())
    key = (id(spec.hint), full, want, area, comfy, str(param.device), str(param.dtype))
    with _HINTS_LOCK:
        kept = _HINTS.get(key)
        if kept is not None and kept[0] is spec.hint:
            _HINTS.move_to_end(key)
            return kept[1]
    channels = int(net.config.conditioning_channels)
    image = hint_tensor(spec.hint.to(param.device), full, channels, comfy)
    if area is not None and image_size:
        h, w, y, x = (int(v) for v in area)
        image = image[..., y * factor : (y + h) * factor, x * factor : (x + w) * factor]
        if tuple(image.shape[-2:]) != want:
            image = hint_tensor(image.movedim(1, -1), want, channels, comfy)
    image = image.to(dtype=param.dtype)
    with _HINTS_LOCK:
        _HINTS[key] = (spec.hint, image)  # the hint is kept so its id stays its own
        while len(_HINTS) > HINT_CACHE_SIZE:
            _HINTS.popitem(last=False)
    return image


def _check_fits(net: Any, encoder_states, added, name: str) -> None:
    width = net.config.cross_attention_dim
    if encoder_states.shape[-1] != width:
        raise ValueError(
            f"{name} expects text states of width {width}, the prompt has "
            f"{encoder_states.shape[-1]}: use a ControlNet made for this model's family"
        )
    if net.config.addition_embed_type == "text_time" and not added:
        raise ValueError(f"{name} is an SDXL ControlNet: it needs an SDXL model and prompt")


def _controlnet_rows(spec, rows, model_in, timestep, encoder_states, added, batch, step):
    """(down residuals, mid residual) of one ControlNet for ``rows`` of the call."""
    import torch

    index = torch.tensor(rows, device=model_in.device)
    with spec.model.on_device(model_in.device) as net:
        _check_fits(net, encoder_states, added, "this ControlNet")
        dtype = net.dtype
        hint = _hint_pixels(spec, net, model_in.shape[-2:], step)
        items = torch.tensor([r % batch for r in rows], device=hint.device) % hint.shape[0]
        t = timestep
        if torch.is_tensor(t) and t.ndim > 0 and t.numel() == model_in.shape[0]:
            t = t[index]
        extra = None
        if net.config.addition_embed_type == "text_time":
            extra = {k: v[index].to(dtype) for k, v in added.items()}
        down, mid = net(
            model_in[index].to(dtype),
            t,
            encoder_hidden_states=encoder_states[index].to(dtype),
            controlnet_cond=hint[items],
            conditioning_scale=float(spec.strength),
            added_cond_kwargs=extra,
            return_dict=False,
        )
    return list(down), mid


def _scattered(total, part, index, rows_total: int, whole: bool, dtype):
    """``total`` plus ``part`` placed on rows ``index`` of a ``rows_total``-row batch."""
    import torch

    part = part.to(dtype)
    if not whole:
        full = torch.zeros((rows_total, *part.shape[1:]), device=part.device, dtype=dtype)
        full[index] = part
        part = full
    return part if total is None else total + part


def _controlnets(specs, model_in, timestep, encoder_states, added, entries, batch, step):
    import torch

    total = model_in.shape[0]
    down: list[Any] | None = None
    mid = None
    for spec in specs:
        rows = rows_of(spec, entries, batch)
        if not rows or not is_active(spec, step):
            continue
        d, m = _controlnet_rows(spec, rows, model_in, timestep, encoder_states, added, batch, step)
        index = torch.tensor(rows, device=model_in.device)
        whole = len(rows) == total
        if down is not None and len(down) != len(d):
            raise ValueError(
                f"ControlNets with {len(down)} and {len(d)} residuals cannot be combined: use "
                "ControlNets made for the same model"
            )
        down = [
            _scattered(None if down is None else down[i], r, index, total, whole, model_in.dtype)
            for i, r in enumerate(d)
        ]
        mid = _scattered(mid, m, index, total, whole, model_in.dtype)
    if down is None:
        return {}
    return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}


def _adapters(specs, model_in, entries, batch, step):
    import torch

    from . import t2i_adapter

    total = model_in.shape[0]
    summed: list[Any] | None = None
    for spec in specs:
        rows = rows_of(spec, entries, batch)
        if not rows or spec.strength == 0:
            continue
        image_size = getattr(step, "image_size", None)
        area = getattr(step, "area", None)
        features = t2i_adapter.adapter_residuals(
            spec, len(rows), image_size, area, model_in.device, model_in.dtype, step,
            latent_size=tuple(model_in.shape[-2:]),
        )  # fmt: skip
        if features is None:
            continue
        index = torch.tensor(rows, device=model_in.device)
        whole = len(rows) == total
        placed = [_scattered(None, f, index, total, whole, model_in.dtype) for f in features]
        summed = t2i_adapter.add_residuals(summed, placed)
    return {} if summed is None else {"down_intrablock_additional_residuals": summed}


def residuals(model_in, timestep, encoder_states, added, entries, batch: int, step) -> dict:
    """The UNet keyword arguments for the controls of ``entries``: ControlNets'
    ``down_block_additional_residuals`` and ``mid_block_additional_residual``, T2I-Adapters'
    ``down_intrablock_additional_residuals``; empty when no control acts at this step.

    ``model_in``: the scaled latent-channel input (len(entries)·batch rows); ``added``:
    SDXL's added conditioning for the same rows (or None); ``step``: a ``StepInfo``.
    """
    specs = distinct_controls(entries)
    if not specs:
        return {}
    unknown = {s.kind for s in specs} - {"controlnet", "t2i_adapter"}
    if unknown:
        raise ValueError(f"unknown control kind(s) {sorted(unknown)} (controlnet, t2i_adapter)")
    nets = [s for s in specs if s.kind == "controlnet"]
    adapters = [s for s in specs if s.kind == "t2i_adapter"]
    out = {}
    if nets:
        out.update(
            _controlnets(nets, model_in, timestep, encoder_states, added, entries, batch, step)
        )
    if adapters:
        out.update(_adapters(adapters, model_in, entries, batch, step))
    return out
