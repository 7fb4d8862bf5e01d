"""Measure graphflow-tiny: does the picture match the prompt's class and colour?

Images are generated through graphflow itself (an Executor running the txt2img workflow that
ships in workflows/, with prompt, seed and batch size set per run), so this measures the
shipped path: loader, tokenizer, MiniLM encoding, sampler, scheduler and VAE decode.

A small CNN of our own, trained on the Fashion-MNIST training split (grayscale intensity,
with random brightness so tinted items read alike), rates each image's class; the colour is
the palette colour nearest to the mean chromaticity of the item's pixels.

Usage: ``python scripts/eval_tiny.py [--per-class 20] [--grid docs/tiny_samples.png]``
``python scripts/eval_tiny.py --write-workflow`` (re)writes workflows/txt2img.json.
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

from gf_diffusion.embedded import TINY_CFG, TINY_IMAGE_SIZE, TINY_SCHEDULER, TINY_STEPS

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_data  # a sibling module, importable because this runs as a script

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "txt2img.json"
WORK = Path("/tmp/graphflow-tiny-work")
STEPS, CFG, SCHEDULER = TINY_STEPS, TINY_CFG, TINY_SCHEDULER

# Phrasings that appear in no training caption: does MiniLM carry them to the right class?
UNSEEN = [
    ("a jogging shoe", 7, None),
    ("blue denim jeans", 1, "blue"),
    ("a hooded sweatshirt", 2, None),
    ("a cocktail dress", 3, None),
    ("a rain jacket", 4, None),
    ("a leather handbag", 8, None),
    ("a hiking boot", 9, None),
    ("a crimson t-shirt", 0, "red"),
]


def txt2img_workflow(
    prompt: str = "a red sneaker",
    seed: int = 0,
    batch: int = 4,
    steps: int = STEPS,
    cfg: float = CFG,
    scheduler: str = SCHEDULER,
    output: str = "image.save",
):
    """The shipped txt2img graph for graphflow-tiny, ending in ``output`` (node id "save")."""
    from graphflow import Workflow

    def link(node_id: str, name: str) -> dict:
        return {"link": [node_id, name]}

    final = (
        {"images": link("decode", "image"), "filename_prefix": "graphflow-tiny"}
        if output == "image.save"
        else {"value": link("decode", "image")}
    )
    nodes = {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "graphflow-tiny"}),
        "prompt": ("diffusion.tokenize", {"text": prompt, "tokenizer": link("ckpt", "tokenizer")}),
        "negative": ("diffusion.tokenize", {"text": "", "tokenizer": link("ckpt", "tokenizer")}),
        "positive_cond": (
            "diffusion.encode_text",
            {"tokens": link("prompt", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
        ),
        "negative_cond": (
            "diffusion.encode_text",
            {"tokens": link("negative", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
        ),
        "scheduler": (
            "diffusion.scheduler",
            {"scheduler": link("ckpt", "scheduler"), "name": scheduler},
        ),
        "latent": (
            "diffusion.empty_latent",
            {
                "width": TINY_IMAGE_SIZE,
                "height": TINY_IMAGE_SIZE,
                "batch_size": batch,
                "vae": link("ckpt", "vae"),
            },
        ),
        "sampler": (
            "diffusion.sampler",
            {
                "model": link("ckpt", "model"),
                "positive": link("positive_cond", "conditioning"),
                "negative": link("negative_cond", "conditioning"),
                "latent": link("latent", "latent"),
                "scheduler": link("scheduler", "scheduler"),
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
            },
        ),
        "decode": (
            "diffusion.vae_decode",
            {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")},
        ),
        "save": (output, final),
    }
    return Workflow.model_validate(
        {
            "format": "graphflow/1",
            "nodes": {k: {"type": t, "inputs": inputs} for k, (t, inputs) in nodes.items()},
        }
    )


class Generator:
    """Runs the txt2img workflow through one Executor (the model stays loaded between runs)."""

    def __init__(self, steps: int, cfg: float, scheduler: str):
        from graphflow import Executor, load_plugins

        self.executor = Executor(load_plugins().registry, device="cpu")
        self.steps, self.cfg, self.scheduler = steps, cfg, scheduler

    def __call__(self, prompt: str, seed: int, batch: int) -> np.ndarray:
        """B×32×32×3 images in 0..1 for ``prompt``."""
        workflow = txt2img_workflow(
            prompt, seed, batch, self.steps, self.cfg, self.scheduler, output="core.show"
        )
        result = self.executor.run(workflow, outputs=["decode"])
        if not result.ok:
            raise RuntimeError(f"generation failed: {result.error}")
        return next(iter(result.outputs["decode"].values())).numpy()


# --- the rater ----------------------------------------------------------------------------


class FashionClassifier(torch.nn.Module):
    """A small CNN: 1×32×32 intensity → 10 Fashion-MNIST classes."""

    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv2d
        self.features = torch.nn.Sequential(
            conv(1, 16, 3, padding=1),
            torch.nn.ReLU(),
            conv(16, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            conv(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            conv(32, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(32 * 8 * 8, 128),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.3),
            torch.nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.features(x))


def intensity(images: np.ndarray) -> np.ndarray:
    """N×H×W×3 tinted images → N×H×W item intensity (brightest channel, item max at 1).

    Dividing by each image's top value undoes the tint's brightness (blue or purple items
    are darker than white ones), which the classifier never saw.
    """
    gray = images.max(axis=-1)
    top = np.quantile(gray.reshape(len(gray), -1), 0.99, axis=1).clip(0.05)
    return (gray / top[:, None, None]).clip(0, 1).astype(np.float32)


def train_classifier(path: Path, epochs: int = 4) -> FashionClassifier:
    """Train (or load) the rater; prints its accuracy on the Fashion-MNIST test split."""
    model = FashionClassifier()
    if path.is_file():
        model.load_state_dict(torch.load(path))
        return model.eval()
    torch.manual_seed(0)
    images, labels = tiny_data.load_fashion_mnist("train")
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    decay = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        model.train()
        for start in tqdm(range(0, len(order), 128), desc=f"classifier epoch {epoch + 1}"):
            idx = order[start : start + 128]
            x = torch.from_numpy(images[idx])[:, None]
            x = x * torch.empty(len(idx), 1, 1, 1).uniform_(0.8, 1.0)  # brightness jitter
            loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(labels[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        decay.step()
    model.eval()
    test_images, test_labels = tiny_data.load_fashion_mnist("test")
    with torch.no_grad():
        predicted = model(torch.from_numpy(test_images)[:, None]).argmax(1).numpy()
    accuracy = (predicted == test_labels).mean()
    print(f"rater accuracy on the Fashion-MNIST test split: {accuracy:.3f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def rate(model: FashionClassifier, images: np.ndarray) -> np.ndarray:
    """Predicted class of each N×H×W×3 image."""
    with torch.no_grad():
        return model(torch.from_numpy(intensity(images))[:, None]).argmax(1).numpy()


# --- the evaluation -----------------------------------------------------------------------


def save_grid(tiles: list[list[np.ndarray]], path: Path, scale: int = 3) -> None:
    """Save rows × columns of H×W×3 images (0..1) as one PNG, upscaled with nearest."""
    from PIL import Image

    rows = [np.concatenate(row, axis=1) for row in tiles]
    grid = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
    picture = Image.fromarray(grid)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def evaluate(args: argparse.Namespace) -> dict:
    """Generate, rate, print the tables; returns the numbers."""
    rater = train_classifier(args.work / "classifier.pt")
    generate = Generator(args.steps, args.cfg, args.scheduler)
    names = tiny_data.CLASS_NAMES
    report: dict = {"steps": args.steps, "cfg": args.cfg, "scheduler": args.scheduler}
    started = time.time()

    # 1. Class prompts ("sneaker"): 20 images per class, one seed per class.
    per_class = {}
    for label, name in enumerate(tqdm(names, desc="class prompts")):
        images = generate(name, seed=1000 + label, batch=args.per_class)
        per_class[name] = float((rate(rater, images) == label).mean())
    report["class_accuracy"] = per_class
    report["class_overall"] = float(np.mean(list(per_class.values())))

    # 2. Colour prompts ("a red sneaker"): every colour × class; colour and class rated.
    colour_hits, class_hits, grid = {}, [], [[None] * len(tiny_data.COLOURS) for _ in names]
    for ci, colour in enumerate(tqdm(tiny_data.COLOURS, desc="colour prompts")):
        hits = []
        for label, name in enumerate(names):
            prompt = tiny_data.caption("{a} {c} {n}", name, colour)
            images = generate(prompt, seed=5000 + 100 * ci + label, batch=args.per_colour)
            hits += [tiny_data.item_colour(image) == colour for image in images]
            class_hits += list(rate(rater, images) == label)
            grid[label][ci] = images[0]
        colour_hits[colour] = float(np.mean(hits))
    report["colour_accuracy"] = colour_hits
    report["colour_overall"] = float(np.mean(list(colour_hits.values())))
    report["class_accuracy_colour_prompts"] = float(np.mean(class_hits))

    # 3. Phrasings no training caption used.
    unseen = {}
    for prompt, label, colour in UNSEEN:
        images = generate(prompt, seed=9000, batch=args.per_colour)
        ok = rate(rater, images) == label
        if colour:
            ok = ok & np.array([tiny_data.item_colour(image) == colour for image in images])
        unseen[prompt] = float(ok.mean())
    report["unseen_phrasings"] = unseen
    report["seconds"] = round(time.time() - started)

    if args.grid:
        save_grid(grid, args.grid)
    return report


def print_report(report: dict) -> None:
    """The numbers as Markdown tables."""
    print(f"\nsteps {report['steps']}, cfg {report['cfg']}, scheduler {report['scheduler']}")
    print("\n| class | accuracy |\n|---|---|")
    for name, value in report["class_accuracy"].items():
        print(f"| {name} | {value:.0%} |")
    print(f"| **overall** | **{report['class_overall']:.1%}** |")
    print("\n| colour | accuracy |\n|---|---|")
    for name, value in report["colour_accuracy"].items():
        print(f"| {name} | {value:.0%} |")
    print(f"| **overall** | **{report['colour_overall']:.1%}** |")
    print(f"\nclass accuracy on colour prompts: {report['class_accuracy_colour_prompts']:.1%}")
    print("\n| unseen phrasing | class (and colour) right |\n|---|---|")
    for prompt, value in report["unseen_phrasings"].items():
        print(f"| {prompt} | {value:.0%} |")
    print(f"\n{report['seconds']} s of generation")


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--per-colour", type=int, default=4)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--cfg", type=float, default=CFG)
    parser.add_argument("--scheduler", default=SCHEDULER)
    parser.add_argument("--grid", type=Path, default=None, help="save a sample grid PNG here")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write-workflow", action="store_true", help="write " + str(WORKFLOW))
    args = parser.parse_args(argv)
    if args.write_workflow:
        from graphflow import save_workflow

        save_workflow(txt2img_workflow(), WORKFLOW)
        print(f"wrote {WORKFLOW}")
        return
    torch.set_num_threads(args.threads)
    report = evaluate(args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
