"""Train pix2pix-fashion-edges, graphflow's own small pix2pix model, on the CPU.

The task is the lecture's edges → photo translation at Fashion-MNIST scale: the input is the
Canny edge map of a Fashion-MNIST item (graphflow's ``image.canny`` with its default
thresholds, on the 32×32 padded item), drawn in one of graphflow-tiny's palette colours; the
target is the item itself in that colour. The networks are pix2pix's, scaled down:

- generator: the release's U-Net (``UnetGenerator``) with 5 levels (32 → 1 pixels), ngf 16,
  batch norm (its state dict has the ``unet_*`` key layout, so the same loader reads it);
- discriminator: a PatchGAN (``PatchDiscriminator``, 1 stride-2 layer: one logit per 16×16
  patch, 14×14 of them), seeing the edge map and the image together;
- loss (Isola et al. 2017, eq. 4): G minimises BCE(D(x, G(x)), real) + λ·|y − G(x)|₁ with
  λ = 100; D minimises ½[BCE(D(x, y), real) + BCE(D(x, G(x)), fake)]; Adam, lr 2e-4,
  β = (0.5, 0.999), as in the paper. Random horizontal flips.

Then it measures L1 and PSNR on the Fashion-MNIST *test* split against two baselines (the
mean training item in the same colour, and the edge map itself), writes the weights
(safetensors), ``train.json`` (settings, steps, time, figures) and the picture for the docs.

Seeded: the same command gives the same weights (on the same torch build and thread count).
``--minutes`` only caps the wall time; the steps reached are recorded, and ``--steps N``
reproduces a run that stopped early.

Usage: ``nice -n 10 python scripts/train_pix2pix.py --steps 2000 --minutes 18``
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "plugins"))
import tiny_data  # noqa: E402  (a sibling module, importable because this runs as a script)

from gf_gan.pix2pix_models import GeneratorLayout  # noqa: E402
from gf_gan.pix2pix_networks import PatchDiscriminator  # noqa: E402
from gf_image.edges import canny  # noqa: E402

NAME = "pix2pix-fashion-edges"
DEFAULT_OUT = ROOT / "plugins" / "gf_gan" / "embedded" / NAME
PICTURE = ROOT / "docs" / "lecture" / "pix2pix_fashion.png"
LAYOUT = GeneratorLayout("unet", 3, 3, ngf=16, depth=5, norm="batch")
DISCRIMINATOR = dict(in_channels=6, ndf=16, layers=1, norm="batch")
CANNY = dict(low_threshold=0.4, high_threshold=0.8, sigma=1.0)  # image.canny's defaults
L1_WEIGHT = 100.0  # λ of the paper
SEED = 1234


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def edge_maps(items: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """N×32×32 items in 0..1 → N×32×32 Canny edge maps (0/1) as ``image.canny`` draws them."""
    out = np.empty_like(items)
    for start in range(0, len(items), chunk):
        grey = torch.from_numpy(items[start : start + chunk])[..., None].expand(-1, -1, -1, 3)
        out[start : start + chunk] = canny(grey, **CANNY)[..., 0].numpy()
    return out


def pairs(items: np.ndarray, edges: np.ndarray, colours: np.ndarray) -> tuple:
    """(input, target) as N×3×32×32 tensors in -1..1: the edges and the item, both tinted."""
    x = torch.from_numpy(tiny_data.tint(edges, colours)) * 2 - 1
    y = torch.from_numpy(tiny_data.tint(items, colours)) * 2 - 1
    return x.float(), y.float()


def test_colours(count: int) -> np.ndarray:
    """The colour of each test item: palette entries in turn (fixed, so figures compare)."""
    palette = tiny_data.palette_array()
    return palette[np.arange(count) % len(palette)]


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE of the patch logits against all-real or all-fake labels."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def train(args: argparse.Namespace, items: np.ndarray, edges: np.ndarray) -> tuple:
    """Train G and D; returns (generator, steps done, seconds, last losses)."""
    seed_everything(args.seed)
    generator = LAYOUT.build()
    discriminator = PatchDiscriminator(**DISCRIMINATOR)
    for net in (generator, discriminator):  # the paper's N(0, 0.02) initialisation
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                torch.nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, torch.nn.BatchNorm2d):
                torch.nn.init.normal_(module.weight, 1.0, 0.02)
                torch.nn.init.zeros_(module.bias)
    opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    rng = np.random.default_rng(args.seed)
    palette = tiny_data.palette_array()
    start, losses, step = time.monotonic(), {}, 0
    generator.train()
    while step < args.steps and time.monotonic() - start < args.minutes * 60:
        index = rng.integers(0, len(items), args.batch)
        x, y = pairs(items[index], edges[index], palette[rng.integers(0, len(palette), args.batch)])
        flip = torch.from_numpy(rng.random(args.batch) < 0.5)
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        fake = generator(x)
        opt_d.zero_grad()
        d_real = gan_loss(discriminator(torch.cat([x, y], 1)), True)
        d_fake = gan_loss(discriminator(torch.cat([x, fake.detach()], 1)), False)
        (0.5 * (d_real + d_fake)).backward()
        opt_d.step()
        opt_g.zero_grad()
        g_gan = gan_loss(discriminator(torch.cat([x, fake], 1)), True)
        g_l1 = (fake - y).abs().mean()
        (g_gan + L1_WEIGHT * g_l1).backward()
        opt_g.step()
        step += 1
        losses = {"d": (d_real + d_fake).item() / 2, "g_gan": g_gan.item(), "g_l1": g_l1.item()}
        if step % 100 == 0:
            elapsed = time.monotonic() - start
            print(
                f"step {step} {elapsed:.0f}s " + " ".join(f"{k} {v:.4f}" for k, v in losses.items())
            )
            sys.stdout.flush()
    return generator.eval(), step, time.monotonic() - start, losses


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of 0..1 images (N×3×H×W)."""
    mse = ((prediction - target) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def evaluate(generator: torch.nn.Module, train_items: np.ndarray) -> tuple[dict, tuple]:
    """L1 (0..1 scale) and PSNR on the whole test split: ours and the two baselines."""
    items, _ = tiny_data.load_fashion_mnist("test")
    edges = edge_maps(items)
    colours = test_colours(len(items))
    x, y = pairs(items, edges, colours)
    with torch.no_grad():
        ours = torch.cat([generator(x[i : i + 500]) for i in range(0, len(x), 500)])
    ours, target, edge_image = (ours + 1) / 2, (y + 1) / 2, (x + 1) / 2
    mean_item = torch.from_numpy(
        tiny_data.tint(np.repeat(train_items.mean(0)[None], len(items), 0), colours)
    )
    figures = {}
    for name, guess in (("ours", ours), ("mean_item", mean_item), ("edge_map", edge_image)):
        guess = guess.clamp(0, 1)
        figures[name] = {
            "l1": round(float((guess - target).abs().mean()), 4),
            "psnr_db": round(float(psnr(guess, target).mean()), 2),
        }
    return figures, (edge_image, ours.clamp(0, 1), target)


def save_picture(images: tuple, path: Path, count: int = 10, zoom: int = 3) -> None:
    """Rows edges | ours | ground truth for the first test items of each class order."""
    from PIL import Image

    rows = [torch.cat(list(batch[:count]), dim=2) for batch in images]  # 3×32×(32·count)
    grid = torch.cat(rows, dim=1).permute(1, 2, 0).numpy()
    picture = Image.fromarray((grid * 255).round().astype(np.uint8))
    picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)


