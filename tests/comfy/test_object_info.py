"""ComfyUI's /object_info generated from the registry (gf_comfy/object_info.py, §2.8)."""

from __future__ import annotations

import json

import pytest

from gf_comfy.names import BY_NODE_ID, CLASSES, ComfyInput, comfy_node
from gf_comfy.object_info import object_info, object_info_for
from gf_diffusion.types import Latent, Model, Vae
from graphflow import Choice, Float, Int, Outputs, String
from support import registry_with

COMFY_KEYS = [
    "input",
    "input_order",
    "output",
    "output_is_list",
    "output_name",
    "name",
    "display_name",
    "description",
    "python_module",
    "category",
    "output_node",
]
SAMPLERS = ["euler", "heun"]


@pytest.fixture
def sampler_class():
    """A KSampler-shaped test class type: a seed with its hidden control slot, a rounded
    float, a live combo, an optional link, hidden inputs; removed after the test."""

    @comfy_node(
        "TestSampler",
        display_name="Test Sampler",
        category="sampling",
        inputs={
            "seed": ComfyInput(control_after_generate=True, tooltip="The seed."),
            "cfg": ComfyInput(step=0.1, round=0.01),
            "note": ComfyInput(multiline=True, dynamic_prompts=True),
        },
        output_names=("LATENT", "MODEL"),
        hidden=("PROMPT", "UNIQUE_ID"),
        deprecated=True,
    )
    def test_sampler(
        model: Model,
        seed: Int(0, 2**64 - 1) = 0,
        cfg: Float(0.0, 100.0) = 8.0,
        sampler_name: Choice(lambda: list(SAMPLERS)) = "euler",
        note: String(multiline=True) = "",
        latent_image: Latent = None,
        vae: Vae = None,
    ) -> Outputs(latent=Latent, model=Model):
        """Sample (a test class type)."""
        return latent_image, model

    yield test_sampler
    CLASSES.pop("TestSampler", None)
    BY_NODE_ID.pop(test_sampler.id, None)


def test_a_class_type_is_described_in_comfyuis_grammar_and_key_order(sampler_class):
    info = object_info_for(registry_with(sampler_class), "TestSampler")["TestSampler"]
    assert list(info) == [*COMFY_KEYS, "deprecated"]
    assert list(info["input"]) == ["required", "optional", "hidden"]
    assert list(info["input"]["required"]) == ["model", "seed", "cfg", "sampler_name", "note"]
    assert info["input_order"] == {
        "required": ["model", "seed", "cfg", "sampler_name", "note"],
        "optional": ["latent_image", "vae"],
        "hidden": ["prompt", "unique_id"],
    }
    required = info["input"]["required"]
    assert required["model"] == ["MODEL"]
    assert required["seed"] == [
        "INT",
        {
            "default": 0,
            "min": 0,
            "max": 2**64 - 1,
            "control_after_generate": True,
            "tooltip": "The seed.",
        },
    ]
    assert required["cfg"] == [
        "FLOAT",
        {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01},
    ]
    assert required["sampler_name"] == [["euler", "heun"], {"default": "euler"}]
    assert required["note"] == [
        "STRING",
        {"default": "", "multiline": True, "dynamicPrompts": True},
    ]
    assert info["input"]["optional"] == {"latent_image": ["LATENT"], "vae": ["VAE"]}
    assert info["input"]["hidden"] == {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}
    assert info["output"] == ["LATENT", "MODEL"]
    assert info["output_is_list"] == [False, False]
    assert info["output_name"] == ["LATENT", "MODEL"]
    assert (info["name"], info["display_name"], info["category"]) == (
        "TestSampler",
        "Test Sampler",
        "sampling",
    )
    assert info["description"] == "Sample (a test class type)."
    assert (info["python_module"], info["output_node"], info["deprecated"]) == (
        "nodes",
        False,
        True,
    )


def test_combo_choices_are_listed_when_asked(sampler_class):
    registry = registry_with(sampler_class)
    SAMPLERS.append("lms")
    try:
        info = object_info_for(registry, "TestSampler")["TestSampler"]
        assert info["input"]["required"]["sampler_name"][0] == ["euler", "heun", "lms"]
    finally:
        SAMPLERS.remove("lms")


def broken_listing() -> list[str]:
    raise OSError("folder gone")


def test_a_choice_listing_that_fails_is_an_empty_combo_not_an_error():
    @comfy_node("TestBrokenCombo", display_name=None, category="testing", output_names=("INT",))
    def broken_combo(name: Choice(broken_listing)) -> Int:
        """A combo whose listing fails."""
        return 0

    try:
        info = object_info_for(registry_with(broken_combo), "TestBrokenCombo")["TestBrokenCombo"]
        assert info["input"]["required"]["name"] == [[], {}]
        assert info["display_name"] is None  # V3-style class types have no display name
    finally:
        CLASSES.pop("TestBrokenCombo", None)
        BY_NODE_ID.pop(broken_combo.id, None)


