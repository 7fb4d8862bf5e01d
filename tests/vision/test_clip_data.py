"""clip-graphflow-mini on its Debian data (gf_vision/clip_data.py): captions and splits, and
zero-shot accuracy on a Fashion-MNIST test subset well above chance. Skipped without the
data packages unless GRAPHFLOW_REQUIRE_DATA=1."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gf_vision import clip_data, clip_nodes

HAVE_FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION and os.environ.get("GRAPHFLOW_REQUIRE_DATA") != "1",
    reason="Debian package dataset-fashion-mnist is not installed",
)
needs_emoji = pytest.mark.skipif(
    not clip_data.EMOJI_FONT.is_file() and os.environ.get("GRAPHFLOW_REQUIRE_DATA") != "1",
    reason="Debian package fonts-noto-color-emoji is not installed",
)


def test_captions_come_from_file_names_and_folders():
    path = Path("food/desserts/candy_01.png")
    assert clip_data.clipart_caption(path) == "clip art of candy, desserts, food"
    assert clip_data.clipart_category(Path("signs_and_symbols/x.png")) == "signs and symbols"
    assert clip_data.emoji_caption("GRINNING FACE") == "an emoji of a grinning face"
    assert clip_data.emoji_caption("APPLE") == "an emoji of an apple"


def test_the_split_is_stable_and_about_a_tenth():
    keys = [f"item {i}" for i in range(2000)]
    held = [clip_data.held_out(k) for k in keys]
    assert held == [clip_data.held_out(k) for k in keys]
    assert 150 < sum(held) < 250


def test_a_caption_fits_every_item_it_describes():
    captions = clip_data.Captions()
    fits = clip_data.fashion_captions(captions)
    red, blue = (
        clip_data.tiny_data().COLOURS.index("red"),
        clip_data.tiny_data().COLOURS.index("blue"),
    )
    sneaker = clip_data.tiny_data().CLASS_NAMES.index("sneaker")
    red_sneaker = {captions.texts[i] for i in fits[(sneaker, red)]}
    assert {"a red sneaker", "a sneaker", "a red object"} <= red_sneaker
    assert "a blue sneaker" not in red_sneaker and "a red bag" not in red_sneaker
    assert "a red object" in {captions.texts[i] for i in fits[(0, red)]}
    assert "a red object" not in {captions.texts[i] for i in fits[(0, blue)]}


@needs_emoji
def test_emoji_render_in_colour():
    images, names = clip_data.load_emoji(limit=3)
    assert images.shape == (3, clip_data.IMAGE_SIZE, clip_data.IMAGE_SIZE, 3)
    assert len(names) == 3 and all(isinstance(n, str) for n in names)
    assert images.std() > 10


@pytest.fixture(scope="module")
def scorer():
    return clip_nodes.load_scoring_model(clip_nodes.EMBEDDED_CHOICE)


@pytest.fixture(scope="module")
def fashion_subset():
    images, labels = clip_data.load_fashion("test")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(images), 400, replace=False)
    colours = rng.integers(0, len(clip_data.tiny_data().COLOURS), len(idx))
    rgb = torch.from_numpy(clip_data.tinted_fashion(images[idx], colours)).permute(0, 2, 3, 1)
    return rgb, labels[idx], colours


@needs_fashion
def test_zero_shot_class_accuracy_is_well_above_chance(scorer, fashion_subset):
    images, labels, _ = fashion_subset
    with clip_nodes.scorer_on_device(scorer, None) as model:
        probs = model.probabilities(images, clip_data.class_prompts())
    accuracy = float((probs.argmax(1).numpy() == labels).mean())
    assert accuracy > 0.65  # measured 78% on all 10 000 test items; chance is 10%


@needs_fashion
def test_zero_shot_colour_accuracy_is_near_perfect(scorer, fashion_subset):
    images, _, colours = fashion_subset
    with clip_nodes.scorer_on_device(scorer, None) as model:
        probs = model.probabilities(images, clip_data.colour_prompts())
    assert float((probs.argmax(1).numpy() == colours).mean()) > 0.95  # measured 100%


@needs_fashion
def test_a_red_item_scores_higher_for_red_than_for_blue(scorer, fashion_subset):
    images, labels, colours = fashion_subset
    names = clip_data.tiny_data().CLASS_NAMES
    red = clip_data.tiny_data().COLOURS.index("red")
    wins = []
    for i in np.flatnonzero(colours == red)[:10]:
        name = names[labels[i]]
        red_score = clip_nodes.clip_score(scorer, images[i : i + 1], prompt=f"a red {name}")
        blue_score = clip_nodes.clip_score(scorer, images[i : i + 1], prompt=f"a blue {name}")
        wins.append(float(red_score["scores"][1:-1]) > float(blue_score["scores"][1:-1]))
    assert len(wins) >= 5 and all(wins)
