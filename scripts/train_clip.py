"""Train clip-graphflow-mini, graphflow's small contrastive image–text model, on the CPU.

Stages (run in order, or ``all``; each skips work already done in --work):

- ``data``:  read tinted Fashion-MNIST, Openclipart and Noto Color Emoji through
             ``gf_vision.clip_data`` (64×64 RGB, trained at 32×32, fixed train/test
             splits), and encode every caption and evaluation prompt once with the
             frozen MiniLM (mean-pooled).
- ``train``: symmetric InfoNCE (CLIP's loss) with a learned temperature, training the image
             encoder from scratch and the text projection; MiniLM stays frozen. A caption
             counts as a positive for every image in the batch it describes ("a sneaker" fits
             every sneaker, "a red object" every red item), so repeated classes are no false
             negatives. Fixed number of steps, checkpoints for resuming.
- ``eval``:  zero-shot accuracy on the test splits (Fashion-MNIST classes and colours,
             held-out clip-art categories, held-out emoji retrieval) → eval.json.
- ``export``: config.json + model.safetensors (+ training.json) to --out.

Usage: ``nice -n 10 python scripts/train_clip.py all``
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
from gf_vision import clip_data  # noqa: E402  (the plugins folder is not on sys.path)
from gf_vision.clip_model import (  # noqa: E402
    DEFAULT_CONFIG,
    EMBEDDED_DIR,
    WEIGHTS_FILE,
    MiniClip,
    sentence_encoder,
)

SEED = 4321
MIX = (0.6, 0.25, 0.15)  # fashion, clip art, emoji share of a batch
CLIPART_ID, EMOJI_ID = 100, 100_000  # offsets of the per-sample "item" ids


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- data ---------------------------------------------------------------------------------


def stage_data(work: Path) -> None:
    """Images (uint8) and captions to work/data.npz + captions.json, MiniLM embeddings."""
    if (work / "text.pt").is_file():
        print("data: done already")
        return
    t0 = time.time()
    captions = clip_data.Captions()
    fits = clip_data.fashion_captions(captions)
    fashion_x, fashion_y = clip_data.load_fashion("train")
    test_x, test_y = clip_data.load_fashion("test")
    loaded = [(p, clip_data.load_clipart_image(p)) for p in clip_data.clipart_files()]
    files = [p for p, image in loaded if image is not None]
    clip_images = np.stack([image for _, image in loaded if image is not None])
    clip_test = np.array([clip_data.held_out(p.as_posix()) for p in files])
    clip_caption = [
        captions.add(clip_data.clipart_caption(p), CLIPART_ID + i) for i, p in enumerate(files)
    ]
    emoji_images, emoji_names = clip_data.load_emoji()
    emoji_test = np.array([clip_data.held_out(n) for n in emoji_names])
    emoji_caption = [
        captions.add(clip_data.emoji_caption(n), EMOJI_ID + i) for i, n in enumerate(emoji_names)
    ]
    categories = sorted({clip_data.clipart_category(p) for p in files})
    prompts = {
        "class": clip_data.class_prompts(),
        "colour": clip_data.colour_prompts(),
        "clipart": [f"clip art of {c}" for c in categories],
    }
    print(f"data: images read in {time.time() - t0:.0f} s; {len(captions.texts)} captions")
    encoder = sentence_encoder(DEFAULT_CONFIG["max_tokens"])
    all_prompts = [p for group in prompts.values() for p in group]
    embeds = encoder(captions.texts + all_prompts)
    n = len(captions.texts)
    np.savez_compressed(
        work / "data.npz",
        fashion_x=(fashion_x * 255).round().astype(np.uint8),
        fashion_y=fashion_y,
        test_x=(test_x * 255).round().astype(np.uint8),
        test_y=test_y,
        clip_images=clip_images,
        clip_test=clip_test,
        clip_caption=np.array(clip_caption),
        clip_category=np.array([categories.index(clip_data.clipart_category(p)) for p in files]),
        emoji_images=emoji_images,
        emoji_test=emoji_test,
        emoji_caption=np.array(emoji_caption),
    )
    meta = {
        "texts": captions.texts,
        "item": captions.item,
        "colour": captions.colour,
        "fits": {f"{k[0]},{k[1]}": v for k, v in fits.items()},
        "prompts": prompts,
        "categories": categories,
        "emoji_names": emoji_names,
        "clipart_files": [p.as_posix() for p in files],
    }
    (work / "captions.json").write_text(json.dumps(meta))
    torch.save({"captions": embeds[:n], "prompts": embeds[n:]}, work / "text.pt")
    print(f"data: done in {time.time() - t0:.0f} s")


def load_work(work: Path) -> tuple[dict, dict, dict]:
    """(arrays, caption metadata, text embeddings) written by the data stage."""
    arrays = dict(np.load(work / "data.npz"))
    meta = json.loads((work / "captions.json").read_text())
    text = torch.load(work / "text.pt", weights_only=True)
    return arrays, meta, text


# --- training -----------------------------------------------------------------------------


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) → (N, 3, size, size), antialiased when shrinking."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=x.shape[-1] > size)


def as_input(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) pictures → float (N, 3, size, size) in 0..1."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return torch.cat([resized(chunk, size) for chunk in x.split(1024)])


class Sampler:
    """Draws a training batch: images (B, 3, S, S), caption ids, image attributes."""

    def __init__(self, arrays: dict, meta: dict, rng: np.random.Generator):
        self.rng = rng
        self.fashion_x = arrays["fashion_x"].astype(np.float32) / 255
        self.fashion_y = arrays["fashion_y"]
        self.fits = {tuple(map(int, k.split(","))): np.array(v) for k, v in meta["fits"].items()}
        train = ~arrays["clip_test"]
        self.clip_idx = np.flatnonzero(train)
        self.emoji_idx = np.flatnonzero(~arrays["emoji_test"])
        self.size = DEFAULT_CONFIG["image_size"]
        self.images = {k: as_input(arrays[k], self.size) for k in ("clip_images", "emoji_images")}
        self.arrays = arrays
        self.n_colours = len(clip_data.tiny_data().COLOURS)

    def fashion(self, n: int):
        """Tinted items (random palette colour, slight jitter) at the model's input size."""
        idx = self.rng.integers(0, len(self.fashion_x), n)
        colours = self.rng.integers(0, self.n_colours, n)
        jitter = self.rng.normal(0, 0.05, (n, 3)).astype(np.float32)
        x = torch.from_numpy(clip_data.tinted_fashion(self.fashion_x[idx], colours, jitter))
        x = resized(x, self.size)
        labels = self.fashion_y[idx]
        caps = [self.fits[(int(k), int(c))] for k, c in zip(labels, colours, strict=True)]
        caption = np.array([c[self.rng.integers(0, len(c))] for c in caps])
        return x, caption, labels, colours

    def pictures(self, images_key: str, caption_key: str, pool: np.ndarray, n: int, offset: int):
        """Clip art or emoji from the training split, with their own captions."""
        idx = pool[self.rng.integers(0, len(pool), n)]
        x = self.images[images_key][torch.from_numpy(idx)]
        return x, self.arrays[caption_key][idx], offset + idx, np.full(n, -1)

    def __call__(self, batch: int):
        """One mixed batch, randomly shifted by up to 2 pixels (wrapping background)."""
        n_f = round(batch * MIX[0])
        n_c = round(batch * MIX[1])
        parts = [
            self.fashion(n_f),
            self.pictures("clip_images", "clip_caption", self.clip_idx, n_c, CLIPART_ID),
            self.pictures(
                "emoji_images", "emoji_caption", self.emoji_idx, batch - n_f - n_c, EMOJI_ID
            ),
        ]
        x = torch.cat([p[0] for p in parts])
        dx, dy = self.rng.integers(-2, 3, 2)
        x = torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))
        caption, item, colour = (np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))
        return x, torch.from_numpy(caption), torch.from_numpy(item), torch.from_numpy(colour)


