"""Separate loaders: a VAE, a text encoder or a UNet alone, each from its own models folder.

Tiny random components of the SD 1.x and SDXL families (test_single_file's tiny configs,
pointed at by the shipped-config root) are saved as single files in the original (LDM) and
the diffusers/transformers layouts, loaded through the nodes in a workflow and compared with
the originals; full-size detection of a UNet alone runs on meta tensors (no weights).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from ldm_export import (
    clip_to_ldm,
    encoder_layout,
    export_state,
    meta_state,
    openclip_to_ldm,
    unet_to_ldm,
    vae_to_ldm,
)
from test_single_file import _tiny_family

from gf_diffusion import configs, detect
from gf_diffusion.component_files import unet_family, unet_shape
from graphflow import ErrorCode, Executor, load_plugins, validate
from support import link, make_workflow

SDXL_G = "conditioner.embedders.1.model."


def _save(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def _tiny_t5(folder: Path) -> None:
    """A tiny transformers T5 encoder folder with a word-level fast tokenizer of its own."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "a", "red", "cat", "dog"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=8,
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(3)
    config = T5Config(vocab_size=len(words), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4)
    T5EncoderModel(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def components_root(tmp_path_factory):
    """models/{checkpoints,vae,text_encoders,clip,diffusion_models,unet} of tiny components,
    the tiny config root, and the original modules by family."""
    root = tmp_path_factory.mktemp("components")
    models = root / "models"
    originals = {}
    for family in ("sd1", "sdxl"):
        modules = _tiny_family(family, root / "configs" / family)
        encoders = {p: (modules[s], lay) for p, (s, lay) in encoder_layout(family).items()}
        _save(
            export_state(modules["unet"], modules["vae"], encoders),
            models / "checkpoints" / f"tiny-{family}.safetensors",
        )
        originals[family] = modules
    sd2 = _tiny_family("sd2-512", root / "configs" / "sd2-512")
    te_h = sd2["text_encoder"].state_dict()
    _save(openclip_to_ldm(te_h, "cond_stage_model.model."), models / "clip" / "h-ldm.safetensors")
    _save(openclip_to_ldm(te_h, ""), models / "text_encoders" / "h-openclip.safetensors")
    originals["sd2-512"] = sd2
    _tiny_t5(models / "text_encoders" / "t5-tiny")
    # SDXL's latent scaling, as the shipped SDXL VAE config has it (the tiny one copies SD's)
    vae_config = root / "configs" / "sdxl" / "vae" / "config.json"
    vae_config.write_text(vae_config.read_text().replace("0.18215", "0.13025"))
    sd1, sdxl = originals["sd1"], originals["sdxl"]
    vae_ldm = vae_to_ldm(sd1["vae"].state_dict(), sd1["vae"].config)
    _save(
        {k.removeprefix("first_stage_model."): v for k, v in vae_ldm.items()},
        models / "vae" / "ldm.safetensors",
    )
    torch.manual_seed(7)
    other = type(sd1["vae"]).from_config(sd1["vae"].config)
    _save(other.state_dict(), models / "vae" / "other-diffusers.safetensors")
    other.save_pretrained(models / "vae" / "other-folder")
    originals["other_vae"] = other
    _save(
        {"lora_unet_x.lora_down.weight": torch.zeros(4, 8)},
        models / "vae" / "style-lora.safetensors",
    )
    te = sd1["text_encoder"].state_dict()
    _save(te, models / "text_encoders" / "clip-l-hf.safetensors")
    _save(clip_to_ldm(te), models / "clip" / "clip-l-ldm.safetensors")
    te_g = sdxl["text_encoder_2"].state_dict()
    _save(openclip_to_ldm(te_g, SDXL_G), models / "text_encoders" / "clip-g-ldm.safetensors")
    _save(openclip_to_ldm(te_g, ""), models / "text_encoders" / "clip-g-openclip.safetensors")
    _save(te_g, models / "text_encoders" / "clip-g-hf.safetensors")
    _save(sdxl["text_encoder"].state_dict(), models / "text_encoders" / "sdxl-clip-l.safetensors")
    unet_ldm = unet_to_ldm(sd1["unet"].state_dict(), sd1["unet"].config)
    _save(unet_ldm, models / "diffusion_models" / "sd1-ldm.safetensors")
    bare = {k.removeprefix(detect.UNET): v for k, v in unet_ldm.items()}
    _save(bare, models / "unet" / "sd1-bare.safetensors")
    _save(sdxl["unet"].state_dict(), models / "diffusion_models" / "sdxl-diffusers.safetensors")
    sd1["unet"].save_pretrained(models / "diffusion_models" / "sd1-folder")
    _save({detect.CONV_IN: torch.zeros(32, 4, 3, 3)}, models / "vae" / "not-a-vae.safetensors")
    flux_vae = {
        "decoder.conv_in.weight": torch.zeros(8, 16, 3, 3),
        "encoder.conv_in.weight": torch.zeros(1),
    }
    _save(flux_vae, models / "vae" / "flux-vae.safetensors")
    return root, originals


@pytest.fixture
def components(components_root, monkeypatch):
    """The family declarations without full-size sizes, the shipped configs the tiny ones."""
    root, _ = components_root
    kinds = tuple(dataclasses.replace(k, sizes=None) for k in detect.KINDS)
    monkeypatch.setattr(detect, "KINDS", kinds)
    monkeypatch.setattr(configs, "CONFIGS_ROOT", root / "configs")
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(root / "models"))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return components_root


