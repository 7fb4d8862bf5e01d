"""ComfyUI's text and conditioning class types (gf_comfy/nodes_conditioning.py): ComfyUI's
specs (COMFY_COMPAT §5.1, nodes.py, nodes_clip_sdxl.py), CLIPTextEncode = graphflow's
tokenize + encode_text, clip skip per family, and ComfyUI's conditioning arithmetic."""

from __future__ import annotations

import pytest
import torch
from tiny_models import build_tiny_sd, build_tiny_sdxl

from gf_comfy.names import CLASSES
from gf_diffusion.text import PromptError
from gf_diffusion.values import Conditioning, ConditioningEntry
from support import link, make_workflow

WEIGHTED = "a (red:1.4) cat, [blurry] ((dog))"


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy_models")
    build_tiny_sd(root / "checkpoints" / "tiny-sd")
    build_tiny_sdxl(root / "checkpoints" / "tiny-sdxl")
    return root


def _spec(class_type: str) -> list[tuple]:
    spec = CLASSES[class_type].spec
    return [(i.name, i.type, None if i.required else i.default, i.min, i.max) for i in spec.inputs]


# -- specs ------------------------------------------------------------------------------------


def test_clip_text_encode_takes_text_first_then_clip():
    entry = CLASSES["CLIPTextEncode"]
    assert _spec("CLIPTextEncode") == [
        ("text", "STRING", None, None, None),
        ("clip", "CLIP", None, None, None),
    ]
    assert (entry.display_name, entry.category) == ("CLIP Text Encode (Prompt)", "conditioning")
    facts = entry.input("text")
    assert facts.multiline and facts.dynamic_prompts
    assert [(o.name, o.type) for o in entry.spec.outputs] == [("conditioning", "CONDITIONING")]


@pytest.mark.parametrize(
    ("class_type", "display_name", "category", "inputs"),
    [
        (
            "CLIPSetLastLayer",
            "CLIP Set Last Layer",
            "conditioning",
            [("clip", "CLIP", None, None, None), ("stop_at_clip_layer", "INT", -1, -24, -1)],
        ),
        (
            "ConditioningCombine",
            "Conditioning (Combine)",
            "conditioning",
            [
                ("conditioning_1", "CONDITIONING", None, None, None),
                ("conditioning_2", "CONDITIONING", None, None, None),
            ],
        ),
        (
            "ConditioningAverage",
            "ConditioningAverage",
            "conditioning",
            [
                ("conditioning_to", "CONDITIONING", None, None, None),
                ("conditioning_from", "CONDITIONING", None, None, None),
                ("conditioning_to_strength", "FLOAT", 1.0, 0.0, 1.0),
            ],
        ),
        (
            "ConditioningConcat",
            "Conditioning (Concat)",
            "conditioning",
            [
                ("conditioning_to", "CONDITIONING", None, None, None),
                ("conditioning_from", "CONDITIONING", None, None, None),
            ],
        ),
        (
            "ConditioningSetArea",
            "Conditioning (Set Area)",
            "conditioning",
            [
                ("conditioning", "CONDITIONING", None, None, None),
                ("width", "INT", 64, 64, 16384),
                ("height", "INT", 64, 64, 16384),
                ("x", "INT", 0, 0, 16384),
                ("y", "INT", 0, 0, 16384),
                ("strength", "FLOAT", 1.0, 0.0, 10.0),
            ],
        ),
        (
            "ConditioningZeroOut",
            "ConditioningZeroOut",
            "advanced/conditioning",
            [("conditioning", "CONDITIONING", None, None, None)],
        ),
        (
            "CLIPTextEncodeSDXL",
            None,
            "advanced/conditioning",
            [
                ("clip", "CLIP", None, None, None),
                ("width", "INT", 1024, 0, 16384),
                ("height", "INT", 1024, 0, 16384),
                ("crop_w", "INT", 0, 0, 16384),
                ("crop_h", "INT", 0, 0, 16384),
                ("target_width", "INT", 1024, 0, 16384),
                ("target_height", "INT", 1024, 0, 16384),
                ("text_g", "STRING", None, None, None),
                ("text_l", "STRING", None, None, None),
            ],
        ),
        (
            "CLIPTextEncodeSDXLRefiner",
            None,
            "advanced/conditioning",
            [
                ("ascore", "FLOAT", 6.0, 0.0, 1000.0),
                ("width", "INT", 1024, 0, 16384),
                ("height", "INT", 1024, 0, 16384),
                ("text", "STRING", None, None, None),
                ("clip", "CLIP", None, None, None),
            ],
        ),
    ],
)
def test_conditioning_class_types_have_comfyuis_spec(class_type, display_name, category, inputs):
    entry = CLASSES[class_type]
    assert (entry.display_name, entry.category) == (display_name, category)
    assert _spec(class_type) == inputs
    out_type = "CLIP" if class_type == "CLIPSetLastLayer" else "CONDITIONING"
    assert [o.type for o in entry.spec.outputs] == [out_type]
    assert entry.output_names == (out_type,)