def positives(item, colour, caption, text_item, text_colour) -> torch.Tensor:
    """(B, B) 0/1: caption j describes image i (each attribute it names matches)."""
    ti, tc = text_item[caption], text_colour[caption]
    match_item = (ti[None, :] == -1) | (ti[None, :] == item[:, None])
    match_colour = (tc[None, :] == -1) | (tc[None, :] == colour[:, None])
    return (match_item & match_colour).float()


def contrastive_loss(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives: cross-entropy to the normalised positives."""
    image_to_text = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    text_to_image = -(pos / pos.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (image_to_text + text_to_image) / 2


def make_optimizer(model: MiniClip, lr: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms, biases and the temperature."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )


def stage_train(work: Path, steps: int, batch: int, lr: float) -> None:
    """Train for ``steps`` steps (warm-up, cosine decay); checkpoint every 50 steps."""
    ckpt = work / "train.ckpt"
    arrays, meta, text = load_work(work)
    seed_everything(SEED)
    model = MiniClip({})
    opt = make_optimizer(model, lr)
    step, losses, seconds = 0, [], 0.0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)  # our own checkpoint
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, losses, seconds = state["step"], state["losses"], state["seconds"]
        torch.set_rng_state(state["torch_rng"])
    if step >= steps:
        print(f"train: done already ({step} steps)")
        return
    sampler = Sampler(arrays, meta, np.random.default_rng(SEED + step))
    captions = text["captions"]
    text_item, text_colour = torch.tensor(meta["item"]), torch.tensor(meta["colour"])
    model.train()
    started, running = time.time(), []
    while step < steps:
        x, caption, item, colour = sampler(batch)
        warm = min(1.0, (step + 1) / 50)
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        logits = model.scale() * model.encode_image(x) @ model.encode_text(captions[caption]).T
        loss = contrastive_loss(logits, positives(item, colour, caption, text_item, text_colour))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        running.append(loss.item())
        if step % 10 == 0:
            losses.append((step, round(float(np.mean(running)), 4)))
            running = []
            elapsed = seconds + time.time() - started
            print(
                f"train: step {step}/{steps} loss {losses[-1][1]:.3f} "
                f"T={1 / model.scale().item():.3f} {elapsed / 60:.1f} min",
                flush=True,
            )
        if step % 50 == 0 or step == steps:
            seconds += time.time() - started
            started = time.time()
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "losses": losses,
                    "seconds": seconds,
                    "torch_rng": torch.get_rng_state(),
                },
                ckpt.with_suffix(".tmp"),
            )
            ckpt.with_suffix(".tmp").replace(ckpt)


def trained_model(work: Path) -> MiniClip:
    """The model in the last checkpoint (eval mode)."""
    model = MiniClip({})
    model.load_state_dict(torch.load(work / "train.ckpt", weights_only=False)["model"])
    return model.eval()


# --- evaluation ---------------------------------------------------------------------------


@torch.no_grad()
def embed_images(model: MiniClip, images: torch.Tensor) -> torch.Tensor:
    """Normalised image embeddings of (N, 3, S, S) in chunks."""
    return torch.cat([model.encode_image(chunk) for chunk in images.split(256)])


@torch.no_grad()
def stage_eval(work: Path, fashion_n: int) -> dict:
    """Zero-shot accuracies on the test splits → work/eval.json (and printed)."""
    arrays, meta, text = load_work(work)
    model = trained_model(work)
    groups = meta["prompts"]
    prompt_embeds = model.encode_text(text["prompts"])
    sizes = [len(groups[k]) for k in ("class", "colour", "clipart")]
    class_t, colour_t, clip_t = prompt_embeds.split(sizes)
    rng = np.random.default_rng(SEED + 99)
    x, y = arrays["test_x"][:fashion_n].astype(np.float32) / 255, arrays["test_y"][:fashion_n]
    colours = rng.integers(0, len(groups["colour"]), len(x))
    size = model.config["image_size"]
    images = resized(torch.from_numpy(clip_data.tinted_fashion(x, colours)), size)
    feats = embed_images(model, images)
    result = {
        "fashion_test_items": len(x),
        "fashion_class_top1": float(((feats @ class_t.T).argmax(1).numpy() == y).mean()),
        "fashion_class_chance": 1 / len(class_t),
        "fashion_colour_top1": float(((feats @ colour_t.T).argmax(1).numpy() == colours).mean()),
        "fashion_colour_chance": 1 / len(colour_t),
    }
    test = arrays["clip_test"]
    clip_x = as_input(arrays["clip_images"][test], size)
    cats = arrays["clip_category"][test]
    clip_pred = (embed_images(model, clip_x) @ clip_t.T).argmax(1).numpy()
    result |= {
        "clipart_test_items": int(test.sum()),
        "clipart_category_top1": float((clip_pred == cats).mean()),
        "clipart_category_chance": 1 / len(clip_t),
        "clipart_category_majority": float(np.bincount(cats).max() / len(cats)),
    }
    test = arrays["emoji_test"]
    emoji_x = as_input(arrays["emoji_images"][test], size)
    emoji_t = model.encode_text(text["captions"][arrays["emoji_caption"][test]])
    ranks = (embed_images(model, emoji_x) @ emoji_t.T).argsort(1, descending=True)
    truth = torch.arange(len(emoji_t))[:, None]
    result |= {
        "emoji_test_items": int(test.sum()),
        "emoji_retrieval_top1": float((ranks[:, :1] == truth).any(1).float().mean()),
        "emoji_retrieval_top5": float((ranks[:, :5] == truth).any(1).float().mean()),
        "emoji_retrieval_chance_top1": 1 / len(emoji_t),
        "temperature": 1 / model.scale().item(),
    }
    (work / "eval.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


# --- export -------------------------------------------------------------------------------


def stage_export(work: Path, out: Path) -> None:
    """config.json, model.safetensors and training.json (steps, time, loss curve, eval)."""
    from safetensors.torch import save_file

    state = torch.load(work / "train.ckpt", weights_only=False)
    model = trained_model(work)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, out / WEIGHTS_FILE, metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(model.config, indent=1) + "\n")
    evaluation = (
        json.loads((work / "eval.json").read_text()) if (work / "eval.json").is_file() else {}
    )
    record = {
        "steps": state["step"],
        "seconds": round(state["seconds"]),
        "loss": state["losses"][::5],
        "evaluation": evaluation,
    }
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"export: wrote {out}")


def main(argv: list[str] | None = None) -> None:
    """Command line: the stage to run and its budget."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["data", "train", "eval", "export", "all"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/clip-graphflow-mini-work"))
    parser.add_argument("--out", type=Path, default=EMBEDDED_DIR)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-items", type=int, default=10_000, help="Fashion-MNIST test items")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    stages = ["data", "train", "eval", "export"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage == "data":
            stage_data(args.work)
        elif stage == "train":
            stage_train(args.work, args.steps, args.batch, args.lr)
        elif stage == "eval":
            stage_eval(args.work, args.eval_items)
        else:
            stage_export(args.work, args.out)


if __name__ == "__main__":
    main()
