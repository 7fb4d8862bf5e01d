"""LoRA files as model patches: key mapping, formats, equality with hand-merged weights,
strength 0, the untouched base, and what is reported for files that do not fit."""

from __future__ import annotations

import copy
import hashlib
import os

import pytest
import torch
from ldm_export import unet_to_ldm
from safetensors.torch import save_file

from gf_diffusion.lora import (
    PARSED,
    HadamardDelta,
    KroneckerDelta,
    LoraFileError,
    apply_lora,
    build_patches,
    parse_lora,
)
from gf_diffusion.lora_keys import unet_table
from gf_diffusion.types import Model, TextEncoder
from gf_diffusion.values import TextEncoders
from graphflow import Executor, Float, Outputs, node
from graphflow.errors import ValidationFailed
from graphflow.runtime.handles import ModelHandle
from support import link, make_workflow, registry_with

LINEAR = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # (64, 32)
OUT = "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"  # (64, 64)
CONV = "down_blocks.0.resnets.0.conv1"  # (32, 32, 3, 3)
TEXT = "encoder.layers.0.self_attn.q_proj"  # (32, 32), without transformers' text_model.


def _factors(seed: int, out: int, inner: int, rank: int = 4, kernel: int = 1):
    generator = torch.Generator().manual_seed(seed)
    down = torch.randn(rank, inner, kernel, kernel, generator=generator) * 0.3
    up = torch.randn(out, rank, 1, 1, generator=generator) * 0.3
    return (up, down) if kernel > 1 else (up[:, :, 0, 0], down[:, :, 0, 0])


LAYERS = {  # module path → (up, down, alpha)
    LINEAR: (*_factors(1, 64, 32), 2.0),
    OUT: (*_factors(2, 64, 64), 4.0),
    CONV: (*_factors(3, 32, 32, kernel=3), 1.0),
    TEXT: (*_factors(4, 32, 32), 3.0),
}


def kohya_file(layers=LAYERS) -> dict:
    """The layers as a kohya-ss / A1111 file (lora_unet_ / lora_te_ names, alpha)."""
    state = {}
    for path, (up, down, alpha) in layers.items():
        prefix = "lora_te_text_model_" if path.startswith("encoder.") else "lora_unet_"
        name = prefix + path.replace(".", "_")
        state[f"{name}.lora_down.weight"] = down
        state[f"{name}.lora_up.weight"] = up
        state[f"{name}.alpha"] = torch.tensor(alpha)
    return state


def peft_file(layers=LAYERS) -> dict:
    """The same layers as a diffusers/PEFT file (alpha folded into lora_B)."""
    state = {}
    for path, (up, down, alpha) in layers.items():
        name = ("text_encoder.text_model." if path.startswith("encoder.") else "unet.") + path
        state[f"{name}.lora_A.weight"] = down
        state[f"{name}.lora_B.weight"] = up * (alpha / down.shape[0])
    return state


def merged_by_hand(module, layers, strength: float, text: bool):
    """A copy of ``module`` with each layer's ``up @ down · alpha/rank · strength`` added."""
    merged = copy.deepcopy(module)
    weights = dict(merged.named_parameters())
    with torch.no_grad():
        for path, (up, down, alpha) in layers.items():
            if path.startswith("encoder.") != text:
                continue
            weight = weights[path + ".weight"]
            delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
            weight += delta * (alpha / down.shape[0]) * strength
    return merged


@node("test.lora_merge_by_hand", category="test")
def lora_merge_by_hand(
    model: Model, text_encoder: TextEncoder, strength: Float(-4.0, 4.0) = 1.0
) -> Outputs(model=Model, text_encoder=TextEncoder):
    """Separate copies of the UNet and text encoder with LAYERS merged in by hand."""
    unet = merged_by_hand(model.unpatched, LAYERS, strength, text=False)
    encoder = merged_by_hand(text_encoder.encoders[0].unpatched, LAYERS, strength, text=True)
    return ModelHandle.of(unet, "merged unet"), TextEncoders([ModelHandle.of(encoder, "te")])


@pytest.fixture
def lora_root(models_root, tmp_path, monkeypatch):
    """A models folder with the tiny checkpoints (linked) and a loras/ folder of test files."""
    (tmp_path / "checkpoints").symlink_to(models_root / "checkpoints")
    loras = tmp_path / "loras"
    loras.mkdir()
    save_file(kohya_file(), str(loras / "kohya.safetensors"))
    save_file(peft_file(), str(loras / "peft.safetensors"))
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return tmp_path