def test_widget_steps_are_comfyuis():
    area = CLASSES["ConditioningSetArea"]
    assert [area.input(n).step for n in ("width", "height", "x", "y", "strength")] == [
        8,
        8,
        8,
        8,
        0.01,
    ]
    assert CLASSES["ConditioningAverage"].input("conditioning_to_strength").step == 0.01
    assert CLASSES["CLIPTextEncodeSDXLRefiner"].input("ascore").step == 0.01


# -- encoding = graphflow's tokenize + encode_text ----------------------------------------------


def _comfy_and_graphflow(checkpoint: str, text: str, stop: int | None, clip_skip: int) -> dict:
    """ComfyUI's encoding of ``text`` (through CLIPSetLastLayer(stop) unless None) and
    graphflow's tokenize + encode_text(clip_skip), from one workflow."""
    clip = link("ckpt", "clip")
    nodes = {
        "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": checkpoint}),
        "gf_ckpt": ("diffusion.load_checkpoint", {"checkpoint": checkpoint}),
        "tok": ("diffusion.tokenize", {"text": text, "tokenizer": link("gf_ckpt", "tokenizer")}),
        "gf": (
            "diffusion.encode_text",
            {
                "tokens": link("tok", "tokens"),
                "text_encoder": link("gf_ckpt", "text_encoder"),
                "clip_skip": clip_skip,
            },
        ),
        "show": ("core.show", {"value": link("comfy", "conditioning")}),
    }
    if stop is not None:
        nodes["last"] = ("comfy.clip_set_last_layer", {"clip": clip, "stop_at_clip_layer": stop})
        clip = link("last", "clip")
    nodes["comfy"] = ("comfy.clip_text_encode", {"text": text, "clip": clip})
    return nodes


def _run(executor, nodes: dict, *outputs: str):
    result = executor.run(make_workflow(nodes), outputs=list(outputs))
    assert result.ok, result.error
    return result


def _entry(result, node_id: str) -> ConditioningEntry:
    (entry,) = result.outputs[node_id]["conditioning"].entries
    return entry


@pytest.mark.parametrize("text", ["a red cat", WEIGHTED, "cat " * 90])
def test_clip_text_encode_is_graphflows_tokenize_and_encode(executor, text):
    result = _run(executor, _comfy_and_graphflow("tiny-sd", text, None, 0), "comfy", "gf")
    comfy, graphflow = _entry(result, "comfy"), _entry(result, "gf")
    assert torch.equal(comfy.embeds, graphflow.embeds)
    assert comfy.pooled is None and comfy.area is None and comfy.strength == 1.0


def test_a_weighted_prompt_differs_from_the_plain_one(executor):
    nodes = _comfy_and_graphflow("tiny-sd", WEIGHTED, None, 0)
    nodes["plain"] = (
        "comfy.clip_text_encode",
        {"text": "a red cat, blurry dog", "clip": link("ckpt", "clip")},
    )
    result = _run(executor, nodes, "comfy", "plain")
    assert not torch.equal(_entry(result, "comfy").embeds, _entry(result, "plain").embeds)


@pytest.mark.parametrize(("stop", "clip_skip"), [(-1, 0), (-2, 1), (-3, 2)])
def test_clip_set_last_layer_is_graphflows_clip_skip_on_sd1(executor, stop, clip_skip):
    result = _run(
        executor, _comfy_and_graphflow("tiny-sd", WEIGHTED, stop, clip_skip), "comfy", "gf"
    )
    assert torch.equal(_entry(result, "comfy").embeds, _entry(result, "gf").embeds)


def test_a_layer_past_the_encoders_depth_is_the_last_layer(executor):
    # the tiny encoder has 3 layers; ComfyUI treats -24 there as "last"
    result = _run(executor, _comfy_and_graphflow("tiny-sd", "a red cat", -24, 0), "comfy", "gf")
    assert torch.equal(_entry(result, "comfy").embeds, _entry(result, "gf").embeds)


