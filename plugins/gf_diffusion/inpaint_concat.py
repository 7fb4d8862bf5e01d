"""The extra UNet input channels of inpainting (mask + masked-image latent) and
InstructPix2Pix (image latent) checkpoints, called by ``unet_call.forward``; and the noise
mask shapes both samplers share.

A 9-channel inpainting UNet takes ``[latent, mask, masked-image latent]``; an 8-channel
InstructPix2Pix UNet ``[latent, image latent]``. Each conditioning entry may carry its own
channels (``concat_mask`` / ``concat_latent``, set by ``diffusion.inpaint_conditioning`` or
the InstructPix2Pix nodes); without them the fallback is ComfyUI's ``BaseModel.concat_cond``:
the sampler's noise mask (rounded) and the clean latent being sampled, or, when nothing is
masked, a mask of ones and ComfyUI's blank inpaint image; zeros for InstructPix2Pix.
"""

from __future__ import annotations

from typing import Any

# ComfyUI's "blank inpaint image": pixel value 0 (black) in SD's scaled latent space.
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)


def as_mask_planes(mask: Any, what: str = "noise mask") -> Any:
    """A mask (B, H, W), (B, 1, H, W) or (H, W) as float (B, 1, H, W)."""
    import torch

    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"the {what} is not a tensor (got {type(mask).__name__})")
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim == 4 and mask.shape[1] != 1:
        raise ValueError(
            f"the {what} has {mask.shape[1]} channels; a mask is (B, H, W) or (B, 1, H, W)"
        )
    if mask.ndim not in (3, 4):
        raise ValueError(
            f"the {what} has shape {tuple(mask.shape)}; a mask is (B, H, W) or (B, 1, H, W)"
        )
    return mask.reshape(mask.shape[0], 1, mask.shape[-2], mask.shape[-1]).float()


def fit_batch(tensor: Any, batch: int, what: str, of: str = "latent") -> Any:
    """``tensor`` (N, ...) for a batch of ``batch``: as is when N matches, repeated when N
    divides it (one mask for every image, or one per prompt repeated); else a ValueError
    naming both sizes."""
    count = tensor.shape[0]
    if count == batch:
        return tensor
    if count and batch % count == 0:
        return tensor.repeat(batch // count, *([1] * (tensor.ndim - 1)))
    raise ValueError(
        f"the {what} has a batch of {count} but the {of} has {batch}: give one {what} for "
        f"all, or one per item"
    )


def resize_planes(planes: Any, size: tuple[int, int], mode: str) -> Any:
    """(B, C, h, w) resized to ``size`` (nothing done when it already is that size)."""
    import torch

    if tuple(planes.shape[-2:]) == tuple(size):
        return planes
    if mode == "nearest":  # diffusers' prepare_mask_latents: F.interpolate's default
        return torch.nn.functional.interpolate(planes, size=tuple(size))
    return torch.nn.functional.interpolate(planes, size=tuple(size), mode=mode)


def _full_size(model_in, step) -> tuple[int, int]:
    """(h, w) of the whole latent (``model_in`` may be an area crop of it)."""
    if step is not None and step.area is not None and step.latent is not None:
        return tuple(step.latent.shape[-2:])
    return tuple(model_in.shape[-2:])


def _crop(planes, step):
    if step is None or step.area is None:
        return planes
    height, width, y, x = step.area
    return planes[..., y : y + height, x : x + width]


def _prepared(planes, batch: int, size, model_in, step, mode: str, what: str):
    """Extra-channel planes on the model's device, at the latent's size, for ``batch`` rows,
    cropped to the call's area."""
    planes = planes.to(device=model_in.device, dtype=model_in.dtype)
    planes = resize_planes(planes, size, mode)
    planes = fit_batch(planes, batch, what)
    return _crop(planes, step)


def _inpaint_channels(entry, batch: int, size, model_in, step) -> list:
    """[mask (batch, 1, h, w), masked-image latent (batch, 4, h, w)] for one entry."""
    import torch

    mask = entry.concat_mask if entry.concat_mask is not None else getattr(step, "noise_mask", None)
    if mask is None:  # ComfyUI: nothing masked → repaint everything from a blank image
        shape = (batch, 1, *size)
        ones = torch.ones(shape, device=model_in.device, dtype=model_in.dtype)
        blank = torch.tensor(BLANK_INPAINT_LATENT, device=model_in.device, dtype=model_in.dtype)
        image = blank.view(1, 4, 1, 1).expand(batch, 4, *size)
        return [_crop(ones, step), _crop(image, step)]
    image = entry.concat_latent if entry.concat_latent is not None else step.latent
    if image is None:
        raise ValueError(
            "this inpainting model needs the masked image: connect Inpaint Conditioning, or "
            "sample a latent with a noise mask"
        )
    mask = _prepared(as_mask_planes(mask, "inpainting mask"), batch, size, model_in, step,
                     "bilinear", "inpainting mask").round()  # fmt: skip
    image = _prepared(image, batch, size, model_in, step, "bilinear", "masked-image latent")
    return [mask, image]


def _pix2pix_channels(entry, batch: int, size, model_in, step) -> list:
    """[image latent (batch, 4, h, w)] for one entry; zeros when it carries none."""
    import torch

    if entry.concat_latent is None:
        return [torch.zeros((batch, 4, *model_in.shape[-2:]), device=model_in.device,
                            dtype=model_in.dtype)]  # fmt: skip
    return [_prepared(entry.concat_latent, batch, size, model_in, step, "bilinear", "image latent")]


def with_extra_channels(unet, model_in, entries, batch: int, step):
    """``model_in`` with the channels a 9- or 8-channel UNet takes after the latent's.

    ``model_in`` holds ``batch`` rows per entry (entry 0's first); each entry's channels
    are its own or the fallback (module docstring), resized to the latent (bilinear; the
    mask rounded, as ComfyUI), repeated to the batch and cropped to ``step.area``.
    """
    import torch

    expected = int(getattr(unet.config, "in_channels", model_in.shape[1]))
    have = model_in.shape[1]
    if have == expected:
        return model_in
    kind = {(9, 4): _inpaint_channels, (8, 4): _pix2pix_channels}.get((expected, have))
    if kind is None:
        raise ValueError(f"this UNet takes {expected} input channels; the latent has {have}")
    if len(entries) * batch != model_in.shape[0]:
        raise ValueError(
            f"the model input has {model_in.shape[0]} rows for {len(entries)} prompts of "
            f"batch {batch}"
        )
    size = _full_size(model_in, step)
    rows = []
    for index, entry in enumerate(entries):
        part = model_in[index * batch : (index + 1) * batch]
        rows.append(torch.cat([part, *kind(entry, batch, size, part, step)], dim=1))
    return torch.cat(rows)
