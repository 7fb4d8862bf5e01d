"""Train graphflow-tiny-controlnet-canny, a Canny-edge ControlNet for graphflow-tiny, on the CPU.

The ControlNet starts as a copy of graphflow-tiny's UNet encoder (diffusers'
``ControlNetModel.from_unet``: its zero convolutions make it a no-op at step 0) with a hint
embedding of three widths, so a 32 px edge map is downsampled ×4 to the 8×8 latent. The
UNet, VAE and MiniLM text encoder stay frozen; only the ControlNet learns, with the
ε-prediction loss of ``train_tiny.py`` (min-SNR-5 weighting, the same captions with 10%
empty for classifier-free guidance).

The hint of a training item is the Canny edge map of the item exactly as graphflow draws it
(``image.canny``'s own function with its default thresholds), taken of the white (untinted)
item whatever colour the training picture has: at the default thresholds a dark red, blue
or purple item has hardly any edges, while its shape is the same. Training and use agree.

Stages (each resumable from --work; ``all`` runs them in order):

- ``prepare``: caption embeddings (MiniLM, as ``diffusion.encode_text``), latents of the
  tinted training items (the shipped VAE, posterior mean, scaled and shifted) and their
  Canny hints.
- ``train``:   the ControlNet, until a time budget (default 25 min); checkpoints every 100
  steps, EMA weights.
- ``export``:  the diffusers folder (config.json + fp16 safetensors) to --out.

Usage: ``python scripts/train_controlnet_tiny.py all --minutes 25``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_data  # sibling modules, importable because this runs as a script
import train_tiny

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "plugins" / "gf_diffusion" / "embedded" / "graphflow-tiny"
DEFAULT_OUT = ROOT / "plugins" / "gf_diffusion" / "embedded" / "graphflow-tiny-controlnet-canny"
HINT_CHANNELS = (16, 32, 48)  # three widths: two stride-2 steps, 32 px hint → 8×8 latent
SEED = 4321


def canny_hints(images: np.ndarray) -> np.ndarray:
    """Canny edge maps (N, 32, 32) uint8 0/1 of RGB pictures (N, 3, 32, 32) in 0..1,
    computed by the ``image.canny`` node's function with its default settings."""
    from gf_image.edges import canny

    pictures = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 2, 3, 1)))
    edges = canny.function(pictures)  # IMAGE (N, H, W, 3), white edges on black
    return (edges[..., 0] > 0.5).numpy().astype(np.uint8)


def load_tiny():
    """graphflow-tiny's frozen UNet and VAE and its tokenizer (from the embedded folder)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import AutoTokenizer

    unet = UNet2DConditionModel.from_pretrained(TINY / "unet").eval().requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(TINY / "vae").eval().requires_grad_(False)
    return unet, vae, AutoTokenizer.from_pretrained(TINY / "tokenizer")


def encode_captions(tokenizer, captions: list[str]) -> torch.Tensor:
    """MiniLM's last hidden state of each caption, as ``diffusion.encode_text`` computes it
    (train_tiny.py's encoder, so the ControlNet sees the UNet's training embeddings)."""
    from transformers import BertModel

    encoder = BertModel.from_pretrained(train_tiny.minilm_path()).eval()
    return train_tiny.encode_captions(tokenizer, encoder, captions)


def stage_prepare(work: Path) -> None:
    """Caption embeddings, latents and Canny hints of the 60k training items, once."""
    target = work / "data.pt"
    if target.is_file():
        print("prepare: done already")
        return
    _, vae, tokenizer = load_tiny()
    captions, by_key = tiny_data.caption_table()
    embeds = encode_captions(tokenizer, captions)
    images, labels = tiny_data.load_fashion_mnist("train")
    colour_ids = np.random.default_rng(SEED).integers(0, len(tiny_data.COLOURS), len(images))
    palette = tiny_data.palette_array()
    latents, hints = [], []
    with torch.no_grad():
        for start in tqdm(range(0, len(images), 500), desc="latents + hints"):
            sl = slice(start, start + 500)
            hints.append(
                canny_hints(tiny_data.tint(images[sl], np.ones((len(images[sl]), 3), np.float32)))
            )
            rgb = tiny_data.tint(images[sl], palette[colour_ids[sl]])
            mean = vae.encode(torch.from_numpy(rgb) * 2 - 1).latent_dist.mean
            latents.append((mean - vae.config.shift_factor) * vae.config.scaling_factor)
    hints = np.concatenate(hints)
    print(f"prepare: {len(images)} items, mean edge fraction {hints.mean():.3f}")
    torch.save(
        {
            "embeds": embeds,
            "by_key": by_key,
            "latents": torch.cat(latents).half(),
            "hints": torch.from_numpy(hints),
            "labels": torch.from_numpy(labels),
            "colours": torch.from_numpy(colour_ids),
        },
        target,
    )


def new_controlnet(unet):
    """A ControlNet copied from ``unet``'s encoder, with the three-width hint embedding."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS)


def draw_timesteps(n: int, total: int, how: str) -> torch.Tensor:
    """``n`` training timesteps: uniform, or "cubic" (t = (1 − u³)·T, u uniform: mostly
    high noise, where the picture's layout is decided; T2I-Adapter's non-uniform sampling)."""
    if how == "cubic":
        return ((1 - torch.rand(n) ** 3) * total).long().clamp(max=total - 1)
    return torch.randint(0, total, (n,))