@pytest.fixture
def registry(lora_root):
    return registry_with(lora_merge_by_hand)


def txt2img(*patches: tuple[str, dict]) -> object:
    """tiny-sd text-to-image; the UNet and text encoder go through the ``patches`` nodes, in
    order (ids patch, patch2, ...)."""
    ids = ["ckpt"] + [f"patch{i + 1 if i else ''}" for i in range(len(patches))]
    source = ids[-1]
    encoder = link(source, "text_encoder")
    tokenizer = link("ckpt", "tokenizer")
    nodes = {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
        "tokens": ("diffusion.tokenize", {"text": "a cat", "tokenizer": tokenizer}),
        "pos": (
            "diffusion.encode_text",
            {"tokens": link("tokens", "tokens"), "text_encoder": encoder},
        ),
        "empty": (
            "diffusion.empty_latent",
            {"width": 32, "height": 32, "vae": link("ckpt", "vae")},
        ),
        "sample": (
            "diffusion.sampler",
            {
                "model": link(source, "model"),
                "positive": link("pos", "conditioning"),
                "negative": link("pos", "conditioning"),
                "latent": link("empty", "latent"),
                "scheduler": link("ckpt", "scheduler"),
                "seed": 3,
                "steps": 3,
                "cfg": 1.0,
            },
        ),
        "decode": (
            "diffusion.vae_decode",
            {"vae": link("ckpt", "vae"), "latent": link("sample", "latent")},
        ),
        "show": ("core.show", {"value": link("decode", "image")}),
    }
    for before, here, (kind, inputs) in zip(ids, ids[1:], patches, strict=False):
        model_in = {"model": link(before, "model"), "text_encoder": link(before, "text_encoder")}
        nodes[here] = (kind, {**model_in, **inputs})
    return make_workflow(nodes)


