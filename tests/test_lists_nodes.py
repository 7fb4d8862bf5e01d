"""The core list nodes (plugins/gf_core/lists.py) and the prompt × seed grid workflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gf_core import lists
from graphflow import Executor, OutputCache, load_workflow
from support import link, make_workflow, registry_with

WORKFLOW = Path(__file__).parents[1] / "workflows" / "prompt_seed_grid.json"


def test_text_list_gives_one_text_per_non_blank_line():
    assert lists.text_list("  a cat \n\nb dog\n") == ["a cat", "b dog"]


def test_number_range_counts_from_start_by_step():
    assert lists.number_range(start=5, count=3, step=10) == [5, 15, 25]


def test_cross_gives_every_pair_row_by_row():
    rows, columns = lists.cross(["p", "q"], [0, 1, 2])
    assert list(zip(rows, columns, strict=True)) == [
        ("p", 0),
        ("p", 1),
        ("p", 2),
        ("q", 0),
        ("q", 1),
        ("q", 2),
    ]


def test_image_batch_concatenates_and_batch_to_list_splits_again():
    images = [torch.full((1, 4, 6, 3), float(i) / 3) for i in range(3)]
    batch = lists.image_batch(images)
    assert batch.shape == (3, 4, 6, 3)
    back = lists.batch_to_list(batch)
    assert len(back) == 3 and all(torch.equal(a, b) for a, b in zip(back, images, strict=True))


def test_image_batch_refuses_images_of_different_sizes():
    with pytest.raises(ValueError, match=r"different sizes \(6×4, 8×4\)"):
        lists.image_batch([torch.zeros(1, 4, 6, 3), torch.zeros(1, 4, 8, 3)])


def test_a_cross_product_maps_a_node_over_every_combination():
    registry = registry_with(*lists.NODES)
    workflow = make_workflow(
        {
            "words": ("core.text_list", {"text": "a\nb"}),
            "numbers": ("core.range", {"count": 2}),
            "pairs": (
                "core.cross",
                {"rows": link("words", "string"), "columns": link("numbers", "int")},
            ),
            "text": ("core.to_string", {"value": link("pairs", "columns")}),
            "label": ("core.concat", {"a": link("pairs", "rows"), "b": link("text", "string")}),
            "joined": ("core.join_text", {"texts": link("label", "string"), "separator": ","}),
            "show": ("core.show", {"value": link("joined", "string")}),
        }
    )
    result = Executor(registry, cache=OutputCache()).run(workflow)
    assert result.ok, result.error
    assert result.ui["show"] == {"text": ["a0,a1,b0,b1"]}
    assert result.elements["label"]["executed"] == [0, 1, 2, 3]


def test_the_prompt_seed_grid_workflow_renders_one_labelled_grid(tmp_path):
    registry = registry_with(*lists.NODES)
    workflow = load_workflow(WORKFLOW)
    workflow.set_input("sampler", "steps", 2)  # the layout is under test, not the pictures
    executor = Executor(registry, cache=OutputCache(), output_dir=tmp_path)
    result = executor.run(workflow, outputs=["save", "grid"])
    assert result.ok, result.error
    assert result.elements["sampler"]["executed"] == list(range(12))  # 3 prompts × 4 seeds
    # equal prompts are tokenized and encoded once each: 3 runs, 9 elements from the cache
    assert len(result.elements["positive_cond"]["executed"]) == 3
    grid = result.outputs["grid"]["image"]
    assert grid.shape[0] == 1
    cell = 64  # 32-pixel samples scaled ×2
    assert grid.shape[2] > 4 * cell and grid.shape[1] > 3 * cell
    assert len(list(tmp_path.glob("prompt_seed_grid_*.png"))) == 1
