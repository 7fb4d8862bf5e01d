"""Train graphflow-sr-x4 (plugins/gf_image/sr_model.py) on photos that ship in packages.

Training photos: scikit-image's colour and grey photos that ship in the wheel (grey repeated
to RGB; both views of ``stereo_motorcycle``) and scikit-learn's sample "china". HELD OUT for
scripts/eval_sr.py, never seen here: skimage ``chelsea`` (and its duplicate ``cat``),
``coffee`` and sklearn's ``flower``.

Each photo is reduced by a few scale factors (more distinct content), then its ×4 input is
made by the same degradation the evaluation uses (antialiased bicubic ÷4, 8-bit rounded).
Random aligned patches with flips/rotations; L1 loss; Adam with a cosine schedule; seeded.
CPU only, under bfloat16 autocast (master weights stay fp32): fast on CPUs with AVX-512 BF16
or AMX, emulated and slow elsewhere, where ``--fp32`` is the better choice. The committed
weights came from 75 minutes on one thread of a 2-core CPU (a second run used the other):

    .venv/bin/python scripts/train_sr.py --feat 64 --blocks 6 --lr 1e-3 --steps 100000 \
        --minutes 75 --threads 1 --out /tmp/sr/graphflow-sr-x4.safetensors

The weights (with the steps reached in their metadata) are also written every
``--save-minutes`` during training, so a run stopped early leaves a usable file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from gf_image.sr_model import (
    EMBEDDED_WEIGHTS,
    SCALE,
    GraphflowSR,
    bicubic_down,
    crop_to_scale,
    load_sr_model,
    save_sr_model,
    to_tensor,
)

TRAIN_SKIMAGE = [
    "astronaut",
    "rocket",
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "stereo_motorcycle",
    "stereo_motorcycle_right",
    "camera",
    "clock",
    "cell",
    "brick",
    "grass",
    "gravel",
    "coins",
    "moon",
    "text",
    "page",
]
TRAIN_SKLEARN = ["china"]
HELD_OUT = ["chelsea", "coffee", "flower"]  # eval_sr.py's images; "cat" is chelsea again
PRESCALES = (1.0, 0.75, 0.5)


def photo(name: str) -> np.ndarray:
    """A training or held-out photo as (H, W, 3) uint8 (grey → RGB)."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        images = load_sample_images()
        index = [Path(f).stem for f in images.filenames].index(name)
        return np.asarray(images.images[index])
    from skimage import data

    if name == "stereo_motorcycle_right":  # the other view: the same scene, other pixels
        array = data.stereo_motorcycle()[1]
    else:
        array = getattr(data, name)()
    if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
        array = array[0]
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return array[..., :3]


def build_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(low, high) tensor pairs for every training photo at every pre-scale."""
    pairs = []
    for name in TRAIN_SKIMAGE + TRAIN_SKLEARN:
        assert name not in HELD_OUT
        full = to_tensor(photo(name))
        for factor in PRESCALES:
            high = full
            if factor != 1.0:
                high = F.interpolate(full, scale_factor=factor, mode="bicubic", antialias=True)
                high = (high.clamp(0, 1) * 255).round() / 255
            high = crop_to_scale(high)
            pairs.append((bicubic_down(high), high))
    return pairs


def sample_batch(
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
    weights: list[float],
    rng: random.Random,
    batch: int,
    patch: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random aligned low/high patches (low ``patch``², high ×4) with flips and rotations."""
    lows, highs = [], []
    for low, high in rng.choices(pairs, weights=weights, k=batch):
        y = rng.randrange(low.shape[2] - patch + 1)
        x = rng.randrange(low.shape[3] - patch + 1)
        lo = low[:, :, y : y + patch, x : x + patch]
        hi = high[:, :, y * SCALE : (y + patch) * SCALE, x * SCALE : (x + patch) * SCALE]
        if rng.random() < 0.5:
            lo, hi = lo.flip(3), hi.flip(3)
        if rng.random() < 0.5:
            lo, hi = lo.flip(2), hi.flip(2)
        if rng.random() < 0.5:
            lo, hi = lo.transpose(2, 3), hi.transpose(2, 3)
        if rng.random() < 0.5:  # colour channel order: more colour variety from few photos
            order = rng.sample(range(3), 3)
            lo, hi = lo[:, order], hi[:, order]
        lows.append(lo)
        highs.append(hi)
    return torch.cat(lows), torch.cat(highs)


