"""Segmentation models users bring (gf_vision/segment_models.py): a tiny random SegFormer and
DETR-panoptic saved with save_pretrained, a random torchvision DeepLabV3 state dict, and the
messages for a missing or unknown model."""

from __future__ import annotations

import json

import pytest
import torch

from gf_image import examples
from gf_vision import segment as seg
from gf_vision import segment_models as sm
from graphflow import Executor, ValidationFailed
from graphflow.runtime.models import ModelFileError, ModelManager
from support import link, make_workflow, registry_with

SEGFORMER_LABELS = {0: "sky", 1: "person", 2: "tree", 3: "road"}
DETR_LABELS = {0: "cat", 1: "dog", 2: "grass"}


def save_tiny_segformer(folder) -> None:
    """A two-stage SegFormer (~10 KB of random weights) labelled with SEGFORMER_LABELS."""
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        id2label=SEGFORMER_LABELS,
        label2id={name: index for index, name in SEGFORMER_LABELS.items()},
    )
    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def save_tiny_detr(folder) -> None:
    """A DETR panoptic model on a small ResNet (no timm, no download) that favours "cat"."""
    from transformers import DetrConfig, DetrForSegmentation, DetrImageProcessor, ResNetConfig

    backbone = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 8, 16, 16],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = DetrConfig(
        backbone_config=backbone,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        d_model=64,  # the mask head needs d_model + heads divisible by 8
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        num_queries=5,
        id2label=DETR_LABELS,
        label2id={name: index for index, name in DETR_LABELS.items()},
    )
    torch.manual_seed(0)
    model = DetrForSegmentation(config)
    with torch.no_grad():  # every query confidently "cat" so that segments survive
        model.detr.class_labels_classifier.bias.zero_()
        model.detr.class_labels_classifier.bias[0] = 8.0
    model.save_pretrained(folder)
    DetrImageProcessor(size={"shortest_edge": 32, "longest_edge": 48}).save_pretrained(folder)


