"""Walks through latent space: samples on the way from one prompt to another (same starting
noise), or from one seed's starting noise to another's (same prompt).

Each point of the walk is sampled like the K-Sampler samples (Euler, ComfyUI's "normal"
schedule), so the two ends are exactly what the K-Sampler gives for prompt A / seed A and
prompt B / seed B. Along the way the moving quantity follows a great circle (slerp) or a
straight line (lerp). Gaussian noise of D values has length close to √D; the lerp midpoint of
two independent draws is only about √(D/2) long, so lerp's middle images start from too
little noise and come out flat. slerp keeps the length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gf_diffusion.types import Conditioning as ConditioningType
from gf_diffusion.types import Latent as LatentType
from gf_diffusion.types import Model
from graphflow import Choice, Float, Int, NodeContext, Outputs, String, node

if TYPE_CHECKING:
    import torch

CATEGORY = "vision/latent space"


def walk_fractions(count: int) -> list[float]:
    """``count`` evenly spaced fractions from 0 to 1, both ends included."""
    return [i / (count - 1) for i in range(count)] if count > 1 else [0.0]


def mix(a: torch.Tensor, b: torch.Tensor, t: float, method: str) -> torch.Tensor:
    """a → b at fraction t: along the straight line ("lerp") or the great circle ("slerp",
    which keeps the norm); t = 0 is a and t = 1 is b."""
    from gf_diffusion.latents import slerp

    if a.shape != b.shape:
        raise ValueError(f"cannot walk between shapes {tuple(a.shape)} and {tuple(b.shape)}")
    b = b.to(a.device, a.dtype)
    if t == 0.0 or t == 1.0:
        return a if t == 0.0 else b  # exact ends, whatever rounding slerp's weights have
    if method == "lerp":
        return a * (1 - t) + b * t
    return slerp(a.unsqueeze(0), b.unsqueeze(0), t)[0]


def mixed_conditioning(a, b, t: float, method: str):
    """The first prompt of conditioning ``a`` moved toward the first of ``b`` (its token
    embeddings, and SDXL's pooled embedding when both have one)."""
    from dataclasses import replace

    from gf_diffusion.values import Conditioning

    first, other = a.entries[0], b.entries[0]
    embeds = mix(first.embeds, other.embeds, t, method)
    pooled = first.pooled
    if pooled is not None and other.pooled is not None:
        pooled = mix(pooled, other.pooled, t, method)
    return Conditioning([replace(first, embeds=embeds, pooled=pooled)])


def start_noise_scale(model_sigmas, sigmas) -> float:
    """How much the K-Sampler scales its starting noise: a run from σ_max starts at
    noise × √(1 + σ²) (ComfyUI's rule for variance-preserving models), a partial one at
    noise × σ."""
    first = float(sigmas[0])
    sigma_max = model_sigmas.sigma_max
    full = abs(first - sigma_max) <= 1e-5 * sigma_max or first > sigma_max
    return (1 + first**2) ** 0.5 if full else first


@node("vision.latent_walk", category=CATEGORY, display_name="Latent Walk")
def latent_walk(
    model: Model,
    positive_a: ConditioningType,
    negative: ConditioningType,
    latent: LatentType,
    positive_b: ConditioningType = None,
    walk: Choice(["prompts", "seeds"]) = "prompts",
    count: Int(min=2, max=64) = 8,
    method: Choice(["slerp", "lerp"]) = "slerp",
    seed_a: Int(min=0, max=2**63 - 1) = 0,
    seed_b: Int(min=0, max=2**63 - 1) = 1,
    steps: Int(min=1, max=1000) = 25,
    cfg: Float(0.0, 30.0, step=0.1) = 4.0,
    ctx: NodeContext = None,
) -> Outputs(latent=LatentType, labels=String):
    """Sample count points on the way from A to B, as one latent batch (Euler, "normal").

    walk "prompts": the same starting noise (seed_a), the conditioning moved from positive_a
    to positive_b. walk "seeds": positive_a throughout, the starting noise moved from
    seed_a's to seed_b's (positive_b is not needed). slerp follows the great circle, which
    keeps the length Gaussian noise has (lerp's midpoints are too quiet and come out
    flat). The first and last items are the K-Sampler's images of A and B. The latent input
    gives the size (its first item is used). labels: one "t = …" per item, for Image Grid's
    cell labels.
    """
    import torch

    from gf_diffusion.k_sampler_node import sample_latent
    from gf_diffusion.k_sampling import comfy_noise, model_sigmas_of
    from gf_diffusion.sigmas import ksampler_sigmas

    if walk == "prompts" and positive_b is None:
        raise ValueError("a walk between prompts needs positive_b (the prompt to walk to)")
    base = latent.replaced(latent.samples[:1].float())
    ms = model_sigmas_of(model)
    sigmas = ksampler_sigmas(ms, "normal", steps, "euler", 1.0)
    scale = start_noise_scale(ms, sigmas)
    noise_a = comfy_noise(base.samples.shape, seed_a)[0]
    noise_b = comfy_noise(base.samples.shape, seed_b)[0]
    fractions = walk_fractions(count)
    items = []
    for index, t in enumerate(fractions):
        if ctx is not None:
            ctx.check_interrupt()
        prompt, noise = positive_a, noise_a
        if walk == "prompts":
            prompt = mixed_conditioning(positive_a, positive_b, t, method)
        else:
            noise = mix(noise_a, noise_b, t, method)
        start = base.replaced(base.samples + noise.unsqueeze(0) * scale)
        # the noise is already in ``start``: no noise added, ancestral seed unused by Euler
        items.append(sample_latent(model, prompt, negative, start, sigmas, "euler", cfg,
                                   seed_a, False, None))  # fmt: skip
        if ctx is not None:
            ctx.progress(index + 1, count)
    labels = "\n".join(f"t = {t:.2f}" for t in fractions)
    return base.replaced(torch.cat(items)), labels
