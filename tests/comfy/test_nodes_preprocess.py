"""ComfyUI's Canny class type (gf_comfy/nodes_preprocess.py): its spec (COMFY_COMPAT §5.1),
kornia's Canny rules on synthetic edges, and kornia itself where it is installed."""

from __future__ import annotations

import pytest
import torch

from gf_comfy import nodes_preprocess
from gf_comfy.names import CLASSES
from gf_comfy.object_info import object_info_for
from gf_image import examples
from support import link, make_workflow


def step_image(contrast_by_row: list[float], width: int = 20, column: int = 10) -> torch.Tensor:
    """(1, H, W, 3): grey 0.3 left of ``column``, 0.3 + contrast of each row right of it."""
    image = torch.full((1, len(contrast_by_row), width, 3), 0.3)
    for row, contrast in enumerate(contrast_by_row):
        image[0, row, column:] += contrast
    return image


def test_canny_has_comfyuis_spec(registry):
    info = object_info_for(registry, "Canny")["Canny"]
    assert info["category"] == "image/preprocessors" and info["display_name"] is None
    assert info["input_order"] == {"required": ["image", "low_threshold", "high_threshold"]}
    required = info["input"]["required"]
    assert required["image"] == ["IMAGE"]
    for name, default in (("low_threshold", 0.4), ("high_threshold", 0.8)):
        assert required[name] == [
            "FLOAT",
            {"default": default, "min": 0.01, "max": 0.99, "step": 0.01},
        ]
    assert info["output"] == ["IMAGE"]
    assert CLASSES["Canny"].spec.id == "comfy.canny"


def test_a_sharp_step_gives_one_line_on_its_left_side():
    edges = nodes_preprocess.canny(step_image([0.6] * 16))
    assert edges.shape == (1, 16, 20, 3)
    assert torch.equal(edges[..., 0], edges[..., 2])
    columns = edges[0, ..., 0].sum(0)
    # Of the two equal pixels across the step, the left one stays (as kornia and OpenCV).
    assert columns[9] == 16 and columns.sum() == 16


def test_weak_edges_stay_only_when_joined_to_strong_ones():
    # Contrast 0.6 makes a Sobel magnitude of ~1.5 (strong), 0.25 one of ~0.65 (weak).
    joined = nodes_preprocess.canny(step_image([0.6] * 8 + [0.25] * 8))[0, ..., 0]
    alone = nodes_preprocess.canny(step_image([0.25] * 16))[0, ..., 0]
    # The weak half continues the strong line (it bends by a pixel where the contrast
    # changes, and that change is itself an edge).
    assert joined[:, 9:11].amax(1).sum() == 16 and joined[12:, 9].sum() == 4
    assert alone.sum() == 0
    lowered = nodes_preprocess.canny(step_image([0.25] * 16), low_threshold=0.2, high_threshold=0.5)
    assert lowered[0, :, 9, 0].sum() == 16


def test_each_image_of_a_batch_has_its_own_edges():
    photo = examples.example_photo("coffee", size=64)
    batch = torch.cat([photo, photo.flip(2)])
    edges = nodes_preprocess.canny(batch)
    assert edges.shape == batch.shape and set(edges.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(edges[0], nodes_preprocess.canny(photo)[0])
    assert not torch.equal(edges[0], edges[1])


def test_low_above_high_is_a_clear_error():
    with pytest.raises(ValueError, match=r"0 < low ≤ high \(got low 0.9, high 0.5\)"):
        nodes_preprocess.canny(step_image([0.6] * 4), low_threshold=0.9, high_threshold=0.5)


def test_matches_kornias_canny_on_a_photo():
    kornia_filters = pytest.importorskip("kornia.filters")
    photo = examples.example_photo("astronaut", size=96).movedim(-1, 1)
    for low, high in ((0.4, 0.8), (0.1, 0.2)):
        expected = kornia_filters.canny(photo, low, high)[1]
        got = nodes_preprocess.canny(photo.movedim(1, -1), low, high)[..., :1].movedim(-1, 1)
        assert torch.equal(got, expected)


def test_runs_in_a_workflow(executor):
    workflow = make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "coffee", "size": 48}),
            "canny": ("comfy.canny", {"image": link("photo", "image"), "low_threshold": 0.2}),
            "show": ("image.preview", {"images": link("canny", "image")}),
        }
    )
    result = executor.run(workflow, outputs=["canny"])
    assert result.ok, result.error
    edges = result.outputs["canny"]["image"]
    assert edges.shape == (1, 32, 48, 3) and 0 < edges.mean() < 0.5


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    return tmp_path_factory.mktemp("models")