def test_a_class_type_whose_node_is_not_registered_is_not_listed(sampler_class, registry):
    assert "TestSampler" not in object_info(registry)
    assert object_info_for(registry, "TestSampler") == {}
    assert object_info_for(registry, "NoSuchClass") == {}


def test_clip_text_encode_is_comfyuis_entry(registry):
    info = object_info_for(registry, "CLIPTextEncode")["CLIPTextEncode"]
    assert list(info) == COMFY_KEYS
    assert info["input"] == {
        "required": {
            "text": [
                "STRING",
                {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."},
            ],
            "clip": ["CLIP", {"tooltip": "The CLIP model used for encoding the text."}],
        }
    }
    assert info["input_order"] == {"required": ["text", "clip"]}
    assert (info["output"], info["output_name"]) == (["CONDITIONING"], ["CONDITIONING"])
    assert (info["display_name"], info["category"]) == ("CLIP Text Encode (Prompt)", "conditioning")


def test_widget_ranges_are_comfyuis(registry):
    area = object_info_for(registry, "ConditioningSetArea")["ConditioningSetArea"]["input"]
    assert area["required"]["width"] == ["INT", {"default": 64, "min": 64, "max": 16384, "step": 8}]
    assert area["required"]["strength"] == [
        "FLOAT",
        {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01},
    ]
    last = object_info_for(registry, "CLIPSetLastLayer")["CLIPSetLastLayer"]["input"]
    assert last["required"]["stop_at_clip_layer"] == [
        "INT",
        {"default": -1, "min": -24, "max": -1, "step": 1},
    ]
    lora = object_info_for(registry, "LoraLoader")["LoraLoader"]
    assert lora["input_order"]["required"] == [
        "model",
        "clip",
        "lora_name",
        "strength_model",
        "strength_clip",
    ]
    assert lora["output"] == ["MODEL", "CLIP"]
    sdxl = object_info_for(registry, "CLIPTextEncodeSDXL")["CLIPTextEncodeSDXL"]
    assert sdxl["python_module"] == "comfy_extras.nodes_clip_sdxl"
    assert sdxl["display_name"] is None


def test_ckpt_name_lists_the_checkpoints_folder_and_graphflow_tiny(registry, tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mine.safetensors").write_bytes(b"")
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    info = object_info_for(registry, "CheckpointLoaderSimple")["CheckpointLoaderSimple"]
    choices, options = info["input"]["required"]["ckpt_name"]
    assert choices == ["mine.safetensors", "graphflow-tiny"]
    assert options == {"tooltip": "The name of the checkpoint (model) to load."}
    assert info["output"] == ["MODEL", "CLIP", "VAE"]


def test_graphflows_own_nodes_are_listed_under_their_ids(registry):
    info = object_info(registry)
    encode = info["diffusion.encode_text"]
    assert list(encode) == COMFY_KEYS
    assert encode["input_order"] == {"required": ["tokens", "text_encoder", "clip_skip"]}
    assert encode["input"]["required"]["text_encoder"] == ["TEXT_ENCODER"]
    assert encode["input"]["required"]["clip_skip"] == ["INT", {"default": 0, "min": 0, "max": 24}]
    assert (encode["output"], encode["output_name"]) == (["CONDITIONING"], ["conditioning"])
    assert encode["python_module"] == "gf_diffusion.text"
    assert encode["name"] == "diffusion.encode_text"
    assert info["core.show"]["input"]["required"]["value"][0] == "*"  # graphflow's ANY
    assert object_info_for(registry, "diffusion.encode_text") == {"diffusion.encode_text": encode}


def test_comfyui_class_types_are_not_listed_twice_under_their_graphflow_ids(registry):
    info = object_info(registry)
    assert "CLIPTextEncode" in info and "comfy.clip_text_encode" not in info
    assert object_info_for(registry, "comfy.clip_text_encode") == {}


def test_the_whole_answer_is_json(registry):
    text = json.dumps(object_info(registry))
    assert json.loads(text)["CheckpointLoaderSimple"]["name"] == "CheckpointLoaderSimple"


def test_output_is_list_marks_the_outputs_a_node_returns_as_lists(registry):
    info = object_info(registry)
    assert info["core.text_list"]["output_is_list"] == [True]
    assert info["core.list_length"]["output_is_list"] == [False]
    assert info["CLIPTextEncode"]["output_is_list"] == [False]
