"""Scoring nodes (gf_vision/clip_nodes.py) on the embedded clip-graphflow-mini and on a tiny
random transformers CLIPModel saved locally: loading offline, zero-shot probabilities,
CLIP scores and ranking, messages for wrong folders. No Debian data needed here."""

from __future__ import annotations

import json

import pytest
import torch

from gf_vision import clip_model, clip_nodes
from graphflow import Executor
from graphflow.runtime.models import ModelFileError, ModelManager
from support import link, make_workflow, registry_with


def save_tiny_clip(folder, seed: int = 0) -> None:
    """A CLIPModel of a few hundred KB with random weights, and its processor."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizerFast,
    )

    config = CLIPConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 1000,
            "max_position_embeddings": 16,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "red</w>": 3, "cat</w>": 4}
    vocab.update({chr(c): 5 + i for i, c in enumerate(range(ord("a"), ord("z") + 1))})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizerFast(
        vocab_file=str(folder / "vocab.json"),
        merges_file=str(folder / "merges.txt"),
        model_max_length=16,
    )
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_tiny_clip(root / clip_nodes.CLIP_FOLDER / "tiny-clip")
    other = root / clip_nodes.CLIP_FOLDER / "not-clip"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return root


@pytest.fixture
def models(models_root, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    return models_root


@pytest.fixture(scope="module")
def mini():
    return clip_nodes.load_scoring_model(clip_nodes.EMBEDDED_CHOICE)


def solid(*rgb: float, size: int = 32) -> torch.Tensor:
    """One (1, size, size, 3) image: a rectangle of one colour on black (as the model's
    Fashion-MNIST items are drawn)."""
    image = torch.zeros(1, size, size, 3)
    image[:, size // 4 : size * 13 // 16, size // 5 : size * 4 // 5] = torch.tensor(rgb)
    return image


def test_the_embedded_model_is_offered_by_default_and_small():
    assert clip_nodes.EMBEDDED_CHOICE in clip_nodes.list_scoring_models()
    weights = clip_model.EMBEDDED_DIR / clip_model.WEIGHTS_FILE
    assert weights.stat().st_size < 10_000_000
    model = clip_model.load_mini_clip()
    assert not model.training and 1 < float(model.scale()) <= 100


def test_embeddings_are_unit_vectors_of_one_space(mini):
    with clip_nodes.scorer_on_device(mini, None) as scorer:
        images = scorer.image_embeddings(torch.rand(3, 40, 56, 3))
        texts = scorer.text_embeddings(["a red sneaker", "a blue bag"])
    assert images.shape == (3, 256) and texts.shape == (2, 256)
    assert torch.allclose(images.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(texts.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_a_red_image_matches_red_better_than_blue(mini):
    red, blue = solid(0.95, 0.1, 0.1), solid(0.15, 0.3, 1.0)
    out = clip_nodes.zero_shot_classify(
        mini, torch.cat([red, blue]), labels="a red object\na blue object\na green object"
    )
    assert out["label"].splitlines() == ["a red object", "a blue object"]
    table = json.loads(out["probability"])
    assert table[0]["a red object"] > 0.5 and sum(table[0].values()) == pytest.approx(1, abs=1e-3)
    assert out["report"].startswith("clip-graphflow-mini, 3 labels\nimage 0: a red object")


def test_clip_score_ranks_the_batch_best_first(mini):
    batch = torch.cat([solid(0.1, 0.75, 0.2), solid(0.95, 0.1, 0.1), solid(0.15, 0.3, 1.0)])
    out = clip_nodes.clip_score(mini, batch, prompt="a red object", keep=2)
    scores = json.loads(out["scores"])
    order = sorted(range(3), key=lambda i: -scores[i])
    assert order[0] == 1  # the red image
    assert torch.equal(out["ranked"], batch[order])
    assert torch.equal(out["best"], batch[order[:2]])
    assert all(0 <= s <= 100 for s in scores)
    assert out["report"].splitlines()[1] == f"1. image 1: {scores[1]:.2f}"


def test_empty_labels_and_prompts_are_refused(mini):
    assert clip_nodes.zero_shot_classify.check_function(labels=" \n\n") is not None
    assert clip_nodes.zero_shot_classify.check_function(labels="a cat") is None
    with pytest.raises(ValueError, match="labels"):
        clip_nodes.zero_shot_classify(mini, solid(1, 0, 0), labels="\n")
    with pytest.raises(ValueError, match="prompt"):
        clip_nodes.clip_score(mini, solid(1, 0, 0), prompt="  ")


def test_a_local_clip_folder_is_listed_and_scores_like_transformers(models):
    from transformers import CLIPModel, CLIPProcessor

    assert clip_nodes.list_scoring_models() == ["tiny-clip", clip_nodes.EMBEDDED_CHOICE]
    handle = clip_nodes.load_scoring_model("tiny-clip")
    images = torch.rand(2, 32, 32, 3)
    out = clip_nodes.clip_score(handle, images, prompt="a red cat")
    folder = models / clip_nodes.CLIP_FOLDER / "tiny-clip"
    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
    pixels = [(im * 255).byte().numpy() for im in images]
    inputs = processor(text=["a red cat"], images=pixels, return_tensors="pt", padding=True)
    with torch.no_grad():
        cosine = model(**inputs).logits_per_image[:, 0] / model.logit_scale.exp()
    assert json.loads(out["scores"]) == pytest.approx(
        (100 * cosine).clamp(min=0).tolist(), abs=0.01
    )


def test_a_folder_that_is_not_clip_is_refused_clearly(models, tmp_path):
    assert "not-clip" not in clip_nodes.list_scoring_models()
    with pytest.raises(ModelFileError, match="neither clip-graphflow-mini nor a transformers CLIP"):
        clip_nodes.load_scoring_components(models / clip_nodes.CLIP_FOLDER / "not-clip")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ModelFileError, match="could not be loaded as a CLIP model"):
        clip_nodes.load_scoring_components(tmp_path)


def test_in_a_workflow_the_model_loads_once(models):
    registry = registry_with(*clip_nodes.NODES, *_image_nodes())
    manager = ModelManager()
    workflow = make_workflow(
        {
            "scorer": ("vision.load_scoring_model", {"model_name": "tiny-clip"}),
            "photo": ("image.example_photo", {"photo": "chelsea", "size": 32}),
            "score": (
                "vision.clip_score",
                {
                    "scorer": link("scorer", "scorer"),
                    "image": link("photo", "image"),
                    "prompt": "a cat",
                },
            ),
            "classify": (
                "vision.zero_shot_classify",
                {
                    "scorer": link("scorer", "scorer"),
                    "image": link("photo", "image"),
                    "labels": "a cat\na dog",
                },
            ),
            "show": ("image.preview", {"images": link("score", "ranked")}),
        }
    )
    result = Executor(registry, models=manager).run(workflow, outputs=["show", "classify"])
    assert result.ok, result.error
    assert manager.loads == 1


def _image_nodes():
    from gf_image import examples, io

    return [*examples.NODES, *io.NODES]
