"""Image Grid: where cells land, how labels take room, size errors and resizing."""

from __future__ import annotations

import pytest
import torch

from gf_image import grid
from graphflow import Executor, Image, Int, Registry, node
from support import link, make_workflow, registry_with

WHITE = 0xFFFFFF


def solid(values: list[float], height: int = 20, width: int = 30) -> torch.Tensor:
    """A batch of flat grey images, one per value."""
    return torch.stack([torch.full((height, width, 3), v) for v in values])


def test_cells_fill_rows_left_to_right_with_padding_between():
    images = solid([0.0, 0.25, 0.5, 0.75, 1.0])
    sheet = grid.image_grid(images, columns=3, padding=4, background=WHITE)[0]
    # 3 columns × (30 + 4) + 4; 2 rows × (20 + 4) + 4
    assert sheet.shape == (2 * 24 + 4, 3 * 34 + 4, 3)
    for index, value in enumerate([0.0, 0.25, 0.5, 0.75, 1.0]):
        row, column = divmod(index, 3)
        y, x = 4 + row * 24, 4 + column * 34
        cell = sheet[y : y + 20, x : x + 30]
        assert torch.allclose(cell, torch.full_like(cell, value), atol=1 / 255)
    # the sixth place is empty: background
    assert torch.all(sheet[28:48, 72:102] == 1.0)


def test_zero_columns_make_the_grid_as_square_as_possible():
    sheet = grid.image_grid(solid([0.5] * 5, 10, 10), columns=0, padding=0)[0]
    assert sheet.shape[:2] == (20, 30)  # ceil(sqrt(5)) = 3 columns, 2 rows


def test_columns_larger_than_the_batch_give_one_row():
    sheet = grid.image_grid(solid([0.5] * 2, 10, 10), columns=8, padding=0)[0]
    assert sheet.shape[:2] == (10, 20)


def test_labels_are_drawn_in_margins_and_leave_the_cells_untouched():
    images = solid([0.5] * 4)
    plain = grid.image_grid(images, columns=2, padding=4)[0]
    labelled = grid.image_grid(
        images,
        columns=2,
        padding=4,
        row_labels="seed 1\nseed 2",
        column_labels="cfg 1\ncfg 7",
        font_size=12,
    )[0]
    assert labelled.shape[0] > plain.shape[0] and labelled.shape[1] > plain.shape[1]
    # text is dark on white: the margins hold ink, and no cell pixel changed
    top_margin = labelled[: labelled.shape[0] - plain.shape[0]]
    left_margin = labelled[:, : labelled.shape[1] - plain.shape[1]]
    assert top_margin.min() < 0.5 and left_margin.min() < 0.5
    dy, dx = labelled.shape[0] - plain.shape[0], labelled.shape[1] - plain.shape[1]
    assert torch.equal(labelled[dy:, dx:], plain)


def test_cell_labels_add_a_strip_under_every_row_of_cells():
    images = solid([0.5] * 4)
    plain = grid.image_grid(images, columns=2, padding=4, font_size=10)[0]
    captioned = grid.image_grid(
        images, columns=2, padding=4, font_size=10, cell_labels="a\nb\nc\nd"
    )[0]
    strip = captioned.shape[0] - plain.shape[0]
    assert strip == 2 * (10 + 10 // 3)
    under_first = captioned[24:37, 4:34]
    assert under_first.min() < 0.5  # the label "a" is drawn under the first cell


def test_label_text_colour_and_background_are_used():
    sheet = grid.image_grid(
        solid([0.5]), row_labels="x", background=0x000000, text_color=0xFF0000, font_size=16
    )[0]
    margin = sheet[:, : 8 + 10]
    red = (margin[..., 0] > 0.9) & (margin[..., 1] < 0.1)
    assert red.any()
    assert torch.all(sheet[0, 0] == 0.0)


def test_more_labels_than_places_is_an_error_naming_the_counts():
    with pytest.raises(ValueError, match="3 row labels for 1 rows"):
        grid.image_grid(solid([0.5] * 2), columns=2, row_labels="a\nb\nc")


def test_blank_lines_keep_label_positions():
    assert grid.split_labels("\na\n\nc\n\n") == ["a", "", "c"]


def test_images_of_different_sizes_are_an_error_naming_the_sizes():
    images = [torch.zeros(10, 20, 3), torch.zeros(12, 16, 3)]
    with pytest.raises(ValueError, match=r"16×12, 20×10"):
        grid.grid_layout(images)


def test_resize_fits_every_image_to_the_first_ones_size():
    images = [torch.zeros(10, 20, 3), torch.ones(5, 10, 3)]
    sheet = grid.grid_layout(images, columns=2, style=grid.GridStyle(padding=0), resize=True)
    assert sheet.shape == (10, 40, 3)
    assert torch.allclose(sheet[:, 20:], torch.ones(10, 20, 3), atol=1 / 255)


def test_grey_images_are_shown_grey():
    sheet = grid.grid_layout([torch.full((4, 4, 1), 0.5)], style=grid.GridStyle(padding=0))
    assert sheet.shape == (4, 4, 3)
    assert torch.allclose(sheet, torch.full((4, 4, 3), 0.5), atol=1 / 255)


@node("t.grey_batch")
def grey_batch(count: Int(min=1) = 4) -> Image:
    """A batch of flat grey images from dark to light."""
    return solid([i / count for i in range(count)], 8, 8)


@pytest.fixture
def registry() -> Registry:
    return registry_with(*grid.NODES, grey_batch)


def test_grid_runs_in_a_workflow(registry):
    workflow = make_workflow(
        {
            "batch": ("t.grey_batch", {"count": 4}),
            "grid": (
                "image.grid",
                {"images": link("batch", "image"), "columns": 2, "padding": 2},
            ),
            "show": ("image.preview", {"images": link("grid", "image")}),
        }
    )
    result = Executor(registry).run(workflow, outputs=["grid"])
    assert result.ok, result.error
    assert result.outputs["grid"]["image"].shape == (1, 2 * 10 + 2, 2 * 10 + 2, 3)
