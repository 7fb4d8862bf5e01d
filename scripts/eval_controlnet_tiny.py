"""Measure graphflow-tiny-controlnet-canny: does a picture follow the edge map it was given?

For Fashion-MNIST test items (never seen in training) the hint is the item's Canny edge map
(``image.canny``'s function, default thresholds, of the white item, as in training), the
prompt names the item's class and a colour ("a blue sneaker"). graphflow-tiny generates the
same seeds without the ControlNet and with it (strength 1 and 0.5). Of each picture:

- **edge F1** (1-px tolerance): the Canny edges of the generated picture (its brightest
  channel, so every colour reads as a white item) against the hint's edges; precision is
  the share of generated edge pixels within one pixel (8-neighbourhood) of a hint edge,
  recall the share of hint edge pixels within one pixel of a generated one;
- **L1**: the mean absolute pixel difference (0..1) to the real item in the prompt's colour;
- **colour**: whether the item's colour (``tiny_data.item_colour``) is the prompt's.

Sampling is the model card's: Euler, 25 steps, cfg 4, the ControlNet acting on both halves
of classifier-free guidance as ``diffusion.apply_controlnet`` does, written out here with
diffusers' modules so that a few hundred pictures take a few minutes on one CPU thread.

Usage: ``python scripts/eval_controlnet_tiny.py [--per-class 10] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_data  # sibling modules, importable because this runs as a script
import train_controlnet_tiny as training

STEPS, CFG = 25, 4.0


def dilate(edges: np.ndarray) -> np.ndarray:
    """(N, H, W) 0/1 maps grown by one pixel in the 8-neighbourhood (3×3 max)."""
    padded = np.pad(edges.astype(bool), ((0, 0), (1, 1), (1, 1)))
    h, w = edges.shape[-2:]
    out = np.zeros(edges.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            out |= padded[:, dy : dy + h, dx : dx + w]
    return out


def edge_f1(generated: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Per-item edge F1 (1-px tolerance) of (N, H, W) 0/1 edge maps; 0 where either is empty."""
    generated, hint = generated.astype(bool), hint.astype(bool)
    hits_p = (generated & dilate(hint)).sum(axis=(1, 2))
    hits_r = (hint & dilate(generated)).sum(axis=(1, 2))
    precision = hits_p / np.maximum(generated.sum(axis=(1, 2)), 1)
    recall = hits_r / np.maximum(hint.sum(axis=(1, 2)), 1)
    return 2 * precision * recall / np.maximum(precision + recall, 1e-9)


def picture_edges(pictures: np.ndarray) -> np.ndarray:
    """Canny edges (N, H, W) of (N, H, W, 3) pictures in 0..1, read as white items (their
    brightest channel), by the same function as the hints."""
    grey = pictures.max(axis=-1)
    return training.canny_hints(np.repeat(grey[:, None], 3, axis=1).astype(np.float32))


class TinySampler:
    """graphflow-tiny (+ its ControlNet) as one batched Euler / classifier-free-guidance loop."""

    def __init__(self, controlnet_folder: Path = training.DEFAULT_OUT):
        from diffusers import ControlNetModel, EulerDiscreteScheduler
        from transformers import BertModel

        self.unet, self.vae, self.tokenizer = training.load_tiny()
        self.scheduler = EulerDiscreteScheduler.from_pretrained(training.TINY / "scheduler")
        self.encoder = BertModel.from_pretrained(training.train_tiny.minilm_path()).eval()
        self.controlnet = ControlNetModel.from_pretrained(
            controlnet_folder, torch_dtype=torch.float32
        ).eval()

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """MiniLM states of ``prompts`` (as ``diffusion.encode_text``)."""
        ids = self.tokenizer(
            prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids  # fmt: skip
        return self.encoder(ids, attention_mask=None)[0]

    @torch.no_grad()
    def __call__(self, prompts, seeds, hints=None, strength: float = 1.0, steps: int = STEPS):
        """(N, 32, 32, 3) pictures in 0..1; ``hints`` (N, 32, 32) 0/1 or None (no control)."""
        context = torch.cat([self.encode([""] * len(prompts)), self.encode(list(prompts))])
        noise = [
            torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(int(s))) for s in seeds
        ]
        self.scheduler.set_timesteps(steps)
        latents = torch.cat(noise) * self.scheduler.init_noise_sigma
        cond = None
        if hints is not None:
            cond = torch.from_numpy(np.asarray(hints, np.float32))[:, None].expand(-1, 3, -1, -1)
            cond = torch.cat([cond, cond])
        for t in self.scheduler.timesteps:
            x = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
            extra = {}
            if cond is not None:
                down, mid = self.controlnet(
                    x, t, encoder_hidden_states=context, controlnet_cond=cond,
                    conditioning_scale=strength, return_dict=False,
                )  # fmt: skip
                extra = {"down_block_additional_residuals": down}
                extra["mid_block_additional_residual"] = mid
            uncond, text = self.unet(x, t, context, **extra).sample.chunk(2)
            latents = self.scheduler.step(uncond + CFG * (text - uncond), t, latents).prev_sample
        config = self.vae.config
        pixels = self.vae.decode(latents / config.scaling_factor + config.shift_factor).sample
        return ((pixels + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def test_items(per_class: int, seed: int = 7):
    """The first ``per_class`` test items of each class, a colour each, their prompts."""
    images, labels = tiny_data.load_fashion_mnist("test")
    picked = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    colours = np.random.default_rng(seed).integers(0, len(tiny_data.COLOURS), len(picked))
    names = [tiny_data.COLOURS[c] for c in colours]
    prompts = [
        tiny_data.caption("{a} {c} {n}", tiny_data.CLASS_NAMES[labels[i]], name)
        for i, name in zip(picked, names, strict=True)
    ]
    real = tiny_data.tint(images[picked], tiny_data.palette_array()[colours])
    white = tiny_data.tint(images[picked], np.ones((len(picked), 3), np.float32))
    return prompts, names, real.transpose(0, 2, 3, 1), training.canny_hints(white)


def scores(pictures: np.ndarray, hints: np.ndarray, real: np.ndarray, colours) -> dict:
    """Mean edge F1, pixel L1 and colour accuracy of generated ``pictures``."""
    named = [tiny_data.item_colour(p) for p in pictures]
    return {
        "edge_f1": float(edge_f1(picture_edges(pictures), hints).mean()),
        "l1": float(np.abs(pictures - real).mean()),
        "colour": float(np.mean([a == b for a, b in zip(named, colours, strict=True)])),
    }


def evaluate(per_class: int, folder: Path = training.DEFAULT_OUT, batch: int = 50) -> dict:
    """The three settings' scores on ``per_class`` × 10 test items (seed i for item i)."""
    prompts, colours, real, hints = test_items(per_class)
    sampler = TinySampler(folder)
    seeds = np.arange(len(prompts))
    settings = {"no control": None, "ControlNet 1.0": 1.0, "ControlNet 0.5": 0.5}
    report = {"items": len(prompts), "steps": STEPS, "cfg": CFG}
    for name, strength in settings.items():
        start, out = time.time(), []
        for i in range(0, len(prompts), batch):
            sl = slice(i, i + batch)
            use = None if strength is None else hints[sl]
            out.append(sampler(prompts[sl], seeds[sl], use, strength or 0.0))
        pictures = np.concatenate(out)
        report[name] = scores(pictures, hints, real, colours)
        print(f"{name}: {report[name]} ({time.time() - start:.0f} s)")
    report["real items"] = scores(real, hints, real, colours)
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: how many items per class, where to write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--controlnet", type=Path, default=training.DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = evaluate(args.per_class, args.controlnet)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
