"""Latent nodes: empty latents to start from, and walks between latents."""

from __future__ import annotations

from graphflow import Choice, Float, Int, node

from .types import Latent as LatentType
from .types import Vae
from .values import Latent


def vae_geometry(vae) -> tuple[int, int, float, float]:
    """(downscale factor, latent channels, scaling factor, shift factor) of a VAE, or SD's.

    ``vae`` is a VAE handle (its configuration is read, nothing is computed) or None.
    """
    if vae is None:
        return 8, 4, 0.18215, 0.0
    config = vae.unpatched.config
    factor = 2 ** (len(config.block_out_channels) - 1)
    shift = getattr(config, "shift_factor", None) or 0.0
    return factor, config.latent_channels, config.scaling_factor, shift


@node("diffusion.empty_latent", category="diffusion/latent", display_name="Empty Latent")
def empty_latent(
    width: Int(min=8, max=16384, step=8) = 512,
    height: Int(min=8, max=16384, step=8) = 512,
    batch_size: Int(min=1, max=64) = 1,
    vae: Vae = None,
) -> LatentType:
    """A blank latent for an image of width × height (multiples of 8).

    Connect the checkpoint's VAE when it is not an SD-style 8× / 4-channel one.
    """
    import torch

    factor, channels, scaling, shift = vae_geometry(vae)
    if width % factor or height % factor:
        raise ValueError(f"width and height must be multiples of {factor} for this VAE")
    samples = torch.zeros(batch_size, channels, height // factor, width // factor)
    return Latent(samples, None, scaling, shift, factor)


@empty_latent.check
def _multiples_of_eight(width: int, height: int, **_) -> list[str]:
    problems = []
    for name, value in (("width", width), ("height", height)):
        if value % 8:
            problems.append(f"{name}: {value} is not a multiple of 8 (latents are 1/8 size)")
    return problems


def slerp(a, b, t: float):
    """Spherical interpolation per sample (falls back to lerp for nearly parallel latents)."""
    import torch

    flat_a, flat_b = a.reshape(a.shape[0], -1).float(), b.reshape(b.shape[0], -1).float()
    unit_a = flat_a / flat_a.norm(dim=1, keepdim=True).clamp_min(1e-8)
    unit_b = flat_b / flat_b.norm(dim=1, keepdim=True).clamp_min(1e-8)
    dot = (unit_a * unit_b).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    parallel = sin_omega.abs() < 1e-6
    weight_a = torch.where(
        parallel, 1 - t, torch.sin((1 - t) * omega) / sin_omega.where(~parallel, 1)
    )
    weight_b = torch.where(
        parallel, torch.full_like(omega, t), torch.sin(t * omega) / sin_omega.where(~parallel, 1)
    )
    return (weight_a * flat_a + weight_b * flat_b).reshape(a.shape).to(a.dtype)


@node(
    "diffusion.interpolate_latents", category="diffusion/latent", display_name="Interpolate Latents"
)
def interpolate_latents(
    a: LatentType,
    b: LatentType,
    t: Float(0.0, 1.0, step=0.01) = 0.5,
    method: Choice(["slerp", "lerp"]) = "slerp",
) -> LatentType:
    """Walk between two latents: t = 0 gives a, t = 1 gives b (slerp keeps the noise norm)."""
    if a.samples.shape != b.samples.shape:
        raise ValueError(
            f"latents differ in shape: {tuple(a.samples.shape)} and {tuple(b.samples.shape)}"
        )
    other = b.samples.to(a.samples.device)
    mixed = a.samples * (1 - t) + other * t if method == "lerp" else slerp(a.samples, other, t)
    return a.replaced(mixed)


NODES = [empty_latent, interpolate_latents]
