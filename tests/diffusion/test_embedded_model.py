"""The embedded graphflow-tiny model: offered and loaded with no models folder, and it
draws what the shipped txt2img workflow asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphflow import Executor, load_plugins, load_workflow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "txt2img.json"


@pytest.fixture
def fresh_machine(tmp_path, monkeypatch):
    """An empty models folder and the CPU: what a new installation has."""
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return tmp_path


@pytest.fixture(scope="module")
def executor():
    """One executor for the module, so the model loads once."""
    return Executor(load_plugins().registry, device="cpu")


def test_loader_offers_graphflow_tiny_without_a_models_folder(fresh_machine):
    from gf_diffusion.loader import list_checkpoints

    assert list_checkpoints() == ["graphflow-tiny"]


def test_a_models_folder_checkpoint_of_the_same_name_replaces_the_embedded_one(fresh_machine):
    from gf_diffusion.embedded import EMBEDDED_CHECKPOINTS
    from gf_diffusion.loader import checkpoint_path, list_checkpoints

    assert checkpoint_path("graphflow-tiny") == EMBEDDED_CHECKPOINTS["graphflow-tiny"]
    mine = fresh_machine / "models" / "checkpoints" / "graphflow-tiny"
    mine.mkdir(parents=True)
    (mine / "model_index.json").write_text("{}")
    assert checkpoint_path("graphflow-tiny") == mine.resolve()
    assert list_checkpoints() == ["graphflow-tiny"]


def test_embedded_model_loads_minilm_from_its_package(fresh_machine, executor):
    workflow = load_workflow(WORKFLOW)
    result = executor.run(workflow, outputs=["ckpt"])
    assert result.ok, result.error
    outputs = result.outputs["ckpt"]
    (encoder,) = outputs["text_encoder"].encoders
    (tokenizer,) = outputs["tokenizer"].tokenizers
    assert type(encoder.unpatched).__name__ == "BertModel"
    unet_config = outputs["model"].unpatched.config
    assert encoder.unpatched.config.hidden_size == 384 == unet_config.cross_attention_dim
    assert tokenizer.model_max_length == 16  # prompts pad to 16 tokens, not BERT's 512


def item_colour(image: np.ndarray) -> np.ndarray:
    """Mean RGB of an H×W×3 image's item: the pixels brighter than the black background."""
    item = image.max(axis=-1) > 0.25
    assert item.sum() > 20, "no item drawn"
    return image[item].mean(axis=0)


def test_txt2img_workflow_draws_a_red_sneaker(fresh_machine, executor):
    from PIL import Image

    workflow = load_workflow(WORKFLOW)
    workflow.set_input("sampler", "seed", 7)
    output = fresh_machine / "output"
    saving = Executor(executor.registry, models=executor.models, device="cpu", output_dir=output)
    result = saving.run(workflow)
    assert result.ok, result.error
    files = sorted(output.glob("*.png"))
    assert len(files) == 4
    for file in files:
        image = np.asarray(Image.open(file).convert("RGB"), dtype=np.float32) / 255
        assert image.shape == (32, 32, 3)
        red, green, blue = item_colour(image)
        assert red > 1.5 * green and red > 1.5 * blue, (
            f"{file.name}: item colour {red, green, blue}"
        )


def test_blue_prompt_draws_blue_items(fresh_machine, executor):
    workflow = load_workflow(WORKFLOW)
    workflow.set_input("prompt", "text", "a blue dress")
    workflow.set_input("sampler", "seed", 11)
    result = executor.run(workflow, outputs=["decode"])
    assert result.ok, result.error
    images = result.outputs["decode"]["image"].numpy()
    for image in images:
        red, green, blue = item_colour(image)
        assert blue > 1.3 * red and blue > green, f"item colour {red, green, blue}"