def save_deeplab(path, classes: int = 21) -> None:
    """A random deeplabv3_mobilenet_v3_large state dict with its auxiliary head."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    model = deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=classes, aux_loss=True
    )
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    folder = root / "segmentation"
    save_tiny_segformer(folder / "tiny-segformer")
    depth = folder / "a-depth-model"
    depth.mkdir()
    (depth / "config.json").write_text(
        json.dumps({"model_type": "dpt", "architectures": ["DPTForDepthEstimation"]})
    )
    (folder / "notes.pth").write_bytes(b"not a weights file")
    return root


@pytest.fixture
def models(models_root, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkeypatch.setattr(sm, "TORCHVISION_SHORT_SIDE", 64)  # small and fast on a CPU
    seg._unmanaged_model.cache_clear()
    return models_root


@pytest.fixture(scope="module")
def detr(models_root):
    save_tiny_detr(models_root / "segmentation" / "tiny-detr")
    return "tiny-detr"


@pytest.fixture(scope="module")
def deeplab(models_root):
    save_deeplab(models_root / "segmentation" / "deeplab.pth")
    return "deeplab.pth"


@pytest.fixture(scope="module")
def photo():
    return examples.example_photo("coffee", size=48)


def test_model_folders_and_weight_files_are_offered(models):
    assert set(sm.list_segmentation_models()) >= {"tiny-segformer", "a-depth-model", "notes.pth"}


def test_segformer_loads_offline_and_labels_every_pixel_with_its_classes(models, photo):
    segmentation, image = seg.segment(photo, model="tiny-segformer")
    assert segmentation.names == tuple(SEGFORMER_LABELS.values())
    assert segmentation.labels.shape == photo.shape[:3]
    assert segmentation.labels.dtype == torch.int64
    assert set(segmentation.labels.unique().tolist()) <= set(SEGFORMER_LABELS)
    assert image.shape == photo.shape


def test_segformer_map_is_transformers_own_post_processing(models, photo):
    from transformers import AutoImageProcessor, SegformerForSemanticSegmentation

    folder = models / "segmentation" / "tiny-segformer"
    model = SegformerForSemanticSegmentation.from_pretrained(folder, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    inputs = processor(images=sm.uint8_rgb(photo[0]), return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    expected = processor.post_process_semantic_segmentation(outputs, target_sizes=[(32, 48)])
    segmentation, _ = seg.segment(photo, model="tiny-segformer")
    assert torch.equal(segmentation.labels[0], expected[0])


def test_the_colour_image_paints_each_class_in_its_palette_colour(models, photo):
    segmentation, image = seg.segment(photo, model="tiny-segformer")
    label = int(segmentation.labels[0, 5, 7])
    expected = torch.tensor(segmentation.colors[label], dtype=torch.float32) / 255
    assert torch.allclose(image[0, 5, 7], expected)


@pytest.mark.slow
def test_detr_panoptic_segments_are_merged_into_their_classes(models, detr, photo):
    from transformers import AutoImageProcessor, DetrForSegmentation

    segmentation, _ = seg.segment(photo, model="tiny-detr", threshold=0.5)
    assert segmentation.names == (*DETR_LABELS.values(), "(unlabelled)")
    assert (segmentation.labels == 0).any()  # the model favours "cat"
    folder = models / "segmentation" / "tiny-detr"
    model = DetrForSegmentation.from_pretrained(folder, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    inputs = processor(images=sm.uint8_rgb(photo[0]), return_tensors="pt")
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"])
    found = processor.post_process_panoptic_segmentation(
        outputs, threshold=0.5, target_sizes=[(32, 48)], label_ids_to_fuse=set()
    )[0]
    expected = torch.full((32, 48), 3, dtype=torch.int64)
    for info in found["segments_info"]:
        expected[found["segmentation"] == info["id"]] = info["label_id"]
    assert torch.equal(segmentation.labels[0], expected)


@pytest.mark.slow
def test_a_deeplabv3_state_dict_loads_with_voc_classes_and_runs(models, deeplab, photo):
    segmentation, image = seg.segment(photo, model="deeplab.pth", allow_pickle=True)
    assert len(segmentation.names) == 21 and segmentation.names[15] == "person"
    assert segmentation.colors[15] == (192, 128, 128)  # VOC colours
    assert segmentation.labels.shape == photo.shape[:3] and image.shape == photo.shape
    assert int(segmentation.labels.max()) < 21


def test_deeplabv3_backbones_are_told_apart_by_their_keys():
    from torchvision.models import segmentation as tv

    for name in ("deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large"):
        with torch.device("meta"):
            model = getattr(tv, name)(weights=None, weights_backbone=None, num_classes=5)
        assert sm.torchvision_layout(model.state_dict()).name == name


def test_another_torchvision_network_is_refused_clearly():
    from torchvision.models.segmentation import fcn_resnet50

    with torch.device("meta"):
        state = fcn_resnet50(weights=None, weights_backbone=None, num_classes=3).state_dict()
    with pytest.raises(ModelFileError, match="not a torchvision DeepLabV3 state dict"):
        sm.torchvision_layout(state)


def test_pickle_weights_need_the_opt_in(models, photo):
    with pytest.raises(ModelFileError, match=r"notes\.pth is a pickle file"):
        seg.segment(photo, model="notes.pth")
    problems = seg.segment.check_function(model="notes.pth")
    assert problems.startswith("model: notes.pth is a pickle file")


def test_a_file_that_is_no_weights_is_refused_clearly(models, photo):
    with pytest.raises(ModelFileError, match=r"notes\.pth is not a plain weights file"):
        seg.segment(photo, model="notes.pth", allow_pickle=True)


def test_a_folder_of_another_task_is_refused_clearly(models, photo):
    with pytest.raises(ModelFileError, match="a-depth-model is not a segmentation model"):
        seg.segment(photo, model="a-depth-model")


def test_an_unknown_name_says_what_is_available(models, photo):
    with pytest.raises(ModelFileError, match=r"no model 'missing'.*available: .*tiny-segformer"):
        seg.segment(photo, model="missing")


def test_the_model_loads_once_per_manager(models):
    workflow = segment_workflow("tiny-segformer")
    manager = ModelManager()
    executor = Executor(registry_with(*seg.NODES), models=manager)
    for _ in range(2):
        result = executor.run(workflow, outputs=["segment"])
        assert result.ok, result.error
    assert manager.loads == 1


def test_without_a_model_validation_says_which_folder_to_fill(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert sm.list_segmentation_models() == [sm.NO_SEGMENTATION_MODEL]
    executor = Executor(registry_with(*seg.NODES), models=ModelManager())
    with pytest.raises(ValidationFailed) as caught:
        executor.run(segment_workflow(sm.NO_SEGMENTATION_MODEL))
    message = str(caught.value)
    assert "needs a segmentation model, which graphflow cannot ship" in message
    assert "models/segmentation/<name>/" in message and "vision.superpixels" in message
    with pytest.raises(ModelFileError, match="models/segmentation/"):
        seg.segment(torch.rand(1, 8, 8, 3))


def segment_workflow(model: str):
    return make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "coffee", "size": 48}),
            "segment": ("vision.segment", {"image": link("photo", "image"), "model": model}),
            "show": ("image.preview", {"images": link("segment", "image")}),
        }
    )
