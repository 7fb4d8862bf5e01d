"""How ComfyUI class types become graphflow nodes (gf_comfy/names.py)."""

from __future__ import annotations

import pytest

from gf_comfy.names import BY_NODE_ID, CLASSES, ComfyInput, comfy_node, node_id_for
from graphflow import Int, Outputs


@pytest.mark.parametrize(
    ("class_type", "node_id"),
    [
        ("KSampler", "comfy.k_sampler"),
        ("KSamplerAdvanced", "comfy.k_sampler_advanced"),
        ("CLIPTextEncodeSDXLRefiner", "comfy.clip_text_encode_sdxl_refiner"),
        ("VAEDecodeTiled", "comfy.vae_decode_tiled"),
        ("LoraLoaderModelOnly", "comfy.lora_loader_model_only"),
        ("ImageUpscaleWithModel", "comfy.image_upscale_with_model"),
        ("EmptyLatentImage", "comfy.empty_latent_image"),
    ],
)
def test_class_types_get_lower_snake_node_ids(class_type, node_id):
    assert node_id_for(class_type) == node_id


def test_comfy_node_records_what_graphflow_has_no_room_for():
    @comfy_node(
        "TestSeedThing",
        display_name="Seed Thing",
        category="testing",
        inputs={"seed": ComfyInput(control_after_generate=True)},
        output_names=("NUMBER",),
    )
    def seed_thing(seed: Int(min=0) = 0) -> Outputs(number=Int):
        """Return the seed."""
        return (seed,)

    try:
        entry = CLASSES["TestSeedThing"]
        assert entry.spec is seed_thing and seed_thing.id == "comfy.test_seed_thing"
        assert BY_NODE_ID["comfy.test_seed_thing"] is entry
        assert entry.input("seed").control_after_generate
        assert not entry.input("other").control_after_generate
        assert seed_thing.category == "comfy/testing"
    finally:
        CLASSES.pop("TestSeedThing", None)
        BY_NODE_ID.pop("comfy.test_seed_thing", None)


def test_facts_for_an_input_the_function_lacks_are_refused():
    with pytest.raises(TypeError, match="unknown inputs"):

        @comfy_node("TestBad", display_name=None, category="t", inputs={"nope": ComfyInput()})
        def bad(x: Int = 0) -> Outputs(y=Int):
            """Nothing."""
            return (x,)