def export(generator: torch.nn.Module, out: Path, record: dict) -> None:
    """Weights (safetensors, fp32, the layout in the metadata) and train.json."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in generator.state_dict().items()}
    metadata = {"layout": json.dumps(LAYOUT.to_dict()), "name": NAME}
    save_file(state, str(out / f"{NAME}.safetensors"), metadata=metadata)
    (out / "train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, train, evaluate, export."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=18.0, help="wall-time cap")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--picture", type=Path, default=PICTURE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    items, _ = tiny_data.load_fashion_mnist("train")
    edges = edge_maps(items)
    generator, steps, seconds, losses = train(args, items, edges)
    figures, images = evaluate(generator, items)
    print(json.dumps(figures, indent=2))
    record = {
        "command": "python scripts/train_pix2pix.py " + " ".join(argv or sys.argv[1:]),
        "seed": args.seed,
        "steps": steps,
        "batch": args.batch,
        "lr": args.lr,
        "l1_weight": L1_WEIGHT,
        "threads": args.threads,
        "train_minutes": round(seconds / 60, 1),
        "layout": LAYOUT.to_dict(),
        "discriminator": DISCRIMINATOR,
        "canny": CANNY,
        "last_losses": {k: round(v, 4) for k, v in losses.items()},
        "test": figures,
        "torch": torch.__version__,
    }
    export(generator, args.out, record)
    save_picture(images, args.picture)
    if not math.isfinite(figures["ours"]["l1"]):
        raise SystemExit("training diverged (L1 is not finite)")


if __name__ == "__main__":
    main()