def _run(nodes: dict, outputs: list[str]):
    executor = Executor(load_plugins().registry)
    result = executor.run(
        make_workflow({**nodes, "show": ("core.show", {"value": 0})}), outputs=outputs
    )
    assert result.ok, result.error
    return result.outputs, executor


def _same_tensors(module, original) -> None:
    loaded = module.state_dict()
    for key, value in original.state_dict().items():
        if not key.endswith("position_ids"):
            assert torch.equal(loaded[key].float(), value.float()), key


def _module(handle):
    with handle.on_device("cpu") as module:
        return module


@pytest.mark.parametrize("name", ["ldm.safetensors", "other-diffusers.safetensors", "other-folder"])
def test_vae_file_loads_the_same_tensors(components, name):
    _, originals = components
    outputs, _ = _run({"vae": ("diffusion.load_vae", {"vae_name": name})}, ["vae"])
    original = originals["sd1"]["vae"] if name.startswith("ldm") else originals["other_vae"]
    _same_tensors(_module(outputs["vae"]["vae"]), original)


def test_vae_inside_a_checkpoint_loads_with_sdxl_scaling(components, monkeypatch):
    root, originals = components
    target = root / "models" / "vae" / "tiny-sdxl.safetensors"
    target.write_bytes((root / "models" / "checkpoints" / "tiny-sdxl.safetensors").read_bytes())
    try:
        outputs, _ = _run({"vae": ("diffusion.load_vae", {"vae_name": target.name})}, ["vae"])
        module = _module(outputs["vae"]["vae"])
        _same_tensors(module, originals["sdxl"]["vae"])
        assert module.config.scaling_factor == pytest.approx(0.13025)
    finally:
        target.unlink()


def test_vae_override_decodes_differently_from_the_checkpoints(components):
    latent = {"width": 32, "height": 32, "vae": link("ckpt", "vae")}
    nodes = {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd1.safetensors"}),
        "other": ("diffusion.load_vae", {"vae_name": "other-folder"}),
        "same": ("diffusion.load_vae", {"vae_name": "ldm.safetensors"}),
        "empty": ("diffusion.empty_latent", latent),
        "a": (
            "diffusion.vae_decode",
            {"vae": link("ckpt", "vae"), "latent": link("empty", "latent")},
        ),
        "b": (
            "diffusion.vae_decode",
            {"vae": link("other", "vae"), "latent": link("empty", "latent")},
        ),
        "c": (
            "diffusion.vae_decode",
            {"vae": link("same", "vae"), "latent": link("empty", "latent")},
        ),
    }
    outputs, _ = _run(nodes, ["a", "b", "c"])
    a, b, c = (outputs[k]["image"] for k in "abc")
    assert torch.equal(a, c) and not torch.allclose(a, b)


def test_vae_loaded_twice_reuses_the_resident_model(components):
    nodes = {
        "vae": ("diffusion.load_vae", {"vae_name": "ldm.safetensors"}),
        "show": ("core.show", {"value": 0}),
    }
    executor = Executor(load_plugins().registry)
    first = executor.run(make_workflow(nodes), outputs=["vae"]).outputs["vae"]["vae"]
    executor.cache.clear()
    second = executor.run(make_workflow(nodes), outputs=["vae"]).outputs["vae"]["vae"]
    assert first is second and executor.models.loads == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("style-lora.safetensors", "models/loras/"),
        ("not-a-vae.safetensors", "models/diffusion_models/"),
        ("flux-vae.safetensors", "16 latent channels"),
    ],
)
def test_wrong_file_in_vae_folder_names_its_folder(components, name, message):
    workflow = make_workflow(
        {"vae": ("diffusion.load_vae", {"vae_name": name}), "show": ("core.show", {"value": 0})}
    )
    _, errors = validate(workflow, load_plugins().registry)
    assert [(e.code, e.input) for e in errors] == [(ErrorCode.INVALID_INPUT, "vae_name")]
    assert message in errors[0].message and "\n" not in errors[0].message


