"""ComfyUI's loader class types (gf_comfy/nodes_loaders.py): ComfyUI's specs (COMFY_COMPAT
§5.1), and the same resident models and patches as graphflow's own loader nodes."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import build_tiny_sd, build_tiny_sdxl

from gf_comfy.names import CLASSES
from gf_comfy.types import ClipValue
from graphflow.errors import ValidationFailed
from support import link, make_workflow

UNET_LAYER = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # (64, 32)
TEXT_LAYER = "text_model_encoder_layers_0_self_attn_q_proj"  # (32, 32)


def _lora_file() -> dict:
    """A kohya-ss LoRA with one UNet and one text-encoder layer for the tiny SD model."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, (out, inner) in {
        "lora_unet_" + UNET_LAYER.replace(".", "_"): (64, 32),
        "lora_te_" + TEXT_LAYER: (32, 32),
    }.items():
        state[f"{name}.lora_down.weight"] = torch.randn(4, inner, generator=generator)
        state[f"{name}.lora_up.weight"] = torch.randn(out, 4, generator=generator)
        state[f"{name}.alpha"] = torch.tensor(4.0)
    return state


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    """checkpoints/tiny-sd, checkpoints/tiny-sdxl and loras/style.safetensors (+ a pickle)."""
    root = tmp_path_factory.mktemp("comfy_models")
    build_tiny_sd(root / "checkpoints" / "tiny-sd")
    build_tiny_sdxl(root / "checkpoints" / "tiny-sdxl")
    (root / "loras").mkdir()
    save_file(_lora_file(), str(root / "loras" / "style.safetensors"))
    torch.save(_lora_file(), root / "loras" / "old.pt")
    (root / "vae").mkdir()
    shutil.copytree(root / "checkpoints" / "tiny-sd" / "vae", root / "vae" / "tiny-vae")
    return root


def _inputs(class_type: str) -> list[tuple]:
    spec = CLASSES[class_type].spec
    return [(i.name, i.type, None if i.required else i.default, i.min, i.max) for i in spec.inputs]


def _outputs(class_type: str) -> list[tuple[str, str]]:
    return [(o.name, o.type) for o in CLASSES[class_type].spec.outputs]


def test_checkpoint_loader_simple_has_comfyuis_spec():
    entry = CLASSES["CheckpointLoaderSimple"]
    assert (entry.display_name, entry.category) == ("Load Checkpoint", "loaders")
    assert _inputs("CheckpointLoaderSimple") == [("ckpt_name", "STRING", None, None, None)]
    assert _outputs("CheckpointLoaderSimple") == [
        ("model", "MODEL"),
        ("clip", "CLIP"),
        ("vae", "VAE"),
    ]
    assert entry.output_names == ("MODEL", "CLIP", "VAE")
    assert entry.spec.id == "comfy.checkpoint_loader_simple"


def test_lora_loaders_have_comfyuis_spec():
    assert _inputs("LoraLoader") == [
        ("model", "MODEL", None, None, None),
        ("clip", "CLIP", None, None, None),
        ("lora_name", "STRING", None, None, None),
        ("strength_model", "FLOAT", 1.0, -100.0, 100.0),
        ("strength_clip", "FLOAT", 1.0, -100.0, 100.0),
    ]
    assert _outputs("LoraLoader") == [("model", "MODEL"), ("clip", "CLIP")]
    assert _inputs("LoraLoaderModelOnly") == [
        ("model", "MODEL", None, None, None),
        ("lora_name", "STRING", None, None, None),
        ("strength_model", "FLOAT", 1.0, -100.0, 100.0),
    ]
    assert _outputs("LoraLoaderModelOnly") == [("model", "MODEL")]
    for class_type in ("LoraLoader", "LoraLoaderModelOnly"):
        assert CLASSES[class_type].category == "loaders"
        assert CLASSES[class_type].spec.inputs_by_name["strength_model"].step == 0.01


def test_ckpt_name_lists_the_models_folder_and_the_embedded_model(executor):
    choices = CLASSES["CheckpointLoaderSimple"].spec.inputs_by_name["ckpt_name"].allowed_choices()
    assert {"tiny-sd", "tiny-sdxl", "graphflow-tiny"} <= set(choices)
    lora_choices = CLASSES["LoraLoader"].spec.inputs_by_name["lora_name"].allowed_choices()
    assert "style.safetensors" in lora_choices


def _both_loaders(executor, checkpoint: str) -> tuple[dict, dict]:
    workflow = make_workflow(
        {
            "comfy": ("comfy.checkpoint_loader_simple", {"ckpt_name": checkpoint}),
            "gf": ("diffusion.load_checkpoint", {"checkpoint": checkpoint}),
            "show": ("core.show", {"value": link("comfy", "model")}),
        }
    )
    result = executor.run(workflow, outputs=["comfy", "gf"])
    assert result.ok, result.error
    return result.outputs["comfy"], result.outputs["gf"]


def test_checkpoint_loader_simple_gives_graphflows_resident_models(executor):
    comfy, gf = _both_loaders(executor, "tiny-sd")
    assert comfy["model"].identity == gf["model"].identity
    assert comfy["model"].unpatched is gf["model"].unpatched
    assert comfy["vae"].unpatched is gf["vae"].unpatched
    clip = comfy["clip"]
    assert isinstance(clip, ClipValue) and clip.clip_skip == 1  # SD 1.x: the last layer
    assert [h.unpatched for h in clip.text_encoder.encoders] == [
        h.unpatched for h in gf["text_encoder"].encoders
    ]
    assert clip.tokenizer.tokenizers == gf["tokenizer"].tokenizers
    assert comfy["model"].extras["scheduler"] is not None


