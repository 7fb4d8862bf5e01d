"""ComfyUI's ControlNet class types (gf_comfy/nodes_control.py): ComfyUI's specs, and the
same ControlNet, specs and images as graphflow's own ControlNet nodes."""

from __future__ import annotations

import pytest
import torch
from tiny_control import save_controlnets
from tiny_models import build_tiny_sd

from gf_comfy.names import CLASSES
from graphflow import Image, load_plugins, node
from support import link, make_workflow

torch.manual_seed(3)
HINT = torch.rand(1, 32, 32, 3)


@node("test.comfy_control_hint")
def comfy_control_hint() -> Image:
    """A fixed random control image (32×32)."""
    return HINT


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy_control_models")
    build_tiny_sd(root / "checkpoints" / "tiny-sd")
    save_controlnets(root)
    return root


@pytest.fixture(scope="module")
def registry():
    registry = load_plugins().registry
    registry.register(comfy_control_hint, plugin="tests")
    return registry


def _inputs(class_type: str) -> list[tuple]:
    spec = CLASSES[class_type].spec
    return [
        (i.name, i.type, None if i.required else i.default, i.min, i.max, i.step)
        for i in spec.inputs
    ]


def test_specs_are_comfyuis():
    loader = CLASSES["ControlNetLoader"]
    assert (loader.display_name, loader.category) == ("Load ControlNet Model", "loaders")
    assert _inputs("ControlNetLoader") == [("control_net_name", "STRING", None, None, None, None)]
    assert [o.type for o in loader.spec.outputs] == ["CONTROL_NET"]
    diff = CLASSES["DiffControlNetLoader"]
    assert diff.display_name == "Load ControlNet Model (diff)"
    assert [i.name for i in diff.spec.inputs] == ["model", "control_net_name"]
    old = CLASSES["ControlNetApply"]
    assert (old.display_name, old.category, old.deprecated) == (
        "Apply ControlNet (OLD)",
        "conditioning/controlnet",
        True,
    )
    assert _inputs("ControlNetApply") == [
        ("conditioning", "CONDITIONING", None, None, None, None),
        ("control_net", "CONTROL_NET", None, None, None, None),
        ("image", "IMAGE", None, None, None, None),
        ("strength", "FLOAT", 1.0, 0.0, 10.0, 0.01),
    ]
    advanced = CLASSES["ControlNetApplyAdvanced"]
    assert (advanced.display_name, advanced.category) == (
        "Apply ControlNet",
        "conditioning/controlnet",
    )
    assert _inputs("ControlNetApplyAdvanced") == [
        ("positive", "CONDITIONING", None, None, None, None),
        ("negative", "CONDITIONING", None, None, None, None),
        ("control_net", "CONTROL_NET", None, None, None, None),
        ("image", "IMAGE", None, None, None, None),
        ("strength", "FLOAT", 1.0, 0.0, 10.0, 0.01),
        ("start_percent", "FLOAT", 0.0, 0.0, 1.0, 0.001),
        ("end_percent", "FLOAT", 1.0, 0.0, 1.0, 0.001),
        ("vae", "VAE", None, None, None, None),
    ]
    assert not advanced.spec.inputs_by_name["vae"].required
    assert advanced.output_names == ("positive", "negative")


def _graph(native: bool, strength: float = 0.9, start: float = 0.1, end: float = 0.8) -> dict:
    nodes = {
        "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sd"}),
        "pos": ("comfy.clip_text_encode", {"text": "a red cat", "clip": link("ckpt", "clip")}),
        "neg": ("comfy.clip_text_encode", {"text": "", "clip": link("ckpt", "clip")}),
        "hint": ("test.comfy_control_hint", {}),
        "latent": ("comfy.empty_latent_image", {"width": 32, "height": 32, "batch_size": 1}),
    }
    apply_inputs = {
        "positive": link("pos", "conditioning"),
        "negative": link("neg", "conditioning"),
        "control_net": link("cn", "control_net"),
        "image": link("hint", "image"),
        "strength": strength,
    }
    if native:
        nodes["cn"] = (
            "diffusion.load_controlnet",
            {"control_net_name": "tiny-cn-original.safetensors"},
        )
        nodes["apply"] = (
            "diffusion.apply_controlnet",
            {**apply_inputs, "start": start, "end": end},
        )
    else:
        nodes["cn"] = (
            "comfy.control_net_loader",
            {"control_net_name": "tiny-cn-original.safetensors"},
        )
        nodes["apply"] = (
            "comfy.control_net_apply_advanced",
            {**apply_inputs, "start_percent": start, "end_percent": end},
        )
    nodes["sample"] = (
        "comfy.k_sampler",
        {
            "model": link("ckpt", "model"),
            "seed": 5,
            "steps": 4,
            "cfg": 6.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "positive": link("apply", "positive"),
            "negative": link("apply", "negative"),
            "latent_image": link("latent", "latent"),
        },
    )
    nodes["decode"] = (
        "comfy.vae_decode",
        {"samples": link("sample", "latent"), "vae": link("ckpt", "vae")},
    )
    nodes["show"] = ("core.show", {"value": link("decode", "image")})
    return nodes


