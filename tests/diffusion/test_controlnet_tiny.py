"""The embedded graphflow-tiny-controlnet-canny: offered and loaded by name with no models
folder, the shipped workflow runs, and the ControlNet makes pictures follow the edge map."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from graphflow import Executor, load_plugins, load_workflow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "controlnet_tiny_canny.json"
NAME = "graphflow-tiny-controlnet-canny"


@pytest.fixture(scope="module")
def new_install(tmp_path_factory):
    """(an empty models folder, a CPU executor): a new installation, for the whole module so
    that the models load once."""
    models = tmp_path_factory.mktemp("install") / "models"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHFLOW_MODELS", str(models))
        patch.setenv("GRAPHFLOW_DEVICE", "cpu")
        yield models, Executor(load_plugins().registry, device="cpu")


def _edge_f1():
    """``edge_f1`` and ``picture_edges`` of scripts/eval_controlnet_tiny.py (the card's metric)."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))  # its sibling imports
    path = ROOT / "scripts" / "eval_controlnet_tiny.py"
    spec = importlib.util.spec_from_file_location("eval_controlnet_tiny", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.edge_f1, module.picture_edges


def test_loader_offers_the_embedded_controlnet_by_name(new_install):
    from gf_diffusion.controlnet_files import CONTROLNETS, controlnet_label, list_controlnets
    from gf_diffusion.embedded import EMBEDDED_CONTROLNETS

    assert list_controlnets() == [NAME]
    assert CONTROLNETS.path(NAME) == EMBEDDED_CONTROLNETS[NAME]
    assert controlnet_label(NAME) == "diffusers ControlNet"
    weights = EMBEDDED_CONTROLNETS[NAME] / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 8_000_000  # fp16, small enough to ship


def test_a_models_folder_controlnet_of_the_same_name_replaces_the_embedded_one(new_install):
    from gf_diffusion.controlnet_files import CONTROLNETS

    mine = new_install[0] / "controlnet" / NAME
    mine.mkdir(parents=True)
    (mine / "config.json").write_text("{}")
    try:
        assert CONTROLNETS.path(NAME) == mine.resolve()
    finally:
        shutil.rmtree(mine.parent)  # the later tests load the embedded one


@pytest.mark.slow
def test_load_controlnet_node_loads_it_for_graphflow_tiny(new_install):
    from gf_diffusion.control_apply import hint_downscale

    workflow = load_workflow(WORKFLOW)
    result = new_install[1].run(workflow, outputs=["controlnet"])
    assert result.ok, result.error
    net = result.outputs["controlnet"]["control_net"].unpatched
    assert type(net).__name__ == "ControlNetModel"
    assert hint_downscale(net) == 4  # a 32 px hint for the 8×8 latent
    assert net.config.cross_attention_dim == 384  # MiniLM's width, as graphflow-tiny


def _stack(images) -> np.ndarray:
    """A list output (one IMAGE per element) or one IMAGE batch as (N, H, W, 3) NumPy."""
    if isinstance(images, list):
        return np.concatenate([image.numpy() for image in images])
    return images.numpy()


@pytest.mark.slow
def test_workflow_runs_and_control_follows_the_edges(new_install):
    edge_f1, picture_edges = _edge_f1()
    workflow = load_workflow(WORKFLOW)
    for sampler in ("source_sampler", "plain_sampler", "control_sampler"):
        workflow.set_input(sampler, "steps", 10)
    result = new_install[1].run(workflow, outputs=["grid", "edges", "plain", "controlled"])
    assert result.ok, result.error
    items = len(workflow.nodes["prompt_text"].inputs["value"].splitlines())
    grid = result.outputs["grid"]["image"]
    assert grid.shape[0] == 1 and grid.shape[1] > items * 4 * 32  # rows of ×4 cells
    hints = _stack(result.outputs["edges"]["image"])[..., 0] > 0.5
    plain = edge_f1(picture_edges(_stack(result.outputs["plain"]["image"])), hints)
    controlled = edge_f1(picture_edges(_stack(result.outputs["controlled"]["image"])), hints)
    assert len(hints) == items and hints.any(axis=(1, 2)).all()
    # Same seed and prompt: only the ControlNet differs, and it pulls the edges to the hint's.
    assert controlled.mean() > plain.mean() + 0.15, (controlled, plain)  # measured: 0.98, 0.69