def training_loss(unet, net, batch: dict, noise, snr) -> tuple[torch.Tensor, float]:
    """(min-SNR-5 weighted ε loss, unweighted ε MSE) of one batch through ControlNet + UNet."""
    x0, context, hint = batch["x0"], batch["context"], batch["hint"]
    eps = torch.randn_like(x0)
    t = draw_timesteps(len(x0), noise.config.num_train_timesteps, batch["timesteps"])
    xt = noise.add_noise(x0, eps, t)
    down, mid = net(xt, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False)
    pred = unet(
        xt,
        t,
        context,
        down_block_additional_residuals=down,
        mid_block_additional_residual=mid,
    ).sample
    per_item = ((pred - eps) ** 2).mean(dim=(1, 2, 3))
    weight = torch.clamp(snr[t], max=5.0) / snr[t]
    return (weight * per_item).mean(), per_item.mean().item()


class Run:
    """Step count, loss record (mean ε MSE per 50 steps), training seconds and the clock."""

    def __init__(self, state: dict | None):
        state = state or {}
        self.step = state.get("step", 0)
        self.losses = state.get("losses", [])
        self.seconds = state.get("seconds", 0.0)
        self.started, self.running = time.time(), []

    def elapsed(self) -> float:
        """Training seconds so far, this session's included."""
        return self.seconds + time.time() - self.started

    def record(self, mse: float) -> bool:
        """Count one step of ε MSE ``mse``; True when a checkpoint is due (every 100)."""
        self.step += 1
        self.running.append(mse)
        if self.step % 50 == 0:
            self.losses.append((self.step, float(np.mean(self.running))))
            self.running = []
        if self.step % 100:
            return False
        self.seconds, self.started = self.elapsed(), time.time()
        return True


def stage_train(work: Path, minutes: float, max_steps: int, batch: int, lr: float, t_draw: str):
    """Train the ControlNet until the time budget (training minutes, resumed runs included) or
    step limit; checkpoints every 100 steps. ``t_draw``: how timesteps are drawn."""
    from diffusers import DDPMScheduler

    ckpt_path = work / "controlnet.ckpt"
    data = torch.load(work / "data.pt")
    latents, hints = data["latents"].float(), data["hints"]
    labels, colours = data["labels"].numpy(), data["colours"].numpy()
    train_tiny.seed_everything(SEED)
    unet, _, _ = load_tiny()
    net = new_controlnet(unet)
    ema = new_controlnet(unet).requires_grad_(False)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    noise = DDPMScheduler(**train_tiny.NOISE_CONFIG)
    snr = noise.alphas_cumprod / (1 - noise.alphas_cumprod)
    state = train_tiny.load_checkpoint(ckpt_path)
    if state:
        for module, key in ((net, "model"), (ema, "ema"), (opt, "opt")):
            module.load_state_dict(state[key])
        torch.set_rng_state(state["torch_rng"])
    run = Run(state)
    rng = np.random.default_rng(SEED + 1000 + run.step)  # reseeded per resume: repeatable
    pick = train_tiny.caption_sampler(data["by_key"], rng)

    def checkpoint() -> None:
        parts = {"model": net, "ema": ema, "opt": opt}
        train_tiny.save_checkpoint(
            ckpt_path,
            **{key: part.state_dict() for key, part in parts.items()},
            step=run.step,
            losses=run.losses,
            seconds=run.seconds,
            torch_rng=torch.get_rng_state(),
        )

    net.train()
    bar = tqdm(total=max_steps, initial=run.step, desc="controlnet")
    while run.step < max_steps and run.elapsed() < minutes * 60:
        idx = rng.integers(0, len(latents), batch)
        hint = hints[idx].float()[:, None].expand(-1, 3, -1, -1)
        context = data["embeds"][torch.from_numpy(pick(labels[idx], colours[idx]))]
        loss, mse = training_loss(
            unet,
            net,
            {"x0": latents[idx], "context": context, "hint": hint, "timesteps": t_draw},
            noise,
            snr,
        )
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (run.step + 1) / 100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():  # EMA, its decay warming up to 0.999
            decay = min(0.999, (1 + run.step) / (10 + run.step))
            for e, p in zip(ema.parameters(), net.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        bar.update(1)
        if run.record(mse):
            bar.set_postfix(mse=f"{run.losses[-1][1]:.4f}")
            checkpoint()
    bar.close()
    run.seconds, run.started = run.elapsed(), time.time()
    checkpoint()
    print(f"train: {run.step} steps, {run.seconds / 60:.1f} min")


def stage_export(work: Path, out: Path) -> None:
    """Write the diffusers folder (config.json + fp16 safetensors, the EMA weights)."""
    unet, _, _ = load_tiny()
    state = train_tiny.load_checkpoint(work / "controlnet.ckpt")
    net = new_controlnet(unet)
    net.load_state_dict(state["ema"])
    out.mkdir(parents=True, exist_ok=True)
    net.half().save_pretrained(out)
    record = {"steps": state["step"], "seconds": round(state["seconds"]), "loss": state["losses"]}
    (work / "training_record.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"export: wrote {out} ({state['step']} steps)")


def main(argv: list[str] | None = None) -> None:
    """Command line: the stage to run and its budget."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["prepare", "train", "export", "all"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/graphflow-tiny-controlnet-work"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=1)  # one: the machine is shared
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--timesteps", choices=["uniform", "cubic"], default="uniform")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    run_stage = {
        "prepare": lambda: stage_prepare(args.work),
        "train": lambda: stage_train(
            args.work, args.minutes, args.steps, args.batch, args.lr, args.timesteps
        ),
        "export": lambda: stage_export(args.work, args.out),
    }
    for stage in list(run_stage) if args.stage == "all" else [args.stage]:
        run_stage[stage]()


if __name__ == "__main__":
    main()
