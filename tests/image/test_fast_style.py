"""Fast style transfer: the network's file format, the nodes, and what the bundled network does
to a photo it never saw (small images: VGG19 on the CPU is slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from gf_image import examples, fast_style
from gf_image.fast_style import (
    EMBEDDED_STYLE_DIR,
    load_fast_style_net,
    new_fast_style_net,
    save_fast_style_net,
    stylise,
)
from graphflow import EventLog, Executor, Image, load_workflow, node
from graphflow.events import Progress
from graphflow.runtime.handles import ModelHandle
from graphflow.runtime.models import ModelFileError, ModelManager
from support import link, make_workflow, registry_with

WORKFLOW = Path(__file__).parents[2] / "workflows" / "fast_style.json"
BUNDLED = "bundled/swirl"
SWIRL_WEIGHTS = EMBEDDED_STYLE_DIR / "swirl.safetensors"
SWIRL_IMAGE = EMBEDDED_STYLE_DIR / "swirl.png"

# Measured with the committed network on held-out coffee at 128 px (128×85), against the
# style image it was trained on (Johnson layers, style.style_transfer_losses): the style loss
# falls 4.4× (uniform noise: 1.3×); the content loss (relu3_3) of the styled image is 2.2e5,
# that of uniform noise 5.75e5 (2.6× more). The margins leave room for a retrained network of
# similar quality, while one that did not learn the style or lost the photo fails.
MIN_STYLE_LOSS_FACTOR = 2.5
MIN_CONTENT_MARGIN = 1.5  # noise's content loss over the styled image's


@node("t.twice", category="test")
def twice(image: Image) -> Image:
    """The image twice, as a batch of two."""
    return torch.cat([image, image])


@pytest.fixture(scope="module")
def registry():
    return registry_with(*fast_style.NODES, twice)


@pytest.fixture(scope="module")
def swirl():
    """The bundled network's handle (loaded once for the module)."""
    return ModelHandle.of(load_fast_style_net(SWIRL_WEIGHTS))


def random_net(seed: int = 0, channels=(4, 8, 8), blocks: int = 2):
    """A small network with every parameter (instance-norm affines too) randomised."""
    torch.manual_seed(seed)
    net = new_fast_style_net(channels, blocks)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0, 0.3)
    return net.eval()


def style_nodes(model_name: str = BUNDLED, strength: float = 1.0, size: int = 64) -> dict:
    return {
        "photo": ("image.example_photo", {"photo": "coffee", "size": size}),
        "model": ("image.load_fast_style_model", {"model_name": model_name}),
        "stylise": (
            "image.fast_style",
            {
                "style_model": link("model", "fast_style_model"),
                "image": link("photo", "image"),
                "strength": strength,
            },
        ),
        "show": ("image.preview", {"images": link("stylise", "image")}),
    }


# --------------------------------------------------------------------------- file format


def test_save_then_load_round_trips_exactly(tmp_path):
    net = random_net()
    path = tmp_path / "net.safetensors"
    save_fast_style_net(net, path, "test-style", {"steps": "7"})
    loaded = load_fast_style_net(path)
    assert loaded.channels == (4, 8, 8) and loaded.residual_blocks == 2
    assert loaded.style == "test-style"
    original, restored = net.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)
    image = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(net(image), loaded(image))
    assert fast_style.read_fast_style_metadata(path)["steps"] == "7"