def test_lists_show_each_folder(components):
    from gf_diffusion.component_loaders import list_diffusion_models, list_vae_files
    from gf_diffusion.text_encoder_loaders import list_text_encoders

    assert "other-folder" in list_vae_files() and "ldm.safetensors" in list_vae_files()
    assert {"clip-l-hf.safetensors", "clip-l-ldm.safetensors"} <= set(list_text_encoders())
    assert {"sd1-bare.safetensors", "sd1-folder", "sd1-ldm.safetensors"} <= set(
        list_diffusion_models()
    )


# --- text encoders -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family", "sub", "expected"),
    [
        ("clip-l-hf.safetensors", "sd1", "text_encoder", "clip_l"),
        ("clip-l-ldm.safetensors", "sd1", "text_encoder", "clip_l"),
        ("clip-g-ldm.safetensors", "sdxl", "text_encoder_2", "clip_g"),
        ("clip-g-openclip.safetensors", "sdxl", "text_encoder_2", "clip_g"),
        ("clip-g-hf.safetensors", "sdxl", "text_encoder_2", "clip_g"),
    ],
)
def test_text_encoder_file_is_detected_and_loads_the_same_tensors(
    components, name, family, sub, expected
):
    from gf_diffusion import text_encoder_loaders as tel

    root, originals = components
    path = (
        root / "models" / ("clip" if "ldm" in name and "clip-l" in name else "text_encoders") / name
    )
    assert tel.chosen_type(path, "auto", False) == expected
    outputs, _ = _run({"te": ("diffusion.load_text_encoder", {"encoder_name": name})}, ["te"])
    (handle,) = outputs["te"]["text_encoder"].encoders
    _same_tensors(_module(handle), originals[family][sub])
    (tokenizer,) = outputs["te"]["tokenizer"].tokenizers
    assert tokenizer("a photo of a cat").input_ids[:3] == [49406, 320, 1125]


@pytest.mark.parametrize("name", ["h-ldm.safetensors", "h-openclip.safetensors"])
def test_openclip_h_file_is_detected_and_loads_the_same_tensors(components, name):
    _, originals = components
    outputs, _ = _run({"te": ("diffusion.load_text_encoder", {"encoder_name": name})}, ["te"])
    (handle,) = outputs["te"]["text_encoder"].encoders
    _same_tensors(_module(handle), originals["sd2-512"]["text_encoder"])
    (tokenizer,) = outputs["te"]["tokenizer"].tokenizers
    assert tokenizer("a", padding="max_length", max_length=4).input_ids == [49406, 320, 49407, 0]


def test_t5_folder_loads_and_encodes(components):
    from transformers import T5EncoderModel

    root, _ = components
    folder = root / "models" / "text_encoders" / "t5-tiny"
    nodes = {"te": ("diffusion.load_text_encoder", {"encoder_name": "t5-tiny"}), **_encode("te")}
    nodes["tok"][1]["text"] = "a red cat"
    outputs, _ = _run(nodes, ["enc", "tok"])
    ids = outputs["tok"]["tokens"].per_tokenizer[0].input_ids
    assert ids[0, :3].tolist() == [3, 4, 5]
    with torch.no_grad():
        expected = T5EncoderModel.from_pretrained(folder)(ids)[0]
    got = outputs["enc"]["conditioning"].entries[0].embeds
    assert torch.allclose(got, expected.reshape(1, -1, 16), atol=1e-6)


@pytest.mark.parametrize(
    ("family", "sub", "expected"),
    [
        ("sd1", "text_encoder", "clip_l"),
        ("sdxl", "text_encoder_2", "clip_g"),
        ("sd2-512", "text_encoder", "openclip_h"),
    ],
)
def test_full_size_text_encoder_type_is_told_by_its_width(family, sub, expected):
    from transformers import CLIPTextConfig, CLIPTextModel

    from gf_diffusion.configs import config_folder
    from gf_diffusion.text_encoder_loaders import encoder_type

    with torch.device("meta"):
        model = CLIPTextModel(CLIPTextConfig.from_pretrained(config_folder(family) / sub))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert encoder_type(Path("x.safetensors"), detect.Header(shapes, {}, {})) == expected


