"""GAN nodes: load a generator, sample images from seeds, interpolate between two seeds.

A GAN generator maps a latent vector z ~ N(0, I) (nz numbers) to an image in one forward
pass. Seeds are per image: image i of a batch is drawn from seed + i by a CPU generator, so a
sample is the same on any device and in any batch (Sample GAN with seed 7 and batch 4 holds
the images of seeds 7, 8, 9 and 10), and GAN Latent Interpolation's ends are exactly the
samples of its two seeds.

Truncation (the "truncation trick" of BigGAN and StyleGAN) trades variety for typicality:
latents far from the centre of the normal distribution are the ones the generator saw least
in training, so they give its oddest images. ψ = 1 leaves z as drawn; smaller ψ pulls it in:

- ``scale``: z ← ψ·z, the move toward the mean latent (0 for a normal prior) StyleGAN makes
  with its mean w; ψ = 0 gives the one "average" image of the generator.
- ``resample``: each component with |z_k| > 2ψ is drawn again (from the same seed's stream)
  until it falls inside, giving the truncated normal of BigGAN; components stay full-sized
  up to the threshold. (2ψ keeps ψ = 1 close to "off": only 4.6 % of components are
  redrawn at ±2σ; ψ = 1 is exactly off, as in scale mode.)
"""

from __future__ import annotations

import math
from typing import Any

from graphflow import Boolean, Choice, Float, Image, Int, NodeContext, String, node
from graphflow.errors import GraphflowError
from graphflow.runtime.handles import compute_device
from graphflow.runtime.models import file_version

from .dcgan_files import (
    NO_GENERATOR,
    check_gan_pickle_rule,
    gan_model_path,
    list_gan_models,
    load_generator,
    missing_generator_message,
)
from .gan_types import GAN_MODEL_TYPE, GanModel

CATEGORY = "gan"
SEED = Int(min=0, max=2**63 - 1)
SEED_RANGE = 2**63
TRUNCATION_MODES = ["scale", "resample"]
RESAMPLE_SIGMAS = 2.0  # resample threshold at ψ = 1, in standard deviations
MAX_RESAMPLE_ROUNDS = 64  # then the few components still outside are clamped to the bound


class GanInputError(GraphflowError):
    """An input the generator cannot take (a class label it does not have)."""


def truncated_latent(seed: int, nz: int, truncation: float = 1.0, mode: str = "scale") -> Any:
    """The latent (nz,) of ``seed``: a standard normal draw, truncated as the module says."""
    import torch

    generator = torch.Generator().manual_seed(int(seed) % SEED_RANGE)
    z = torch.randn(nz, generator=generator)
    if truncation >= 1.0:
        return z
    if mode == "scale":
        return z * truncation
    if mode != "resample":
        raise ValueError(f"truncation mode {mode!r} is not one of {TRUNCATION_MODES}")
    bound = RESAMPLE_SIGMAS * truncation
    for _ in range(MAX_RESAMPLE_ROUNDS):
        outside = z.abs() > bound
        if not outside.any():
            return z
        z = torch.where(outside, torch.randn(nz, generator=generator), z)
    return z.clamp(-bound, bound)


def class_indices(classes: tuple[str, ...], label: str, count: int, cycle: bool) -> Any:
    """Class index per image: ``label`` by name or number, or (empty) cycling through all."""
    import torch

    label = label.strip()
    if not classes:
        if label:
            raise GanInputError(
                f"label {label!r}: this generator is not class-conditional (leave label empty)"
            )
        return None
    if not label:
        indices = [i % len(classes) for i in range(count)] if cycle else [0] * count
        return torch.tensor(indices)
    lowered = [name.lower() for name in classes]
    if label.lower() in lowered:
        return torch.full((count,), lowered.index(label.lower()))
    if label.isdigit() and int(label) < len(classes):
        return torch.full((count,), int(label))
    raise GanInputError(
        f"label {label!r} is not one of this generator's classes: {', '.join(classes)} "
        f"(or 0…{len(classes) - 1})"
    )


