"""Preprocessors on user-provided weights (gf_image/preprocessors_user.py): image.depth_map on
a tiny random DPT saved locally, against transformers' own depth-estimation pipeline, and
the messages when no depth model is there."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from gf_image import examples
from gf_image import preprocessors_user as pre
from graphflow import Executor, ValidationFailed
from graphflow.runtime.models import ModelFileError, ModelManager
from support import link, make_workflow, registry_with


def save_tiny_dpt(folder, seed: int = 0) -> None:
    """A DPT depth model of ~140 KB with random weights (large enough to vary over a photo)."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5],
        head_hidden_size=8,
    )
    torch.manual_seed(seed)
    model = DPTForDepthEstimation(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(
        folder
    )


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_tiny_dpt(root / "preprocessors" / "tiny-dpt")
    segmenter = root / "preprocessors" / "segmenter"
    segmenter.mkdir()
    (segmenter / "config.json").write_text(
        json.dumps({"model_type": "dpt", "architectures": ["DPTForSemanticSegmentation"]})
    )
    return root


@pytest.fixture
def models(models_root, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    pre._unmanaged_depth.cache_clear()
    return models_root


def depth_workflow(model: str) -> object:
    return make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "coffee", "size": 48}),
            "depth": ("image.depth_map", {"image": link("photo", "image"), "model": model}),
            "show": ("image.preview", {"images": link("depth", "image")}),
        }
    )


def test_only_depth_model_folders_are_offered(models):
    assert pre.list_depth_models() == ["tiny-dpt"]


def test_the_depth_map_is_transformers_pipelines_stretched_to_0_1(models):
    from transformers import pipeline

    photo = examples.example_photo("coffee", size=48)
    pixels = (photo[0].numpy() * 255).round().astype(np.uint8)
    estimator = pipeline(
        "depth-estimation", model=str(models / "preprocessors" / "tiny-dpt"), local_files_only=True
    )
    expected = estimator(PILImage.fromarray(pixels))["predicted_depth"].float()
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    depth = pre.depth_map(photo, model="tiny-dpt")
    assert depth.shape == photo.shape and torch.equal(depth[..., 0], depth[..., 2])
    assert (depth[0, ..., 0] - expected).abs().max() < 1e-5
    assert depth.min() == 0.0 and depth.max() == 1.0


def test_each_image_of_a_batch_has_its_own_map(models):
    photo = examples.example_photo("coffee", size=48)
    batch = torch.cat([photo, photo.flip(2)])
    depth = pre.depth_map(batch, model="tiny-dpt")
    assert torch.equal(depth[0], pre.depth_map(photo, model="tiny-dpt")[0])
    assert not torch.allclose(depth[0], depth[1], atol=0.05)


def test_the_model_loads_once_per_manager(models):
    registry = registry_with(*pre.NODES)
    manager = ModelManager()
    executor = Executor(registry, models=manager)
    for _ in range(2):
        result = executor.run(depth_workflow("tiny-dpt"), outputs=["depth"])
        assert result.ok, result.error
    assert manager.loads == 1


def test_without_a_depth_model_validation_says_which_folder_to_fill(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert pre.list_depth_models() == [pre.NO_DEPTH_MODEL]
    registry = registry_with(*pre.NODES)
    with pytest.raises(ValidationFailed) as caught:
        Executor(registry, models=ModelManager()).run(depth_workflow(pre.NO_DEPTH_MODEL))
    message = str(caught.value)
    assert "needs a depth-estimation model, which graphflow cannot ship" in message
    assert "models/preprocessors/<name>/" in message and "Depth-Anything-V2-Small-hf" in message
    with pytest.raises(ModelFileError, match=r"models/preprocessors/<name>/"):
        pre.depth_map(torch.rand(1, 8, 8, 3))


def test_a_folder_of_another_task_is_refused_clearly(models):
    with pytest.raises(ModelFileError, match=r"segmenter is not a depth-estimation model"):
        pre.depth_model_path("segmenter")


def test_a_depth_folder_without_weights_is_refused_clearly(tmp_path, monkeypatch):
    broken = tmp_path / "preprocessors" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text(json.dumps({"model_type": "depth_anything"}))
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert pre.list_depth_models() == ["broken"]
    with pytest.raises(ModelFileError, match=r"broken could not be loaded as a depth model"):
        pre.depth_map(torch.rand(1, 8, 8, 3), model="broken")