def _encode(source: str, text_encoder: str = "text_encoder", tokenizer: str = "tokenizer") -> dict:
    return {
        "tok": (
            "diffusion.tokenize",
            {"text": "a (red:1.2) cat", "tokenizer": link(source, tokenizer)},
        ),
        "enc": (
            "diffusion.encode_text",
            {"tokens": link("tok", "tokens"), "text_encoder": link(source, text_encoder)},
        ),
    }


def _conditioning(nodes: dict):
    outputs, _ = _run(nodes, ["enc"])
    return outputs["enc"]["conditioning"].entries[0]


def test_text_encoder_alone_encodes_what_the_checkpoints_does(components):
    checkpoint = {"ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd1.safetensors"})}
    alone = {"te": ("diffusion.load_text_encoder", {"encoder_name": "clip-l-ldm.safetensors"})}
    expected = _conditioning({**checkpoint, **_encode("ckpt")})
    got = _conditioning({**alone, **_encode("te")})
    assert torch.equal(got.embeds, expected.embeds)


def test_dual_text_encoder_encodes_what_the_sdxl_checkpoints_do(components):
    checkpoint = {"ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sdxl.safetensors"})}
    names = {"clip_l_name": "sdxl-clip-l.safetensors", "clip_g_name": "clip-g-ldm.safetensors"}
    dual = {"te": ("diffusion.load_dual_text_encoder", names)}
    expected = _conditioning({**checkpoint, **_encode("ckpt")})
    got = _conditioning({**dual, **_encode("te")})
    assert torch.equal(got.embeds, expected.embeds) and torch.equal(got.pooled, expected.pooled)


def test_dual_text_encoder_refuses_swapped_encoders(components):
    names = {"clip_l_name": "clip-g-hf.safetensors", "clip_g_name": "clip-l-hf.safetensors"}
    workflow = make_workflow({"te": ("diffusion.load_dual_text_encoder", names)})
    _, errors = validate(workflow, load_plugins().registry)
    assert errors and errors[0].input == "clip_l_name" and "not CLIP ViT-L" in errors[0].message


def test_a_unet_in_text_encoders_names_its_folder(components):
    root, _ = components
    target = root / "models" / "text_encoders" / "unet.safetensors"
    target.write_bytes((root / "models" / "diffusion_models" / "sd1-ldm.safetensors").read_bytes())
    try:
        workflow = make_workflow(
            {"te": ("diffusion.load_text_encoder", {"encoder_name": target.name})}
        )
        _, errors = validate(workflow, load_plugins().registry)
        assert errors and "models/diffusion_models/" in errors[0].message
    finally:
        target.unlink()


def test_pickled_text_encoder_needs_the_opt_in(components):
    from safetensors.torch import load_file

    root, originals = components
    folder = root / "models" / "text_encoders"
    path = folder / "clip-l.pt"
    torch.save(load_file(str(folder / "clip-l-hf.safetensors")), path)
    try:
        node = {"encoder_name": path.name}
        _, errors = validate(
            make_workflow({"te": ("diffusion.load_text_encoder", node)}), load_plugins().registry
        )
        assert errors and "pickle" in errors[0].message
        outputs, _ = _run(
            {"te": ("diffusion.load_text_encoder", {**node, "allow_pickle": True})}, ["te"]
        )
        (handle,) = outputs["te"]["text_encoder"].encoders
        _same_tensors(_module(handle), originals["sd1"]["text_encoder"])
    finally:
        path.unlink()


# --- the UNet alone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family", "expected"),
    [
        ("sd1-ldm.safetensors", "sd1", "sd1"),
        ("sd1-bare.safetensors", "sd1", "sd1"),
        ("sd1-folder", "sd1", "sd1"),
        ("sdxl-diffusers.safetensors", "sdxl", "sdxl"),
    ],
)
def test_unet_file_is_detected_and_loads_the_same_tensors(components, name, family, expected):
    from gf_diffusion.component_loaders import DIFFUSION_MODELS, diffusion_model_family

    _, originals = components
    assert diffusion_model_family(DIFFUSION_MODELS.path(name)).name == expected
    outputs, _ = _run({"unet": ("diffusion.load_diffusion_model", {"unet_name": name})}, ["unet"])
    model = outputs["unet"]["model"]
    _same_tensors(_module(model), originals[family]["unet"])
    scheduler = model.extras["scheduler"]
    assert scheduler.config.beta_schedule == "scaled_linear"