def main() -> None:
    """Parse arguments, train, write the safetensors weights and a JSON log."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=32, help="low-resolution patch side")
    parser.add_argument("--feat", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=6, help="residual blocks")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--fp32", action="store_true", help="no bfloat16 autocast (about 1.8× slower here)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="wall-clock budget: the schedule ends at --steps or here, whichever comes first",
    )
    parser.add_argument("--save-minutes", type=float, default=5.0, help="checkpoint interval")
    parser.add_argument(
        "--init", type=Path, help="start from these weights (continue a run with a new schedule)"
    )
    parser.add_argument("--out", type=Path, default=EMBEDDED_WEIGHTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    pairs = [pair for pair in build_pairs() if min(pair[0].shape[2:]) >= args.patch]
    weights = [low.shape[2] * low.shape[3] for low, _ in pairs]
    model = GraphflowSR(num_feat=args.feat, num_blocks=args.blocks)
    steps_before = 0
    if args.init:
        from safetensors import safe_open

        model.load_state_dict(load_sr_model(args.init).state_dict())
        with safe_open(str(args.init), framework="pt") as handle:
            steps_before = int((handle.metadata() or {}).get("steps", 0))
    params = sum(p.numel() for p in model.parameters())
    model = model.to(memory_format=torch.channels_last)  # oneDNN's fast layout on CPUs
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    args.precision = "fp32" if args.fp32 else "bf16-autocast"

    def progress(step: int) -> float:
        # A shared CPU's speed varies, so the schedule follows steps or time, whichever leads.
        return max(step / args.steps, (time.monotonic() - start) / (args.minutes * 60))

    def lr_at(step: int, done: float) -> float:
        warm = min(1.0, (step + 1) / 100)
        return args.lr * warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))

    args.steps_before = steps_before  # recorded in the metadata: steps of the whole training
    start = last_save = time.monotonic()
    history: list[tuple[int, float]] = []
    running = None
    bar = tqdm(range(args.steps), desc=f"train_sr ({params} params)")
    step = 0
    for step in bar:
        done = progress(step)
        if done >= 1.0:
            print(f"time budget reached after {step} of {args.steps} steps")
            step -= 1
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, done)
        low, high = sample_batch(pairs, weights, rng, args.batch, args.patch)
        low = low.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.fp32):
            output = model(low)
        loss = F.l1_loss(output.float(), high)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0:
            bar.set_postfix(l1=f"{running:.4f}")
            history.append((step, round(running, 5)))
        if time.monotonic() - last_save > args.save_minutes * 60:
            save(args, model, step, time.monotonic() - start, running, params, history)
            last_save = time.monotonic()
    seconds = time.monotonic() - start
    model.eval()
    meta = save(args, model, step, seconds, running, params, history)
    print(f"{params} params, {meta['steps']} steps in {seconds:.0f} s, final L1 {running:.4f}")
    print(f"wrote {args.out} and {args.out.with_suffix('.train.json')}")


def save(
    args: argparse.Namespace,
    model: GraphflowSR,
    step: int,
    seconds: float,
    running: float,
    params: int,
    history: list[tuple[int, float]],
) -> dict[str, str]:
    """Write the weights (metadata in the header) and the JSON log; return the metadata."""
    meta = {
        "name": "graphflow-sr-x4",
        "architecture": "GraphflowSR (residual blocks + bicubic base)",
        "scale": str(SCALE),
        "num_feat": str(args.feat),
        "num_blocks": str(args.blocks),
        "precision": args.precision,
        "lr": str(args.lr),
        "steps": str(step + 1 + args.steps_before),
        "continued_from": str(args.init or ""),
        "batch": str(args.batch),
        "seed": str(args.seed),
        "train_seconds": f"{seconds:.0f}",
        "final_l1": f"{running:.5f}",
        "train_images": ",".join(TRAIN_SKIMAGE + TRAIN_SKLEARN),
        "held_out": ",".join(HELD_OUT),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_sr_model(model, args.out, meta)
    log = args.out.with_suffix(".train.json")
    log.write_text(json.dumps({**meta, "params": params, "history": history}, indent=1) + "\n")
    return meta


if __name__ == "__main__":
    main()