@pytest.mark.parametrize(("stop", "clip_skip"), [(None, 0), (-2, 0), (-3, 1)])
def test_sdxl_encodes_from_the_penultimate_layer_by_default(executor, stop, clip_skip):
    result = _run(
        executor, _comfy_and_graphflow("tiny-sdxl", "a red cat", stop, clip_skip), "comfy", "gf"
    )
    comfy, graphflow = _entry(result, "comfy"), _entry(result, "gf")
    assert torch.equal(comfy.embeds, graphflow.embeds)
    assert torch.equal(comfy.pooled, graphflow.pooled)


def test_sdxl_stop_at_minus_one_is_both_encoders_last_hidden_states(executor):
    nodes = _comfy_and_graphflow("tiny-sdxl", "a red cat", -1, 0)
    result = _run(executor, nodes, "comfy", "tok", "gf_ckpt")
    tokens = result.outputs["tok"]["tokens"]
    encoders = result.outputs["gf_ckpt"]["text_encoder"].encoders
    parts = []
    with torch.no_grad():
        for handle, tokenized in zip(encoders, tokens.per_tokenizer, strict=True):
            with handle.on_device("cpu") as module:
                out = module(tokenized.input_ids, output_hidden_states=True)
                parts.append(out.hidden_states[-1])
    assert torch.allclose(_entry(result, "comfy").embeds, torch.cat(parts, -1), atol=1e-6)


def test_graphflow_tiny_encodes_and_says_it_has_no_clip_layers(executor):
    nodes = _comfy_and_graphflow("graphflow-tiny", "a red shirt", -2, 0)
    result = _run(executor, nodes, "comfy", "gf")
    assert torch.equal(_entry(result, "comfy").embeds, _entry(result, "gf").embeds)
    assert "not a CLIP model" in result.ui["comfy"]["warnings"][0]


# -- SDXL prompts ---------------------------------------------------------------------------


def _sdxl_nodes(text_g: str, text_l: str, **sizes) -> dict:
    return {
        "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sdxl"}),
        "sdxl": (
            "comfy.clip_text_encode_sdxl",
            {"clip": link("ckpt", "clip"), "text_g": text_g, "text_l": text_l, **sizes},
        ),
        "show": ("core.show", {"value": link("sdxl", "conditioning")}),
    }


def test_clip_text_encode_sdxl_with_one_text_is_clip_text_encode(executor):
    nodes = _sdxl_nodes("a red cat", "a red cat", width=832, height=1216, crop_w=8, crop_h=16)
    nodes["plain"] = ("comfy.clip_text_encode", {"text": "a red cat", "clip": link("ckpt", "clip")})
    result = _run(executor, nodes, "sdxl", "plain")
    sdxl, plain = _entry(result, "sdxl"), _entry(result, "plain")
    assert torch.equal(sdxl.embeds, plain.embeds) and torch.equal(sdxl.pooled, plain.pooled)
    assert sdxl.sdxl_sizes == ((1216, 832), (16, 8), (1024, 1024))
    assert plain.sdxl_sizes is None


def test_sdxl_prompts_of_different_lengths_are_padded_with_empty_chunks(executor):
    long_l = "cat " * 90  # two chunks for CLIP L, one for CLIP G
    nodes = _sdxl_nodes("a red cat", long_l)
    nodes["short"] = (
        "comfy.clip_text_encode_sdxl",
        {"clip": link("ckpt", "clip"), "text_g": "a red cat", "text_l": "x"},
    )
    nodes["empty"] = (
        "comfy.clip_text_encode_sdxl",
        {"clip": link("ckpt", "clip"), "text_g": "", "text_l": ""},
    )
    result = _run(executor, nodes, "sdxl", "short", "empty")
    padded, short, empty = (_entry(result, n).embeds for n in ("sdxl", "short", "empty"))
    width_l = 32  # the tiny CLIP L's hidden size; CLIP G's half follows
    assert padded.shape[1] == 2 * short.shape[1]
    assert torch.equal(padded[:, :77, width_l:], short[:, :, width_l:])
    assert torch.equal(padded[:, 77:, width_l:], empty[:, :, width_l:])
    # the first chunk's pooled embedding (batched with a second chunk: float rounding)
    assert torch.allclose(_entry(result, "sdxl").pooled, _entry(result, "short").pooled, atol=1e-6)


