"""A tiny random-weight InstructPix2Pix checkpoint (8-channel UNet), built locally.

The same architecture as ``tiny_models.build_tiny_sd`` (32×32 images, 16×16×4 latents, tiny
VAE and CLIP) but saved as a ``StableDiffusionInstructPix2PixPipeline`` whose UNet takes the
noisy latent and the image latent side by side. ``ip2p_models_root`` builds one models
folder per test session: checkpoints/tiny-ip2p (diffusers folder), tiny-ip2p.safetensors
(the same weights as one LDM-layout file, the folder beside it its config) and tiny-sd.
"""

from __future__ import annotations

from pathlib import Path

from tiny_models import build_tiny_sd

IP2P = "tiny-ip2p"
PLAIN = "tiny-sd"


def build_tiny_ip2p(target: Path, seed: int = 0) -> Path:
    """Save a tiny StableDiffusionInstructPix2PixPipeline into ``target``."""
    from diffusers import EulerAncestralDiscreteScheduler

    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
    )
    return build_tiny_sd(
        target, seed, in_channels=8, pipeline="StableDiffusionInstructPix2PixPipeline",
        scheduler=scheduler,
    )  # fmt: skip


def build_ip2p_models(root: Path) -> Path:
    """``root``/checkpoints with tiny-ip2p (folder + single file) and tiny-sd (4 channels)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from ldm_export import export_single_file

    checkpoints = root / "checkpoints"
    folder = build_tiny_ip2p(checkpoints / IP2P)
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(folder, local_files_only=True)
    export_single_file(pipe, checkpoints / f"{IP2P}.safetensors")
    build_tiny_sd(checkpoints / PLAIN)
    (root / "built").write_text("ok")
    return root


def ip2p_models_root(tmp_path_factory) -> Path:
    """The session's tiny InstructPix2Pix models folder (built by the first caller)."""
    root = tmp_path_factory.getbasetemp() / "ip2p-models"
    if not (root / "built").exists():
        build_ip2p_models(root)
    return root


def tiny_picture(seed: int = 0, size: int = 32):
    """A smooth random IMAGE (1, size, size, 3) in 0..1 (a blurred noise field)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 4, 4, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return smooth.permute(0, 2, 3, 1).contiguous()


PROMPT = "make it red"


def ip2p_workflow(
    checkpoint: str = IP2P,
    scheduler: str = "euler_ancestral",
    seed: int = 1234,
    steps: int = 4,
    guidance_scale: float = 7.5,
    image_guidance_scale: float = 1.5,
    image_node: str = "test.image",
):
    """load → prompts → InstructPix2Pix conditioning (image from ``image_node``) → sampler
    → decode (node "decode")."""
    from support import link, make_workflow

    def encoded(name: str, text: str) -> dict:
        return {
            f"{name}_tokens": (
                "diffusion.tokenize",
                {"text": text, "tokenizer": link("ckpt", "tokenizer")},
            ),
            name: (
                "diffusion.encode_text",
                {
                    "tokens": link(f"{name}_tokens", "tokens"),
                    "text_encoder": link("ckpt", "text_encoder"),
                },
            ),
        }

    return make_workflow(
        {
            "ckpt": ("diffusion.load_checkpoint", {"checkpoint": checkpoint}),
            **encoded("pos", PROMPT),
            **encoded("neg", ""),
            "image": (image_node, {}),
            "cond": (
                "diffusion.instruct_pix2pix_conditioning",
                {
                    "positive": link("pos", "conditioning"),
                    "negative": link("neg", "conditioning"),
                    "vae": link("ckpt", "vae"),
                    "image": link("image", "image"),
                },
            ),
            "sched": (
                "diffusion.scheduler",
                {"scheduler": link("ckpt", "scheduler"), "name": scheduler},
            ),
            "sample": (
                "diffusion.instruct_pix2pix_sampler",
                {
                    "model": link("ckpt", "model"),
                    "positive": link("cond", "positive"),
                    "negative": link("cond", "negative"),
                    "latent": link("cond", "latent"),
                    "scheduler": link("sched", "scheduler"),
                    "seed": seed,
                    "steps": steps,
                    "guidance_scale": guidance_scale,
                    "image_guidance_scale": image_guidance_scale,
                },
            ),
            "decode": (
                "diffusion.vae_decode",
                {"vae": link("ckpt", "vae"), "latent": link("sample", "latent")},
            ),
            "show": ("core.show", {"value": link("decode", "image")}),
        }
    )