def test_unet_alone_samples_like_the_checkpoints(components):
    nodes = {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd1.safetensors"}),
        "unet": ("diffusion.load_diffusion_model", {"unet_name": "sd1-bare.safetensors"}),
        **_encode("ckpt"),
        "empty": (
            "diffusion.empty_latent",
            {"width": 32, "height": 32, "vae": link("ckpt", "vae")},
        ),
    }
    for name, model in (("s1", link("ckpt", "model")), ("s2", link("unet", "model"))):
        nodes[name] = (
            "diffusion.sampler",
            {
                "model": model,
                "positive": link("enc", "conditioning"),
                "negative": link("enc", "conditioning"),
                "latent": link("empty", "latent"),
                "scheduler": link("ckpt", "scheduler"),
                "seed": 3,
                "steps": 2,
                "cfg": 1.0,
            },
        )
    outputs, _ = _run(nodes, ["s1", "s2"])
    a, b = outputs["s1"]["latent"].samples, outputs["s2"]["latent"].samples
    assert torch.isfinite(b).all() and torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kind", detect.SUPPORTED, ids=lambda k: k.name)
def test_full_size_unet_alone_is_detected_as_its_family(kind):
    state = {k: v for k, v in meta_state(kind.config).items() if k.startswith(detect.UNET)}
    metadata = {"modelspec.prediction_type": "epsilon"} if kind.name == "sd2-512" else {}
    for layout in (state, {k.removeprefix(detect.UNET): v for k, v in state.items()}):
        header = detect.Header({k: tuple(v.shape) for k, v in layout.items()}, {}, metadata)
        assert unet_family(unet_shape(header), metadata, "x").name == kind.name


def test_full_size_unet_of_other_sizes_needs_a_config():
    state = {k: v for k, v in meta_state("sd1").items() if k.startswith(detect.UNET)}
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    shapes[detect.CONV_IN] = (64, 4, 3, 3)
    with pytest.raises(detect.ConfigNeededError, match="sizes differ"):
        unet_family(unet_shape(detect.Header(shapes, {}, {})), {}, "x")


def test_dropdown_labels_say_what_each_file_is(components):
    from gf_diffusion.component_loaders import diffusion_model_label, vae_label
    from gf_diffusion.text_encoder_loaders import text_encoder_label

    assert vae_label("ldm.safetensors") == "VAE, SD 1.x/2.x scaling"
    assert vae_label("style-lora.safetensors") == "belongs in models/loras/, not models/vae/"
    assert text_encoder_label("clip-g-openclip.safetensors") == "OpenCLIP ViT-bigG"
    assert text_encoder_label("h-ldm.safetensors") == "OpenCLIP ViT-H"
    assert text_encoder_label("t5-tiny") == "T5 encoder folder"
    assert diffusion_model_label("sd1-bare.safetensors") == "SD 1.x UNet"
    assert diffusion_model_label("sdxl-diffusers.safetensors") == "SDXL base UNet"


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_dtype_choice_casts_the_loaded_unet_and_vae(components, dtype):
    _, originals = components
    wanted = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    nodes = {
        "unet": (
            "diffusion.load_diffusion_model",
            {"unet_name": "sd1-ldm.safetensors", "dtype": dtype},
        ),
        "vae": ("diffusion.load_vae", {"vae_name": "ldm.safetensors", "dtype": dtype}),
    }
    outputs, _ = _run(nodes, ["unet", "vae"])
    unet, vae = _module(outputs["unet"]["model"]), _module(outputs["vae"]["vae"])
    assert unet.dtype == wanted and vae.dtype == wanted
    expected = originals["sd1"]["unet"].conv_in.weight.to(wanted)
    assert torch.equal(unet.conv_in.weight, expected)


def test_component_folder_with_only_pickled_weights_needs_the_opt_in(components):
    root, _ = components
    folder = root / "models" / "vae" / "pickled-folder"
    _, originals = components
    originals["other_vae"].save_pretrained(folder, safe_serialization=False)
    try:
        assert not list(folder.glob("*.safetensors"))
        node = {"vae_name": "pickled-folder", "dtype": "fp32"}
        workflow = make_workflow(
            {"vae": ("diffusion.load_vae", node), "show": ("core.show", {"value": 0})}
        )
        _, errors = validate(workflow, load_plugins().registry)
        assert (
            errors and "pickled-folder/diffusion_pytorch_model.bin is a pickle" in errors[0].message
        )
        outputs, _ = _run({"vae": ("diffusion.load_vae", {**node, "allow_pickle": True})}, ["vae"])
        _same_tensors(_module(outputs["vae"]["vae"]), originals["other_vae"])
    finally:
        import shutil

        shutil.rmtree(folder)