def test_an_sdxl_clip_starts_at_the_penultimate_layer_as_in_comfyui(executor):
    comfy, _ = _both_loaders(executor, "tiny-sdxl")
    clip = comfy["clip"]
    assert len(clip.text_encoder.encoders) == 2 and len(clip.tokenizer.tokenizers) == 2
    assert clip.clip_skip == 2


def _lora_workflow(strength_model: float, strength_clip: float) -> object:
    return make_workflow(
        {
            "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sd"}),
            "lora": (
                "comfy.lora_loader",
                {
                    "model": link("ckpt", "model"),
                    "clip": link("ckpt", "clip"),
                    "lora_name": "style.safetensors",
                    "strength_model": strength_model,
                    "strength_clip": strength_clip,
                },
            ),
            "only": (
                "comfy.lora_loader_model_only",
                {
                    "model": link("ckpt", "model"),
                    "lora_name": "style.safetensors",
                    "strength_model": strength_model,
                },
            ),
            "gf": (
                "diffusion.load_lora",
                {
                    "model": link("ckpt", "model"),
                    "text_encoder": link("gf_ckpt", "text_encoder"),
                    "lora": "style.safetensors",
                    "strength_model": strength_model,
                    "strength_text": strength_clip,
                },
            ),
            "gf_ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
            "show": ("core.show", {"value": link("lora", "model")}),
        }
    )


def _run_lora(executor, strength_model: float, strength_clip: float) -> dict:
    result = executor.run(
        _lora_workflow(strength_model, strength_clip), outputs=["ckpt", "lora", "only", "gf"]
    )
    assert result.ok, result.error
    return result.outputs


def _text_identities(clip: ClipValue) -> list[str]:
    return [h.identity for h in clip.text_encoder.encoders]


def test_lora_strength_zero_is_the_base_model(executor):
    out = _run_lora(executor, 0.0, 0.0)
    base = out["ckpt"]
    assert out["lora"]["model"] is base["model"] and out["lora"]["clip"] is base["clip"]
    assert out["only"]["model"] is base["model"]
    assert out["lora"]["model"].patches == ()


def test_lora_loader_patches_as_graphflows_lora_node(executor):
    out = _run_lora(executor, 0.7, 0.4)
    base, lora = out["ckpt"], out["lora"]
    assert lora["model"].identity != base["model"].identity
    assert lora["model"].identity == out["gf"]["model"].identity
    assert _text_identities(lora["clip"]) == [
        h.identity for h in out["gf"]["text_encoder"].encoders
    ]
    assert _text_identities(lora["clip"]) != _text_identities(base["clip"])
    assert lora["clip"].tokenizer is base["clip"].tokenizer
    assert [strength for _, strength in lora["model"].patches] == [0.7]
    assert out["only"]["model"].identity == lora["model"].identity


def test_lora_strength_clip_zero_leaves_the_text_encoder(executor):
    out = _run_lora(executor, 1.0, 0.0)
    assert _text_identities(out["lora"]["clip"]) == _text_identities(out["ckpt"]["clip"])
    assert out["lora"]["model"].identity != out["ckpt"]["model"].identity


def test_a_pickle_lora_is_refused_at_validation_on_lora_name(executor):
    workflow = make_workflow(
        {
            "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sd"}),
            "lora": (
                "comfy.lora_loader_model_only",
                {"model": link("ckpt", "model"), "lora_name": "old.pt"},
            ),
            "show": ("core.show", {"value": link("lora", "model")}),
        }
    )
    with pytest.raises(ValidationFailed, match=r"old\.pt is a pickle file") as caught:
        executor.run(workflow, outputs=["show"])
    assert any(e.input == "lora_name" for e in caught.value.errors)


def test_an_unknown_checkpoint_is_a_validation_error(executor):
    workflow = make_workflow(
        {
            "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "nope.safetensors"}),
            "show": ("core.show", {"value": link("ckpt", "model")}),
        }
    )
    with pytest.raises(ValidationFailed, match=r"nope\.safetensors"):
        executor.run(workflow, outputs=["show"])


def test_vae_loader_has_comfyuis_spec():
    entry = CLASSES["VAELoader"]
    assert (entry.display_name, entry.category) == ("Load VAE", "loaders")
    assert _inputs("VAELoader") == [("vae_name", "STRING", None, None, None)]
    assert _outputs("VAELoader") == [("vae", "VAE")]


def test_vae_loader_loads_a_vae_of_models_vae(executor):
    choices = CLASSES["VAELoader"].spec.inputs_by_name["vae_name"].allowed_choices()
    assert "tiny-vae" in choices
    workflow = make_workflow(
        {
            "vae": ("comfy.vae_loader", {"vae_name": "tiny-vae"}),
            "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sd"}),
            "show": ("core.show", {"value": link("vae", "vae")}),
        }
    )
    result = executor.run(workflow, outputs=["vae", "ckpt"])
    assert result.ok, result.error
    loaded = result.outputs["vae"]["vae"].unpatched.state_dict()
    checkpoint = result.outputs["ckpt"]["vae"].unpatched.state_dict()
    assert loaded.keys() == checkpoint.keys()
    assert all(torch.equal(loaded[k], checkpoint[k]) for k in loaded)


def test_an_unknown_vae_is_a_validation_error(executor):
    workflow = make_workflow(
        {
            "vae": ("comfy.vae_loader", {"vae_name": "nope.safetensors"}),
            "show": ("core.show", {"value": link("vae", "vae")}),
        }
    )
    with pytest.raises(ValidationFailed, match=r"nope\.safetensors"):
        executor.run(workflow, outputs=["show"])