def test_comfy_graph_equals_the_native_nodes_graph(executor):
    comfy = executor.run(make_workflow(_graph(False)), outputs=["decode", "apply", "cn"])
    native = executor.run(make_workflow(_graph(True)), outputs=["decode", "apply", "cn"])
    assert comfy.ok and native.ok, (comfy.error, native.error)
    assert comfy.outputs["cn"]["control_net"] is native.outputs["cn"]["control_net"]  # resident
    spec_c = comfy.outputs["apply"]["positive"].entries[0].controls[0]
    spec_n = native.outputs["apply"]["positive"].entries[0].controls[0]
    fields = ("kind", "strength", "start", "end")
    assert [getattr(spec_c, f) for f in fields] == [getattr(spec_n, f) for f in fields]
    assert torch.equal(comfy.outputs["decode"]["image"], native.outputs["decode"]["image"])


def test_strength_0_returns_the_conditioning_unchanged(executor):
    nodes = _graph(False, strength=0.0)
    result = executor.run(make_workflow(nodes), outputs=["apply", "pos", "neg"])
    assert result.ok, result.error
    assert result.outputs["apply"]["positive"] is result.outputs["pos"]["conditioning"]
    assert result.outputs["apply"]["negative"] is result.outputs["neg"]["conditioning"]


def test_old_apply_steers_the_one_conditioning_over_the_whole_run(executor):
    nodes = _graph(False)
    nodes["old"] = (
        "comfy.control_net_apply",
        {
            "conditioning": link("pos", "conditioning"),
            "control_net": link("cn", "control_net"),
            "image": link("hint", "image"),
            "strength": 0.7,
        },
    )
    result = executor.run(make_workflow(nodes), outputs=["old"])
    assert result.ok, result.error
    (spec,) = result.outputs["old"]["conditioning"].entries[0].controls
    assert (spec.strength, spec.start, spec.end, spec.kind) == (0.7, 0.0, 1.0, "controlnet")


def test_a_missing_controlnet_file_is_named_by_validation(executor):
    from graphflow.errors import ValidationFailed

    nodes = _graph(False)
    nodes["cn"][1]["control_net_name"] = "nowhere.safetensors"
    with pytest.raises(ValidationFailed, match="control_net_name"):
        executor.run(make_workflow(nodes), outputs=["decode"])


def test_diff_controlnet_gets_the_model_weights_added(executor, models_root):
    from diffusers import ControlNetModel, UNet2DConditionModel
    from safetensors.torch import save_file
    from tiny_control import SD_CONFIG, to_original_layout

    net = ControlNetModel.from_pretrained(models_root / "controlnet" / "tiny-cn").state_dict()
    unet = UNet2DConditionModel.from_pretrained(models_root / "checkpoints" / "tiny-sd" / "unet")
    base = unet.state_dict()
    shared = [k for k in net if k in base and base[k].shape == net[k].shape]
    assert "conv_in.weight" in shared and "controlnet_mid_block.weight" not in shared
    diff = {k: (v - base[k] if k in shared else v).contiguous() for k, v in net.items()}
    state = to_original_layout(diff, SD_CONFIG)
    state["difference"] = torch.tensor([])
    path = models_root / "controlnet" / "tiny-diff.safetensors"
    save_file(state, str(path))
    try:
        nodes = {
            "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sd"}),
            "cn": (
                "comfy.diff_control_net_loader",
                {"model": link("ckpt", "model"), "control_net_name": "tiny-diff.safetensors"},
            ),
            "plain": ("comfy.control_net_loader", {"control_net_name": "tiny-diff.safetensors"}),
            "show": ("core.show", {"value": link("cn", "control_net")}),
        }
        result = executor.run(make_workflow(nodes), outputs=["cn"])
        assert result.ok, result.error
        loaded = result.outputs["cn"]["control_net"].unpatched.state_dict()
        assert all(torch.allclose(loaded[k], net[k], atol=1e-6) for k in net)
        refused = executor.run(make_workflow(nodes), outputs=["plain"])
        assert not refused.ok and "diff ControlNet" in str(refused.error)
    finally:
        path.unlink()