def test_a_safetensors_file_of_another_kind_is_refused_clearly(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "upscaler.safetensors"
    save_file({"layers.0.weight": torch.zeros(4, 3, 3, 3)}, str(path))
    with pytest.raises(ModelFileError, match=r"upscaler\.safetensors is not a graphflow fast"):
        load_fast_style_net(path)


def test_shapes_that_do_not_match_the_metadata_are_refused_clearly(tmp_path):
    from safetensors.torch import save_file

    net = random_net(channels=(4, 8, 8))
    path = tmp_path / "wrong.safetensors"
    save_fast_style_net(net, path, "x")
    metadata = fast_style.read_fast_style_metadata(path)
    save_file(net.state_dict(), str(path), metadata={**metadata, "channels": "4,8,16"})
    with pytest.raises(ModelFileError) as caught:
        load_fast_style_net(path)
    message = str(caught.value)
    assert "does not match the architecture its metadata declare (channels 4,8,16" in message
    assert "of the wrong shape (first: down.2.0.1.bias is [8], expected [16])" in message


def test_a_file_that_is_not_safetensors_is_refused_clearly(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelFileError, match=r"junk\.safetensors is not a readable \.safetensors"):
        load_fast_style_net(path)


def test_a_bad_file_fails_the_run_with_the_message_not_a_traceback(registry, tmp_path, monkeypatch):
    folder = tmp_path / fast_style.STYLE_FOLDER
    folder.mkdir()
    (folder / "broken.safetensors").write_bytes(b"\x00" * 16)
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert fast_style.list_fast_style_models()[0] == "broken.safetensors"
    result = Executor(registry, models=ModelManager()).run(
        make_workflow(style_nodes("broken.safetensors"))
    )
    assert result.status == "failed" and result.error.node == "model"
    assert result.error.exception_type == "ModelFileError"
    assert result.error.message.startswith("broken.safetensors is not a readable .safetensors")


def test_a_models_folder_network_is_listed_and_loads(registry, tmp_path, monkeypatch):
    folder = tmp_path / fast_style.STYLE_FOLDER / "mine"
    folder.mkdir(parents=True)
    save_fast_style_net(random_net(), folder / "tiny.safetensors", "tiny")
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert fast_style.list_fast_style_models() == ["mine/tiny.safetensors", BUNDLED]
    result = Executor(registry, models=ModelManager()).run(
        make_workflow(style_nodes("mine/tiny.safetensors")), outputs=["stylise"]
    )
    assert result.ok, result.error
    assert result.outputs["stylise"]["image"].shape == (1, 43, 64, 3)


# --------------------------------------------------------------------------- the node


@pytest.mark.parametrize(("height", "width"), [(37, 53), (1, 2), (64, 48)])
def test_fast_style_keeps_any_size(height, width):
    image = torch.rand(2, height, width, 3)
    out = fast_style.fast_style(ModelHandle.of(random_net()), image)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_padding_does_not_change_the_styled_pixels_far_from_the_border():
    # Instance norm sees the padded border too, so only approximately; but the crop must be
    # aligned: the top-left of a 37×53 result matches that of the 40×56 reflected image.
    net = random_net()
    image = torch.rand(1, 3, 37, 53)
    padded = torch.nn.functional.pad(image, (0, 3, 0, 3), mode="reflect")
    with torch.no_grad():
        cropped, whole = stylise(net, image), net(padded)
    assert (cropped[..., :20, :30] - whole[..., :20, :30]).abs().max() < 1e-5


def test_strength_zero_returns_the_input_and_one_half_blends(swirl):
    image = examples.example_photo("coffee", size=48)
    assert torch.equal(fast_style.fast_style(swirl, image, strength=0.0), image)
    full = fast_style.fast_style(swirl, image, strength=1.0)
    half = fast_style.fast_style(swirl, image, strength=0.5)
    assert not torch.allclose(full, image, atol=0.05)
    assert torch.allclose(half, (full + image) / 2, atol=1e-5)


def test_grey_and_alpha_images_keep_their_channels(swirl):
    grey = torch.rand(1, 20, 24, 1)
    rgba = torch.rand(1, 20, 24, 4)
    assert fast_style.fast_style(swirl, grey).shape == grey.shape
    out = fast_style.fast_style(swirl, rgba)
    assert out.shape == rgba.shape and torch.equal(out[..., 3], rgba[..., 3])


def test_the_bundled_network_paints_a_held_out_photo_in_its_style(swirl):
    from gf_image.style import style_transfer_losses

    content = examples.example_photo("coffee", size=128)  # held out of training
    style_image = torch.from_numpy(np.asarray(PILImage.open(SWIRL_IMAGE)).copy())[None] / 255
    styled = fast_style.fast_style(swirl, content)
    noise = torch.rand(content.shape, generator=torch.Generator().manual_seed(0))
    before = style_transfer_losses(content, content, style_image)
    after = style_transfer_losses(styled, content, style_image)
    random_image = style_transfer_losses(noise, content, style_image)
    assert after["style"] * MIN_STYLE_LOSS_FACTOR <= before["style"], (before, after)
    # ... and the photo is still there: its features are far closer than noise's.
    assert after["content"] * MIN_CONTENT_MARGIN <= random_image["content"], (after, random_image)


# --------------------------------------------------------------------------- in workflows


def test_the_bundled_network_is_listed_and_stays_resident(registry):
    assert BUNDLED in fast_style.list_fast_style_models()
    models = ModelManager()
    executor = Executor(registry, models=models)
    for size in (32, 40):  # another size: the style node runs again, the loader is cached
        result = executor.run(make_workflow(style_nodes(size=size)))
        assert result.ok, result.error
    assert models.loads == 1


def test_progress_per_batch_item_and_interrupt_between_items(registry):
    nodes = style_nodes()
    nodes["batch"] = ("t.twice", {"image": link("photo", "image")})
    nodes["stylise"][1]["image"] = link("batch", "image")
    log = EventLog()
    executor = Executor(registry, models=ModelManager(), observers=[log])
    result = executor.run(make_workflow(nodes), outputs=["stylise"])
    assert result.ok, result.error
    progress = [(e.value, e.total) for e in log.of_type(Progress) if e.node == "stylise"]
    assert progress == [(1, 2), (2, 2)]

    def interrupt_after_first(event):
        if isinstance(event, Progress) and event.node == "stylise" and event.value == 1:
            executor.interrupt()

    nodes["stylise"][1]["strength"] = 0.9  # not cached
    result = executor.run(make_workflow(nodes), observers=[interrupt_after_first])
    assert result.status == "interrupted"


def test_the_canonical_workflow_runs(registry, tmp_path):
    workflow = load_workflow(WORKFLOW)
    nodes = workflow.nodes
    assert nodes["style_model"].inputs["model_name"] == BUNDLED
    nodes["photo"].inputs["size"] = 96
    result = Executor(registry, output_dir=tmp_path).run(workflow)
    assert result.ok, result.error
    (saved,) = tmp_path.rglob("fast_style*.png")
    assert PILImage.open(saved).size == (96, 64)
