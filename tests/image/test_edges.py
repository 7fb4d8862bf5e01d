"""Classical edge nodes (gf_image/edges.py): Canny, gradient magnitude and Laplacian line
art, on synthetic shapes whose edges are known and on a batch of photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gf_image import edges, examples


def square(size: int = 32, low: float = 0.2, high: float = 0.8) -> torch.Tensor:
    """(1, size, size, 3): a bright square from size/4 to 3·size/4 on a darker ground."""
    image = torch.full((1, size, size, 3), low)
    image[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = high
    return image


def line(size: int = 32, dark: bool = True) -> torch.Tensor:
    """(1, size, size, 3): a 2-pixel vertical line (dark on light, or light on dark)."""
    image = torch.full((1, size, size, 3), 0.8 if dark else 0.2)
    image[:, :, size // 2 - 1 : size // 2 + 1] = 0.2 if dark else 0.8
    return image


def test_canny_outlines_a_square_with_thin_white_lines():
    out = edges.canny(square())
    assert out.shape == (1, 32, 32, 3) and torch.equal(out[..., 0], out[..., 1])
    found = out[0, ..., 0].numpy() > 0.5
    assert set(np.unique(out.numpy())) <= {0.0, 1.0}
    rows, cols = np.nonzero(found)
    # Every edge pixel is within a pixel of the square's outline (8..24), none inside.
    on_outline = (np.minimum(abs(rows - 7.5), abs(rows - 23.5)) <= 1.5) | (
        np.minimum(abs(cols - 7.5), abs(cols - 23.5)) <= 1.5
    )
    assert on_outline.all() and found.sum() > 50
    assert not found[12:20, 12:20].any()


def test_canny_thresholds_decide_which_edges_stay():
    faint = square(low=0.45, high=0.55)  # contrast 0.1: Sobel magnitude ~0.26 after the blur
    assert edges.canny(faint).sum() == 0
    assert edges.canny(faint, low_threshold=0.1, high_threshold=0.2).sum() > 0


def test_canny_refuses_low_above_high():
    with pytest.raises(ValueError, match=r"low_threshold \(0.9\) is above high_threshold \(0.2\)"):
        edges.canny(square(), low_threshold=0.9, high_threshold=0.2)


def test_each_image_of_a_batch_gets_its_own_edges():
    photo = examples.example_photo("coffee", size=64)
    batch = torch.cat([photo, photo.flip(1)])
    for node in (edges.canny, edges.gradient_edges, edges.line_art):
        out = node(batch)
        assert out.shape == batch.shape and out.dtype == batch.dtype
        assert torch.allclose(out[1], out[0].flip(0), atol=1e-6), node.id  # flipped input


@pytest.mark.parametrize("operator", edges.GRADIENT_OPERATORS)
def test_gradient_edges_of_a_sharp_step_reach_one(operator):
    image = torch.zeros(1, 16, 16, 3)
    image[:, :, 8:] = 1.0
    out = edges.gradient_edges(image, operator=operator, sigma=0.0, normalise=False)[0, ..., 0]
    assert abs(out.max().item() - 1.0) < 1e-6
    assert out[:, 7:9].min() > 0.4 and out[:, :6].max() < 1e-6 and out[:, 10:].max() < 1e-6


def test_gradient_edges_scale_normalise_and_threshold():
    image = square(low=0.4, high=0.6)
    plain = edges.gradient_edges(image, normalise=False)
    assert 0.05 < plain.max() < 0.3  # contrast 0.2, blurred
    stretched = edges.gradient_edges(image)
    assert abs(stretched.max().item() - 1.0) < 1e-6
    assert torch.allclose(stretched, plain / plain.max(), atol=1e-6)
    doubled = edges.gradient_edges(image, normalise=False, strength=2.0)
    assert torch.allclose(doubled, (plain * 2).clamp(max=1), atol=1e-6)
    binary = edges.gradient_edges(image, threshold=0.5)
    assert torch.equal(binary, (stretched > 0.5).to(binary.dtype))


def test_line_art_finds_dark_lines_or_light_lines():
    dark, light = line(dark=True), line(dark=False)
    dark_map = edges.line_art(dark)[0, ..., 0]
    assert dark_map[:, 15:17].mean() > 0.9 and dark_map[:, :10].max() == 0
    # Light lines on the same dark-line image: only its bright surroundings' rims.
    assert edges.line_art(dark, lines="light lines")[0, :, 15:17, 0].max() == 0
    assert edges.line_art(light, lines="light lines")[0, :, 15:17, 0].mean() > 0.9
    both = edges.line_art(dark, lines="both")[0, ..., 0]
    assert both[:, 15:17].mean() > 0.9 and both[:, 12:14].max() > 0  # the rims too


def test_grey_images_are_read_as_they_are():
    grey = square()[..., :1]
    assert np.array_equal(edges.luminance(grey), grey[..., 0].double().numpy())
    out = edges.canny(grey)
    assert out.shape == (1, 32, 32, 3) and out[0, 8:24, 7:9, 0].sum() >= 14