def test_clip_text_encode_sdxl_refuses_a_one_encoder_clip(executor):
    nodes = _sdxl_nodes("a", "b")
    nodes["ckpt"] = ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sd"})
    result = executor.run(make_workflow(nodes), outputs=["sdxl"])
    assert not result.ok and "two encoders" in result.error.message


def test_the_refiner_prompt_carries_its_aesthetic_score_and_size(executor):
    nodes = {
        "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sdxl"}),
        "refiner": (
            "comfy.clip_text_encode_sdxl_refiner",
            {
                "clip": link("ckpt", "clip"),
                "text": "a red cat",
                "ascore": 2.5,
                "width": 768,
                "height": 512,
            },
        ),
        "show": ("core.show", {"value": link("refiner", "conditioning")}),
    }
    entry = _entry(_run(executor, nodes, "refiner"), "refiner")
    assert entry.aesthetic_score == 2.5
    assert entry.sdxl_sizes == ((512, 768), (0, 0), (512, 768))


# -- conditioning arithmetic (ComfyUI's nodes.py semantics) ---------------------------------------


def _cond(*entries: ConditioningEntry) -> Conditioning:
    return Conditioning(list(entries))


def _tensor(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_combine_keeps_every_entry_in_order():
    a, b, c = (ConditioningEntry(_tensor(1, 3, 4, seed=s)) for s in range(3))
    b.strength, c.area = 0.5, (1, 2, 3, 4)
    out = CLASSES["ConditioningCombine"].spec.function(_cond(a, b), _cond(c))
    assert out.entries == [a, b, c]


def test_average_interpolates_tokens_and_pooled_by_the_to_strength():
    average = CLASSES["ConditioningAverage"].spec.function
    to = ConditioningEntry(_tensor(1, 3, 4, seed=1), _tensor(1, 4, seed=2), area=(1, 1, 0, 0))
    frm = ConditioningEntry(_tensor(1, 3, 4, seed=3), _tensor(1, 4, seed=4))
    (out,) = average(_cond(to), _cond(frm), 0.25).entries
    assert torch.allclose(out.embeds, to.embeds * 0.25 + frm.embeds * 0.75)
    assert torch.allclose(out.pooled, to.pooled * 0.25 + frm.pooled * 0.75)
    assert out.area == (1, 1, 0, 0)  # the rest of conditioning_to's entry is kept
    (full,) = average(_cond(to), _cond(frm), 1.0).entries
    assert torch.equal(full.embeds, to.embeds)


def test_average_cuts_or_zero_pads_conditioning_from_to_each_entrys_length():
    average = CLASSES["ConditioningAverage"].spec.function
    to = ConditioningEntry(_tensor(1, 3, 4, seed=1))
    longer = ConditioningEntry(_tensor(1, 5, 4, seed=2))
    shorter = ConditioningEntry(_tensor(1, 2, 4, seed=3))
    (cut,) = average(_cond(to), _cond(longer), 0.5).entries
    assert torch.allclose(cut.embeds, to.embeds * 0.5 + longer.embeds[:, :3] * 0.5)
    (padded,) = average(_cond(to), _cond(shorter), 0.5).entries
    expected = to.embeds * 0.5
    expected[:, :2] += shorter.embeds * 0.5
    assert torch.allclose(padded.embeds, expected)


def test_average_uses_only_the_first_from_entry_and_applies_to_every_to_entry():
    average = CLASSES["ConditioningAverage"].spec.function
    to = [ConditioningEntry(_tensor(1, 3, 4, seed=s)) for s in (1, 2)]
    frm = [ConditioningEntry(_tensor(1, 3, 4, seed=s), _tensor(1, 4, seed=9)) for s in (3, 4)]
    out = average(_cond(*to), _cond(*frm), 0.5).entries
    assert len(out) == 2
    for entry, original in zip(out, to, strict=True):
        assert torch.allclose(entry.embeds, original.embeds * 0.5 + frm[0].embeds * 0.5)
        assert torch.equal(entry.pooled, frm[0].pooled)  # no pooled of its own: from's


def test_concat_appends_the_first_from_entrys_tokens():
    concat = CLASSES["ConditioningConcat"].spec.function
    to = ConditioningEntry(_tensor(1, 3, 4, seed=1), _tensor(1, 4, seed=2), strength=0.5)
    frm = ConditioningEntry(_tensor(1, 2, 4, seed=3), _tensor(1, 4, seed=4))
    (out,) = concat(_cond(to), _cond(frm)).entries
    assert torch.equal(out.embeds, torch.cat([to.embeds, frm.embeds], 1))
    assert out.pooled is to.pooled and out.strength == 0.5


def test_set_area_stores_latent_units_and_strength():
    set_area = CLASSES["ConditioningSetArea"].spec.function
    entries = [ConditioningEntry(_tensor(1, 3, 4, seed=s)) for s in (1, 2)]
    out = set_area(_cond(*entries), width=128, height=72, x=16, y=8, strength=2.5).entries
    assert [(e.area, e.strength) for e in out] == [((9, 16, 1, 2), 2.5)] * 2
    assert all(torch.equal(e.embeds, o.embeds) for e, o in zip(out, entries, strict=True))
    assert entries[0].area is None  # the input is not changed


def test_zero_out_zeros_tokens_and_pooled_and_keeps_the_rest():
    zero_out = CLASSES["ConditioningZeroOut"].spec.function
    with_pooled = ConditioningEntry(
        _tensor(1, 3, 4), _tensor(1, 4), sdxl_sizes=((1, 1), (0, 0), (1, 1))
    )
    without = ConditioningEntry(_tensor(1, 3, 4, seed=1))
    a, b = zero_out(_cond(with_pooled, without)).entries
    assert not a.embeds.any() and not a.pooled.any() and a.embeds.shape == (1, 3, 4)
    assert a.sdxl_sizes == with_pooled.sdxl_sizes
    assert b.pooled is None and not b.embeds.any()


@pytest.mark.parametrize("class_type", ["ConditioningAverage", "ConditioningConcat"])
def test_conditionings_of_different_widths_are_a_one_line_error(class_type):
    function = CLASSES[class_type].spec.function
    to, frm = _cond(ConditioningEntry(_tensor(1, 3, 4))), _cond(ConditioningEntry(_tensor(1, 3, 8)))
    with pytest.raises(PromptError, match="widths 4 and 8"):
        function(to, frm)
    with pytest.raises(PromptError, match="conditioning_from is an empty conditioning"):
        function(to, Conditioning([]))


# -- ComfyUI-named and graphflow nodes in one workflow ----------------------------------------


def _txt2img(comfy: bool) -> dict:
    """graphflow's README job on graphflow-tiny (3 steps); with ``comfy`` the model and the
    prompts come from CheckpointLoaderSimple and CLIPTextEncode instead."""
    ckpt = "comfy_ckpt" if comfy else "ckpt"
    nodes = {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "graphflow-tiny"}),
        "comfy_ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "graphflow-tiny"}),
        "scheduler": (
            "diffusion.scheduler",
            {"scheduler": link("ckpt", "scheduler"), "name": "euler"},
        ),
        "latent": (
            "diffusion.empty_latent",
            {"width": 32, "height": 32, "vae": link("ckpt", "vae")},
        ),
        "sampler": (
            "diffusion.sampler",
            {
                "model": link(ckpt, "model"),
                "positive": link("positive", "conditioning"),
                "negative": link("negative", "conditioning"),
                "latent": link("latent", "latent"),
                "scheduler": link("scheduler", "scheduler"),
                "seed": 3,
                "steps": 3,
                "cfg": 4.0,
            },
        ),
        "show": ("core.show", {"value": link("sampler", "latent")}),
    }
    for name, text in (("positive", "a (red:1.2) sneaker"), ("negative", "")):
        if comfy:
            nodes[name] = (
                "comfy.clip_text_encode",
                {"text": text, "clip": link("comfy_ckpt", "clip")},
            )
        else:
            nodes[f"{name}_tokens"] = (
                "diffusion.tokenize",
                {"text": text, "tokenizer": link("ckpt", "tokenizer")},
            )
            nodes[name] = (
                "diffusion.encode_text",
                {
                    "tokens": link(f"{name}_tokens", "tokens"),
                    "text_encoder": link("ckpt", "text_encoder"),
                },
            )
    return nodes


def test_comfyui_named_nodes_feed_graphflows_sampler_with_the_same_result(executor):
    comfy = _run(executor, _txt2img(comfy=True), "sampler").outputs["sampler"]["latent"]
    graphflow = _run(executor, _txt2img(comfy=False), "sampler").outputs["sampler"]["latent"]
    assert comfy.samples.shape[0] == 1 and comfy.samples.abs().sum() > 0
    assert torch.equal(comfy.samples, graphflow.samples)