def image(executor, workflow) -> torch.Tensor:
    result = executor.run(workflow, outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"]


def base_handles(executor):
    outputs = executor.run(txt2img(), outputs=["ckpt"]).outputs["ckpt"]
    return outputs["model"], outputs["text_encoder"]


def test_kohya_names_map_to_our_unet_and_text_encoder_parameter_names(registry):
    model, text = base_handles(Executor(registry))
    result = build_patches(
        parse_lora(kohya_file()), {"unet": model.unpatched, 0: text.encoders[0].unpatched}, "x"
    )
    assert sorted(result.patches["unet"].changes) == sorted(
        f"{p}.weight" for p in (LINEAR, OUT, CONV)
    )
    assert list(result.patches[0].changes) == [f"{TEXT}.weight"]
    assert result.unmatched == [] and result.unsupported == []


def test_ldm_spelled_unet_layers_map_to_the_same_weights_as_the_ldm_export(models_root):
    from diffusers import UNet2DConditionModel

    for name in ("tiny-sd", "tiny-sdxl"):
        unet = UNet2DConditionModel.from_pretrained(models_root / "checkpoints" / name / "unet")
        state = {k: v for k, v in unet.state_dict().items() if k.endswith(".weight")}
        state = {k: v for k, v in state.items() if not k.startswith("add_embedding")}
        table = unet_table(unet)
        for ours, ldm in zip(state, unet_to_ldm(state, unet.config), strict=True):
            module = ldm.removeprefix("model.diffusion_model.").removesuffix(".weight")
            assert table[module.replace(".", "_")] + ".weight" == ours, (name, ldm)


def test_kohya_and_peft_files_of_one_delta_give_the_same_changes(registry):
    model, text = base_handles(Executor(registry))
    modules = {"unet": model.unpatched, 0: text.encoders[0].unpatched}
    kohya = build_patches(parse_lora(kohya_file()), modules, "a").patches
    peft = build_patches(parse_lora(peft_file()), modules, "b").patches
    assert kohya.keys() == peft.keys()
    for component, patch in kohya.items():
        assert patch.changes.keys() == peft[component].changes.keys()
        for key, change in patch.changes.items():
            weight = modules[component].get_parameter(key).detach().float()
            a = change.applied(weight.clone(), 1.0)
            b = peft[component].changes[key].applied(weight.clone(), 1.0)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("lora", ["kohya.safetensors", "peft.safetensors"])
def test_a_lora_run_equals_a_model_with_the_delta_merged_by_hand(registry, lora):
    executor = Executor(registry)
    settings = {"lora": lora, "strength_model": 0.7, "strength_text": 0.7}
    patched = image(executor, txt2img(("diffusion.load_lora", settings)))
    merged = image(executor, txt2img(("test.lora_merge_by_hand", {"strength": 0.7})))
    plain = image(executor, txt2img())
    assert (patched - plain).abs().max() > 1e-3
    torch.testing.assert_close(patched, merged, rtol=0, atol=1e-5)


def test_strength_zero_gives_the_base_image_bit_for_bit(registry):
    executor = Executor(registry)
    plain = image(executor, txt2img())
    settings = {"lora": "kohya.safetensors", "strength_model": 0.0, "strength_text": 0.0}
    assert torch.equal(image(executor, txt2img(("diffusion.load_lora", settings))), plain)


def _checksum(*modules) -> str:
    digest = hashlib.blake2b()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def test_the_resident_base_is_bit_identical_after_a_lora_run(registry):
    executor = Executor(registry)
    model, text = base_handles(executor)
    before = _checksum(model.unpatched, text.encoders[0].unpatched)
    image(executor, txt2img(("diffusion.load_lora", {"lora": "kohya.safetensors"})))
    assert _checksum(model.unpatched, text.encoders[0].unpatched) == before
    assert executor.models.loads == 1


def test_two_loras_stack_in_order_as_the_sum_of_their_deltas(registry):
    model, text = base_handles(Executor(registry))
    once, text_once, _ = apply_lora("kohya.safetensors", model, text, 0.5, 0.5, False)
    twice, _, _ = apply_lora("peft.safetensors", once, text_once, 0.25, 0.25, False)
    assert len(twice.patches) == 2
    merged = merged_by_hand(model.unpatched, LAYERS, 0.75, text=False)
    with twice.on_device("cpu") as unet:
        for path in (LINEAR, OUT, CONV):
            torch.testing.assert_close(
                unet.get_parameter(path + ".weight"),
                merged.get_parameter(path + ".weight"),
                rtol=0,
                atol=1e-6,
            )


def test_a_file_is_read_once_per_version(registry, lora_root):
    model, text = base_handles(Executor(registry))
    apply_lora("kohya.safetensors", model, text, 1.0, 1.0, False)
    reads = PARSED.reads
    apply_lora("kohya.safetensors", model, text, 0.5, 1.0, False)
    assert PARSED.reads == reads
    path = lora_root / "loras" / "kohya.safetensors"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    apply_lora("kohya.safetensors", model, text, 0.5, 1.0, False)
    assert PARSED.reads == reads + 1


def test_layers_matching_no_weight_are_reported_in_the_ui(registry, lora_root):
    state = kohya_file()
    state["lora_unet_down_blocks_7_nothing.lora_down.weight"] = torch.zeros(4, 8)
    state["lora_unet_down_blocks_7_nothing.lora_up.weight"] = torch.zeros(8, 4)
    state["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch.zeros(4, 8)
    state["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = torch.zeros(8, 4)
    save_file(state, str(lora_root / "loras" / "extra.safetensors"))
    model, text = base_handles(Executor(registry))
    _, _, ui = apply_lora("extra.safetensors", model, text, 1.0, 1.0, False)
    assert ui["patched"] == {"model": 3, "text_encoder_1": 1}
    (warning,) = ui["warnings"]
    assert "2 layer(s) match no weight" in warning
    assert "lora_unet_down_blocks_7_nothing" in warning and "lora_te2_" in warning


def test_a_layer_of_the_wrong_size_is_reported_not_applied(registry, lora_root):
    layers = {**LAYERS, LINEAR: (*_factors(5, 64, 48), 1.0)}  # in 48, the weight has 32
    save_file(kohya_file(layers), str(lora_root / "loras" / "wrong.safetensors"))
    model, text = base_handles(Executor(registry))
    patched, _, ui = apply_lora("wrong.safetensors", model, text, 1.0, 1.0, False)
    assert f"{LINEAR}.weight" not in patched.patches[0][0].changes
    assert "does not fit" in ui["warnings"][0]


def test_a_checkpoint_in_the_loras_folder_is_a_clear_error(registry, lora_root, models_root):
    (lora_root / "loras" / "ckpt.safetensors").symlink_to(
        models_root / "checkpoints" / "tiny-sd.safetensors"
    )
    model, text = base_handles(Executor(registry))
    with pytest.raises(LoraFileError, match=r"not a LoRA.*Stable Diffusion checkpoint"):
        apply_lora("ckpt.safetensors", model, text, 1.0, 1.0, False)


def test_a_pickle_lora_is_refused_at_validation_without_opt_in(registry, lora_root):
    torch.save(kohya_file(), lora_root / "loras" / "old.pt")
    workflow = txt2img(("diffusion.load_lora", {"lora": "old.pt"}))
    with pytest.raises(ValidationFailed, match=r"old\.pt is a pickle file"):
        Executor(registry).run(workflow, outputs=["decode"])
    allowed = txt2img(("diffusion.load_lora", {"lora": "old.pt", "allow_pickle": True}))
    assert Executor(registry).run(allowed, outputs=["decode"]).ok


def test_model_only_patches_the_unet_and_ignores_text_layers(registry):
    executor = Executor(registry)
    model, _ = base_handles(executor)
    spec = registry.get("diffusion.load_lora_model_only")
    result = spec.function(model=model, lora="kohya.safetensors", strength_model=1.0)
    assert sorted(result.outputs.patches[0][0].changes) == sorted(
        f"{p}.weight" for p in (LINEAR, OUT, CONV)
    )
    assert "warnings" not in result.ui


def test_loha_is_the_hadamard_product_of_two_low_rank_products():
    g = torch.Generator().manual_seed(0)
    w1a, w1b, w2a, w2b = (torch.randn(*s, generator=g) for s in ((6, 2), (2, 5), (6, 2), (2, 5)))
    change = HadamardDelta(w1a, w1b, w2a, w2b, alpha=1.0)
    expected = (w1a @ w1b) * (w2a @ w2b) * (1.0 / 2)
    torch.testing.assert_close(change.applied(torch.zeros(6, 5), 1.0), expected)


def test_loha_with_tucker_factors_rebuilds_a_convolution():
    g = torch.Generator().manual_seed(1)
    t1, t2 = torch.randn(2, 2, 3, 3, generator=g), torch.randn(2, 2, 3, 3, generator=g)
    w1a, w1b, w2a, w2b = (torch.randn(2, n, generator=g) for n in (6, 5, 6, 5))
    change = HadamardDelta(w1a, w1b, w2a, w2b, t1, t2, alpha=4.0)

    def half(t, a, b):  # out o, in i: Σ_jk t[j,k,y,x] · a[j,o] · b[k,i]
        return torch.einsum("jkyx,jo,ki->oiyx", t, a, b)

    expected = half(t1, w1a, w1b) * half(t2, w2a, w2b) * 2.0
    torch.testing.assert_close(change.applied(torch.zeros(6, 5, 3, 3), 1.0), expected)


def test_lokr_is_the_kronecker_product_scaled_by_alpha_over_rank():
    g = torch.Generator().manual_seed(2)
    w1 = torch.randn(2, 3, generator=g)
    w2a, w2b = torch.randn(4, 2, generator=g), torch.randn(2, 5, generator=g)
    change = KroneckerDelta(w1=w1, w2_a=w2a, w2_b=w2b, alpha=1.0)
    expected = torch.kron(w1, w2a @ w2b) * 0.5
    torch.testing.assert_close(change.applied(torch.zeros(8, 15), 1.0), expected)


def test_lokr_of_a_convolution_keeps_the_kernel_axes():
    g = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(2, 3, generator=g), torch.randn(4, 5, 3, 3, generator=g)
    change = KroneckerDelta(w1=w1, w2=w2, alpha=7.0)  # full halves: alpha is not used
    expected = torch.kron(w1[:, :, None, None], w2)
    torch.testing.assert_close(change.applied(torch.zeros(8, 15, 3, 3), 1.0), expected)


def test_loha_lokr_and_diff_layers_of_a_file_become_their_changes(registry):
    model, _ = base_handles(Executor(registry))
    g = torch.Generator().manual_seed(4)
    state = {
        "lora_unet_down_blocks_1_attentions_0_proj_in.hada_w1_a": torch.randn(64, 2, generator=g),
        "lora_unet_down_blocks_1_attentions_0_proj_in.hada_w1_b": torch.randn(2, 64, generator=g),
        "lora_unet_down_blocks_1_attentions_0_proj_in.hada_w2_a": torch.randn(64, 2, generator=g),
        "lora_unet_down_blocks_1_attentions_0_proj_in.hada_w2_b": torch.randn(2, 64, generator=g),
        f"lora_unet_{LINEAR.replace('.', '_')}.lokr_w1": torch.randn(8, 4, generator=g),
        f"lora_unet_{LINEAR.replace('.', '_')}.lokr_w2": torch.randn(8, 8, generator=g),
        "lora_unet_conv_in.diff": torch.randn(32, 4, 3, 3, generator=g),
        "lora_unet_conv_in.diff_b": torch.randn(32, generator=g),
    }
    patch = build_patches(parse_lora(state), {"unet": model.unpatched}, "x").patches["unet"]
    assert sorted(patch.changes) == sorted(
        [
            "down_blocks.1.attentions.0.proj_in.weight",
            f"{LINEAR}.weight",
            "conv_in.weight",
            "conv_in.bias",
        ]
    )
    base = model.unpatched.conv_in.bias.detach().clone()
    with model.with_patches(patch, 1.0).on_device("cpu") as unet:
        diff = unet.conv_in.bias - base
    torch.testing.assert_close(diff, state["lora_unet_conv_in.diff_b"], rtol=0, atol=1e-6)


def test_an_sdxl_kohya_file_patches_both_text_encoders_and_sgm_named_unet_layers(models_root):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = models_root / "checkpoints" / "tiny-sdxl"
    modules = {
        "unet": UNet2DConditionModel.from_pretrained(folder / "unet"),
        0: CLIPTextModel.from_pretrained(folder / "text_encoder"),
        1: CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2"),
    }
    layers = {
        "lora_unet_input_blocks_3_1_transformer_blocks_1_attn1_to_q": (64, 64),
        "lora_unet_output_blocks_0_0_in_layers_2": (64, 128 * 9),
        "lora_unet_label_emb_0_0": (128, 80),
        "lora_te1_text_model_encoder_layers_1_mlp_fc1": (37, 32),
        "lora_te2_text_model_encoder_layers_2_self_attn_out_proj": (32, 32),
    }
    state = {}
    for name, (out, inner) in layers.items():
        state[f"{name}.lora_down.weight"] = torch.zeros(2, inner)
        state[f"{name}.lora_up.weight"] = torch.zeros(out, 2)
    result = build_patches(parse_lora(state), modules, "sdxl")
    assert result.unmatched == [] and result.unsupported == []
    assert sorted(result.patches["unet"].changes) == [
        "add_embedding.linear_1.weight",
        "down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q.weight",
        "up_blocks.0.resnets.0.conv1.weight",
    ]
    assert list(result.patches[0].changes) == ["encoder.layers.1.mlp.fc1.weight"]
    assert list(result.patches[1].changes) == [
        "text_model.encoder.layers.2.self_attn.out_proj.weight"
    ]


def test_a_peft_file_takes_lora_alpha_from_its_adapter_metadata(registry, lora_root):
    import json

    state = peft_file({p: (up, down, float(down.shape[0])) for p, (up, down, _) in LAYERS.items()})
    config = {
        "unet.r": 4,
        "unet.lora_alpha": 1.0,
        "unet.alpha_pattern": {LINEAR: 2.0, OUT: 4.0},  # CONV keeps lora_alpha 1.0
        "text_encoder.r": 4,
        "text_encoder.lora_alpha": 3.0,
    }
    metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(config)}
    save_file(state, str(lora_root / "loras" / "meta.safetensors"), metadata=metadata)
    model, text = base_handles(Executor(registry))
    expected, expected_text, _ = apply_lora("kohya.safetensors", model, text, 1.0, 1.0, False)
    got, got_text, _ = apply_lora("meta.safetensors", model, text, 1.0, 1.0, False)
    for ours, theirs, paths in (
        (got, expected, (LINEAR, OUT, CONV)),
        (got_text.encoders[0], expected_text.encoders[0], (TEXT,)),
    ):
        with ours.on_device("cpu") as module:
            weights = {p: module.get_parameter(p + ".weight").clone() for p in paths}
        with theirs.on_device("cpu") as module:
            for path in paths:
                reference = module.get_parameter(path + ".weight")
                torch.testing.assert_close(weights[path], reference, rtol=0, atol=1e-6)


def test_peft_alpha_pattern_keys_match_module_name_endings_as_peft_does():
    import json

    from gf_diffusion.lora import ParsedLora, add_peft_alphas

    parsed = ParsedLora({f"unet.{p}": {"down": torch.zeros(4, 8)} for p in (LINEAR, OUT, CONV)})
    config = {
        "unet.lora_alpha": 1.0,
        "unet.alpha_pattern": {"to_k": 2.0, "attn1.to_out.0": 4.0, "conv": 9.0},
    }
    add_peft_alphas(parsed, {"lora_adapter_metadata": json.dumps(config)})
    alphas = {layer.removeprefix("unet."): roles["alpha"] for layer, roles in parsed.layers.items()}
    assert alphas == {LINEAR: 2.0, OUT: 4.0, CONV: 1.0}  # "conv" is not the end of "conv1"


def test_keys_of_an_unknown_kind_are_reported_not_dropped(registry, lora_root):
    state = {**kohya_file(), "lora_unet_conv_in.oft_blocks": torch.zeros(4, 4)}
    save_file(state, str(lora_root / "loras" / "odd.safetensors"))
    model, text = base_handles(Executor(registry))
    _, _, ui = apply_lora("odd.safetensors", model, text, 1.0, 1.0, False)
    (warning,) = ui["warnings"]
    assert "1 layer(s) not applied" in warning and "lora_unet_conv_in.oft_blocks" in warning


def test_an_incomplete_layer_is_reported_not_applied(registry, lora_root):
    state = {**kohya_file(), "lora_unet_conv_in.hada_w1_a": torch.zeros(32, 2)}
    save_file(state, str(lora_root / "loras" / "half.safetensors"))
    model, text = base_handles(Executor(registry))
    patched, _, ui = apply_lora("half.safetensors", model, text, 1.0, 1.0, False)
    assert "conv_in.weight" not in patched.patches[0][0].changes
    assert "lora_unet_conv_in: incomplete layer (has only hada_w1_a)" in ui["warnings"][0]


SDXL_NAMES = {  # kohya / LyCORIS SDXL layer names (sgm UNet) → our parameter paths
    "input_blocks_4_1_transformer_blocks_0_attn1_to_q": (
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    ),
    "input_blocks_7_1_transformer_blocks_9_ff_net_2": (
        "down_blocks.2.attentions.0.transformer_blocks.9.ff.net.2"
    ),
    "middle_block_1_transformer_blocks_0_attn2_to_k": (
        "mid_block.attentions.0.transformer_blocks.0.attn2.to_k"
    ),
    "output_blocks_5_1_proj_out": "up_blocks.1.attentions.2.proj_out",
    "input_blocks_1_0_in_layers_2": "down_blocks.0.resnets.0.conv1",
    "input_blocks_3_0_op": "down_blocks.0.downsamplers.0.conv",
    "output_blocks_2_2_conv": "up_blocks.0.upsamplers.0.conv",
    "output_blocks_8_0_skip_connection": "up_blocks.2.resnets.2.conv_shortcut",
    "middle_block_2_emb_layers_1": "mid_block.resnets.1.time_emb_proj",
    "label_emb_0_0": "add_embedding.linear_1",
    "input_blocks_0_0": "conv_in",
    "out_2": "conv_out",
}
SD15_NAMES = {  # kohya SD 1.x names (diffusers paths), and the LDM spelling of some
    "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": (
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    ),
    "up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0": (
        "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0"
    ),
    "down_blocks_1_resnets_0_conv_shortcut": "down_blocks.1.resnets.0.conv_shortcut",
    "output_blocks_2_1_conv": "up_blocks.0.upsamplers.0.conv",  # no attention in up block 0
    "input_blocks_11_0_out_layers_3": "down_blocks.3.resnets.1.conv2",
}


def test_layer_names_of_full_size_sd15_and_sdxl_unets_map_to_their_parameters():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # the real layouts, without their weights
        sd15 = UNet2DConditionModel(cross_attention_dim=768)
        sdxl = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
            use_linear_projection=True,
        )
    for unet, names in ((sd15, SD15_NAMES), (sdxl, SDXL_NAMES)):
        table = unet_table(unet)
        assert {name: table.get(name) for name in names} == names


def test_two_lora_nodes_chained_in_a_workflow_equal_their_merged_sum(registry):
    executor = Executor(registry)
    first = {"lora": "kohya.safetensors", "strength_model": 0.4, "strength_text": 0.4}
    second = {"lora": "peft.safetensors", "strength_model": 0.3, "strength_text": 0.3}
    workflow = txt2img(("diffusion.load_lora", first), ("diffusion.load_lora", second))
    stacked = image(executor, workflow)
    merged = image(executor, txt2img(("test.lora_merge_by_hand", {"strength": 0.7})))
    torch.testing.assert_close(stacked, merged, rtol=0, atol=1e-5)


def test_an_fp16_model_is_patched_in_float32_and_stored_in_fp16(registry):
    model, _ = base_handles(Executor(registry))
    half = ModelHandle.of(copy.deepcopy(model.unpatched).half(), "fp16 unet")
    patched, _, _ = apply_lora("kohya.safetensors", half, None, 0.7, 0.0, False)
    expected = merged_by_hand(model.unpatched, LAYERS, 0.7, text=False)
    with patched.on_device("cpu") as unet:
        for path in (LINEAR, OUT, CONV):
            weight = unet.get_parameter(path + ".weight")
            assert weight.dtype == torch.float16
            reference = expected.get_parameter(path + ".weight")
            torch.testing.assert_close(weight.float(), reference, rtol=1e-3, atol=1e-3)


def test_loha_and_lokr_know_their_number_of_elements_before_they_are_built():
    g = torch.Generator().manual_seed(5)
    t, a, b = torch.randn(2, 2, 3, 3, generator=g), torch.randn(2, 6), torch.randn(2, 5)
    w1a, w1b, w2a = torch.randn(2, 2), torch.randn(2, 3), torch.randn(4, 2)
    changes = [
        HadamardDelta(a, b, a, b, t, t),  # Tucker convolution
        KroneckerDelta(w1=torch.randn(2, 3), w2=torch.randn(4, 5, 3, 3)),
        KroneckerDelta(w1_a=w1a, w1_b=w1b, w2_a=w2a, w2_b=torch.randn(2, 45)),
        KroneckerDelta(w1=torch.randn(2, 3), w2_a=torch.randn(2, 4), w2_b=b, t2=t),
    ]
    for change in changes:
        assert change.numel() == change.delta((-1,), "cpu").numel(), change


def test_a_lokr_layer_of_the_wrong_size_is_reported_not_applied(registry):
    model, _ = base_handles(Executor(registry))
    name = f"lora_unet_{LINEAR.replace('.', '_')}"  # the weight is (64, 32)
    state = {f"{name}.lokr_w1": torch.ones(8, 4), f"{name}.lokr_w2": torch.ones(8, 16)}
    result = build_patches(parse_lora(state), {"unet": model.unpatched}, "x")
    assert result.patches == {}
    assert result.unsupported == [f"{name}: does not fit {LINEAR}.weight ([64, 32])"]


def test_a_layer_whose_factors_differ_in_rank_is_reported_not_an_error(registry):
    model, _ = base_handles(Executor(registry))
    name = f"lora_unet_{LINEAR.replace('.', '_')}"
    state = {
        f"{name}.lora_up.weight": torch.ones(64, 4),
        f"{name}.lora_down.weight": torch.ones(3, 32),
    }
    result = build_patches(parse_lora(state), {"unet": model.unpatched}, "x")
    assert result.patches == {}
    ((reason),) = result.unsupported
    assert reason.startswith(f"{name}: a low-rank change needs up (out, rank) and down")


@pytest.mark.parametrize("file", ["broken.safetensors", "broken.pt"])
def test_an_unreadable_lora_file_is_a_lora_file_error(registry, lora_root, file):
    (lora_root / "loras" / file).write_bytes(b"not a weights file at all")
    model, text = base_handles(Executor(registry))
    with pytest.raises(LoraFileError, match=rf"{file} is not a readable weights file \("):
        apply_lora(file, model, text, 1.0, 1.0, True)


def test_a_parsed_pickle_lora_is_still_refused_without_opt_in(registry, lora_root):
    torch.save(kohya_file(), lora_root / "loras" / "cached.pt")
    model, text = base_handles(Executor(registry))
    apply_lora("cached.pt", model, text, 1.0, 1.0, True)  # parsed and cached
    with pytest.raises(LoraFileError, match=r"cached\.pt is a pickle file"):
        apply_lora("cached.pt", model, text, 1.0, 1.0, False)