def generate(module: Any, latents: Any, labels: Any) -> Any:
    """Images (B, H, W, C) in 0..1 for latents (B, nz) and class indices (or None)."""
    import torch

    device = next(module.parameters()).device
    labels = labels.to(device) if labels is not None else None
    with torch.no_grad():
        images = module(latents.to(device), labels)
    return ((images + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).float()


def slerp(a: Any, b: Any, t: float) -> Any:
    """Spherical interpolation from a (t = 0) to b (t = 1), in float64; lerp if parallel."""
    a64, b64 = a.double(), b.double()
    cosine = (a64 @ b64 / (a64.norm() * b64.norm())).clamp(-1.0, 1.0)
    omega = math.acos(cosine.item())
    if abs(math.sin(omega)) < 1e-6:
        return ((1 - t) * a64 + t * b64).to(a.dtype)
    mixed = (math.sin((1 - t) * omega) * a64 + math.sin(t * omega) * b64) / math.sin(omega)
    return mixed.to(a.dtype)


def interpolated_latents(a: Any, b: Any, steps: int, mode: str = "slerp") -> Any:
    """(steps, nz) latents from a to b, ends exactly a and b."""
    import torch

    rows = []
    for index in range(steps):
        t = index / (steps - 1)
        if index in (0, steps - 1):
            rows.append(a if index == 0 else b)
        elif mode == "slerp":
            rows.append(slerp(a, b, t))
        else:
            rows.append(torch.lerp(a, b, t))
    return torch.stack(rows)


# --------------------------------------------------------------------------- nodes


@node("gan.load_generator", category=CATEGORY, display_name="Load GAN Generator")
def load_gan_generator(
    model_name: Choice(list_gan_models),
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> GanModel:
    """Load a GAN generator: pretrained faces or painted eyes, or your own DCGAN file.

    "faces" is gan-face-generate's DCGAN (64 px, latent 100). Terms: the code is MIT, but
    the weights were trained on Microsoft's DigiFace-1M (synthetic faces), licensed for
    non-commercial research only, so use the faces for research and teaching, not
    commercially. "painted eyes" is omniart-eye-generator's class-conditional DCGAN (128 px,
    8 iris colours: amber, blue, brown, gray, grayscale, green, hazel, red), MIT, trained on
    eyes cut from OmniArt's museum paintings (no terms stated for those images).

    Your own generators go in models/gan/: DCGAN generator state dicts (.safetensors, or
    .pt/.pth/.ckpt with allow_pickle, read weights-only); nz, ngf, channels and image size
    are read from the weights. Other layouts are refused with the keys seen.
    """
    device = str(ctx.device)
    path = gan_model_path(model_name)
    return ctx.models.load(
        "gan_generator",
        path,
        lambda: load_generator(model_name, allow_pickle).to(device),
        device=device,
    )


@load_gan_generator.check
def _generator_chosen(model_name: str = NO_GENERATOR, allow_pickle: bool = False, **_):
    if model_name == NO_GENERATOR:
        return f"model_name: {missing_generator_message()}"
    refusal = check_gan_pickle_rule(model_name, allow_pickle)
    return f"model_name: {refusal}" if refusal else None


@load_gan_generator.fingerprint
def _generator_file_version(model_name: str, **_) -> tuple:
    return file_version(gan_model_path(model_name))


@node("gan.sample", category=CATEGORY, display_name="Sample GAN")
def sample_gan(
    gan_model: GanModel,
    seed: SEED = 0,
    batch_size: Int(1, 256) = 1,
    truncation: Float(0.0, 1.0, step=0.05) = 1.0,
    truncation_mode: Choice(TRUNCATION_MODES) = "scale",
    label: String = "",
    ctx: NodeContext = None,
) -> Image:
    """Images from a GAN generator: one forward pass per batch, no denoising steps.

    Image i is drawn from seed + i (the same image whatever the batch size or device).
    truncation ψ < 1 pulls latents toward the centre: more typical, less varied images
    ("scale": z·ψ, ψ = 0 gives the average image; "resample": components beyond 2ψ standard
    deviations are redrawn). label picks the class of a conditional generator by name or
    number (eyes: amber, blue, brown, gray, grayscale, green, hazel, red); left empty, the
    batch cycles through all classes. Unconditional generators take no label.
    """
    with gan_model.on_device(compute_device(gan_model, ctx)) as module:
        import torch

        seeds = [(seed + index) % SEED_RANGE for index in range(batch_size)]
        latents = torch.stack(
            [truncated_latent(s, module.nz, truncation, truncation_mode) for s in seeds]
        )
        labels = class_indices(module.classes, label, batch_size, cycle=True)
        return generate(module, latents, labels)


@node("gan.interpolate", category=CATEGORY, display_name="GAN Latent Interpolation")
def gan_interpolate(
    gan_model: GanModel,
    seed_a: SEED = 0,
    seed_b: SEED = 1,
    steps: Int(2, 256) = 8,
    mode: Choice(["slerp", "lerp"]) = "slerp",
    truncation: Float(0.0, 1.0, step=0.05) = 1.0,
    truncation_mode: Choice(TRUNCATION_MODES) = "scale",
    label: String = "",
    ctx: NodeContext = None,
) -> Image:
    """A batch of steps images walking the latent space from seed_a's image to seed_b's.

    The first and last images are Sample GAN's images of seed_a and seed_b (same truncation
    and label). slerp follows the great circle between the two latents, keeping their
    length, which is what a normal latent of many dimensions almost always has; lerp takes
    the straight line, whose middle latents are shorter and give blander images. A
    conditional generator uses one label for the whole walk (empty: its first class).
    """
    with gan_model.on_device(compute_device(gan_model, ctx)) as module:
        a = truncated_latent(seed_a, module.nz, truncation, truncation_mode)
        b = truncated_latent(seed_b, module.nz, truncation, truncation_mode)
        latents = interpolated_latents(a, b, steps, mode)
        labels = class_indices(module.classes, label, steps, cycle=False)
        return generate(module, latents, labels)


PORT_TYPES = (GAN_MODEL_TYPE,)
NODES = [load_gan_generator, sample_gan, gan_interpolate]
