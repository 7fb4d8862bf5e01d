"""The shipped lecture workflows on latent space, the VAE and guidance run end to end on
graphflow-tiny (with fewer steps and items than the shipped pictures, to stay quick) and make
the pictures docs/lecture/latent_space.md, vae.md and guidance.md show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from graphflow import Executor, load_plugins, load_workflow

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    """The folder the workflows' Save Image nodes write to."""
    return tmp_path_factory.mktemp("lecture")


@pytest.fixture(scope="module")
def executor(output):
    """One executor for the module on the CPU, so graphflow-tiny loads once."""
    return Executor(load_plugins().registry, device="cpu", output_dir=output)


def _run(executor, name: str, outputs: list[str], **inputs):
    """Run workflows/<name>.json with inputs set ("node.input": value)."""
    workflow = load_workflow(ROOT / "workflows" / f"{name}.json")
    for key, value in inputs.items():
        node, port = key.split(".")
        workflow.set_input(node, port, value)
    result = executor.run(workflow, outputs=outputs)
    assert result.ok, result.error
    return result.outputs


def _saved(output: Path, prefix: str) -> np.ndarray:
    """The one PNG a workflow saved under ``prefix``, as an array."""
    from PIL import Image

    (file,) = sorted(output.glob(f"{prefix}_[0-9]*.png"))
    return np.asarray(Image.open(file).convert("RGB"))


def test_cfg_sweep_is_one_grid_of_twelve_guidance_scales(executor, output):
    out = _run(executor, "cfg_sweep", ["batch", "labels", "save"], **{"sampler.steps": 4})
    images = out["batch"]["image"]
    assert images.shape == (12, 32, 32, 3)
    assert out["labels"]["string"].splitlines() == [f"cfg = {g}" for g in range(1, 13)]
    steps = [(images[i + 1] - images[i]).abs().mean() for i in range(11)]
    assert min(steps) > 0  # every γ changes the picture
    assert (images[-1] - images[0]).abs().mean() > 0.02
    grid = _saved(output, "cfg_sweep")
    assert grid.shape[1] > 12 * 96 and grid.shape[0] > 96  # 12 cells of 96 px in one row


def test_prompt_walk_goes_from_one_prompt_to_the_other(executor, output):
    out = _run(
        executor, "latent_walk_prompts", ["walk", "decode", "save"],
        **{"walk.count": 3, "walk.steps": 4},
    )  # fmt: skip
    images = out["decode"]["image"]
    assert images.shape == (3, 32, 32, 3)
    red, blue = images[0].reshape(-1, 3).mean(0), images[-1].reshape(-1, 3).mean(0)
    assert red[0] > red[2] and blue[2] > blue[0]  # a red sneaker → a blue dress
    assert _saved(output, "latent_walk_prompts").shape[1] > 3 * 96


def test_seed_walk_keeps_the_prompt(executor, output):
    out = _run(
        executor, "latent_walk_seeds", ["decode", "save"], **{"walk.count": 3, "walk.steps": 4}
    )
    images = out["decode"]["image"]
    assert images.shape == (3, 32, 32, 3)
    assert not torch.allclose(images[0], images[-1], atol=0.05)
    for image in images:  # a green bag all the way
        red, green, blue = image.reshape(-1, 3).mean(0)
        assert green > red and green > blue
    _saved(output, "latent_walk_seeds")


def test_vae_compression_shows_items_and_a_photo(executor, output):
    out = _run(
        executor, "vae_compression", ["round_trip", "photo_trip", "save", "save_photo"],
        **{"sampler.steps": 4},
    )  # fmt: skip
    items, photo = out["round_trip"], out["photo_trip"]
    assert items["panels"].shape == (4 * 7, 32, 32, 3)
    assert "12.0× fewer numbers" in items["report"]
    assert photo["panels"].shape[0] == 7 and photo["panels"].shape[2] == 128
    assert items["psnr"] > photo["psnr"]  # the tiny VAE knows its items, not photos
    assert _saved(output, "vae_compression").shape[1] > 7 * 96
    _saved(output, "vae_compression_photo")


SAMPLES = "a red t-shirt\na yellow pullover\na blue coat"


def test_latent_map_draws_prompts_and_samples(executor, output):
    out = _run(
        executor, "latent_map", ["prompt_map", "latent_map", "save_prompt_map", "save_latent_map"],
        **{"sampler.steps": 4, "latent.batch_size": 2, "sample_prompts.value": SAMPLES},
    )  # fmt: skip
    prompts = out["prompt_map"]["report"].splitlines()
    assert prompts[0].startswith("prompt map: 40 items")
    samples = out["latent_map"]["report"].splitlines()
    assert samples[0].startswith("latent map: 6 items")  # 3 prompts × a batch of 2
    assert [line.split(maxsplit=2)[2] for line in samples[1:]] == [
        label for label in SAMPLES.splitlines() for _ in range(2)
    ]
    assert _saved(output, "latent_map_prompts").shape == (800, 800, 3)
    assert _saved(output, "latent_map_samples").shape == (800, 800, 3)
