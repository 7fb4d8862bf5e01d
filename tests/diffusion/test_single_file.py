"""Single-file checkpoints with no config folder: detection, shipped configs, loading.

The shipped configs are checked at full size on the meta device (no weights, no disk): each
family's modules are built from its config, exported to the original LDM layout and must be
detected as that family (and as diffusers' own detection names it). Loading runs on a tiny
LDM file whose family declaration is pointed at a tiny config folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ldm_export import build_checkpoint, encoder_layout, export_state, meta_state
from tiny_models import loader_workflow

from gf_diffusion import configs, detect
from gf_diffusion.configs import clip_tokenizer, config_folder
from gf_diffusion.detect import (
    SUPPORTED,
    ConfigNeededError,
    Header,
    NotAModelError,
    UnsupportedModelError,
    WrongFolderError,
    checkpoint_family,
)
from graphflow import ErrorCode, Executor, load_plugins, validate
from support import link, make_workflow

DIFFUSERS_TYPES = {
    "sd1": "v1",
    "sd1-inpainting": "inpainting",
    "sd1-instruct-pix2pix": "instruct-pix2pix",
    "sd2-768-v": "v2",
    "sd2-512": "v2",
    "sd2-inpainting": "inpainting_v2",
    "sdxl": "xl_base",
    "sdxl-inpainting": "xl_inpaint",
    "sdxl-refiner": "xl_refiner",
}


def header_of(state: dict, **metadata) -> Header:
    return Header({k: tuple(v.shape) for k, v in state.items()}, {}, metadata)


def test_clip_l_tokenizer_gives_the_published_ids():
    tokenizer = clip_tokenizer(config_folder("sd1") / "tokenizer")
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tokenizer) == 49408 and tokenizer.pad_token_id == 49407


def test_openclip_tokenizer_shares_the_vocabulary_and_pads_with_zero():
    tokenizer = clip_tokenizer(config_folder("sdxl") / "tokenizer_2")
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=9).input_ids
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407, 0, 0]


@pytest.mark.parametrize("kind", SUPPORTED, ids=lambda k: k.name)
def test_shipped_config_builds_a_model_detected_as_its_family(kind):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    state = meta_state(kind.config)
    metadata = {"modelspec.prediction_type": "epsilon"} if kind.name == "sd2-512" else {}
    assert checkpoint_family(Path("x.safetensors"), header_of(state, **metadata)) == kind
    assert infer_diffusers_model_type(state) == DIFFUSERS_TYPES[kind.name]


def test_sd2_without_metadata_is_the_768_v_model():
    assert checkpoint_family(Path("x.safetensors"), header_of(meta_state("sd2-512"))).name == (
        "sd2-768-v"
    )


def _kinds():
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}
    return {
        "sd3": ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (1, 1)}, None),
        "playground": ({"edm_mean": (1, 4, 1, 1), detect.CONV_IN: (320, 4, 3, 3)}, None),
        "flux": ({"double_blocks.0.img_attn.norm.key_norm.scale": (128,)}, "diffusion_models"),
        "svd": (
            {
                detect.CONV_IN: (320, 8, 3, 3),
                "model.diffusion_model.input_blocks.1.0.time_stack.in_layers.0.weight": (320,),
            },
            None,
        ),
        "lora": (lora, "loras"),
        "embedding": ({"emb_params": (2, 768)}, "embeddings"),
        "vae": ({"decoder.conv_in.weight": (512, 4, 3, 3), "encoder.conv_in.weight": (1,)}, "vae"),
        "text-encoder": (
            {"text_model.encoder.layers.0.mlp.fc1.weight": (3072, 768)},
            "text_encoders",
        ),
        "t5": ({"encoder.block.0.layer.0.SelfAttention.q.weight": (1, 1)}, "text_encoders"),
        "controlnet": ({"control_model.time_embed.0.weight": (1280, 320)}, "controlnet"),
        "unet": ({detect.CONV_IN: (320, 4, 3, 3)}, "diffusion_models"),
        "upscaler": ({"conv_first.weight": (64, 3, 3, 3)}, "upscale_models"),
    }


@pytest.mark.parametrize("name", list(_kinds()))
def test_unsupported_file_says_what_it_is_and_where_it_belongs(name):
    shapes, folder = _kinds()[name]
    with pytest.raises((UnsupportedModelError, WrongFolderError)) as caught:
        checkpoint_family(Path("file.safetensors"), Header(shapes, {}, {}))
    message = str(caught.value)
    assert "\n" not in message
    if folder is None:
        assert isinstance(caught.value, UnsupportedModelError) and "does not run" in message
    else:
        assert isinstance(caught.value, WrongFolderError) and f"models/{folder}/" in message


def test_a_file_that_is_not_safetensors_is_not_a_model(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_bytes(b"hello, this is text")
    with pytest.raises(NotAModelError):
        checkpoint_family(path)


def test_a_file_of_another_format_is_not_a_model_and_is_never_unpickled(tmp_path):
    path = tmp_path / "weights.zip"  # a torch pickle, but not under a pickle suffix
    torch.save({detect.CONV_IN: torch.zeros(320, 4, 3, 3)}, path)
    with pytest.raises(NotAModelError, match=r"weights\.zip is not a model file graphflow"):
        detect.read_header(path, allow_pickle=True)


def test_a_pickle_whose_state_dict_is_not_a_mapping_is_not_a_model(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": [1, 2, 3]}, path)
    with pytest.raises(NotAModelError, match="holds no tensors"):
        detect.read_header(path, allow_pickle=True)


def test_family_layout_with_other_sizes_needs_a_config_folder():
    state = meta_state("sd1")
    state[detect.CONV_IN] = torch.empty(64, 4, 3, 3, device="meta")
    with pytest.raises(ConfigNeededError, match="needs a diffusers config folder"):
        checkpoint_family(Path("x.safetensors"), header_of(state))


def test_lora_in_checkpoints_is_a_validation_error_naming_its_folder(models, tmp_path):
    from safetensors.torch import save_file

    target = models / "checkpoints" / "style-lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, str(target))
    try:
        workflow = loader_workflow("style-lora.safetensors")
        _, errors = validate(workflow, load_plugins().registry)
        assert [(e.code, e.input) for e in errors] == [(ErrorCode.INVALID_INPUT, "checkpoint")]
        assert "models/loras/" in errors[0].message
    finally:
        target.unlink()


# --- loading: tiny LDM files, each family pointed at a tiny config of its own ---

TINY_TIME_DIM = 8
IN_CHANNELS = {"inpainting": 9, "instruct-pix2pix": 8}
# diffusers tells SDXL's two encoders apart by width (768/1280 at full size): keep them apart.
TINY_WIDTH = {"text_encoder": 32, "text_encoder_2": 48}


def _tiny_unet(family: str):
    from diffusers import UNet2DConditionModel

    common = dict(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
        in_channels=IN_CHANNELS.get(family.split("-", 1)[-1], 4),
    )
    if family.startswith("sd1"):
        return UNet2DConditionModel(cross_attention_dim=32, attention_head_dim=8, **common)
    if family.startswith("sd2"):
        return UNet2DConditionModel(
            cross_attention_dim=32, attention_head_dim=8, use_linear_projection=True, **common
        )
    refiner = family == "sdxl-refiner"
    return UNet2DConditionModel(
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TINY_TIME_DIM,
        # size ids (6, or 5 with the refiner's aesthetic score) × 8 + the pooled text (48)
        projection_class_embeddings_input_dim=(5 if refiner else 6) * TINY_TIME_DIM + 48,
        cross_attention_dim=48 if refiner else 32 + 48,
        **common,
    )


def _tiny_encoder(family: str, sub: str):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    shipped = json.loads((config_folder(family) / sub / "config.json").read_text())
    width = TINY_WIDTH[sub]
    shipped.update(hidden_size=width, intermediate_size=37, num_attention_heads=4)
    shipped.update(num_hidden_layers=2, projection_dim=width)
    cls = CLIPTextModelWithProjection if sub == "text_encoder_2" else CLIPTextModel
    return cls(CLIPTextConfig(**shipped))


def _tiny_family(family: str, folder: Path) -> dict:
    """Tiny modules of ``family`` (CLIP's full 49408-token vocabulary), their config folder
    written at ``folder`` with the shipped model_index.json and tokenizer settings."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    modules = {
        "unet": _tiny_unet(family),
        "vae": AutoencoderKL(
            block_out_channels=(16, 32),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=16,
            sample_size=32,
        ),
    }
    for _, (sub, _) in encoder_layout(family).items():
        modules[sub] = _tiny_encoder(family, sub)
    index = json.loads((config_folder(family) / "model_index.json").read_text())
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    for sub in ("tokenizer", "tokenizer_2"):
        if (config_folder(family) / sub).is_dir():
            (folder / sub).mkdir()
            settings = (config_folder(family) / sub / "tokenizer_config.json").read_text()
            (folder / sub / "tokenizer_config.json").write_text(settings)
    for name, module in modules.items():
        target = folder / name
        if name.startswith("text_encoder"):
            module.config.save_pretrained(target)
        else:
            module.save_config(target)
    shutil.copytree(config_folder(family) / "scheduler", folder / "scheduler")
    return modules


TINY_FAMILIES = (
    "sd1",
    "sd1-inpainting",
    "sd1-instruct-pix2pix",
    "sd2-768-v",
    "sd2-512",
    "sd2-inpainting",
    "sdxl",
    "sdxl-inpainting",
    "sdxl-refiner",
)
# What tells the SD 2.x ε model from the v one (detect.sd2_is_epsilon).
TINY_METADATA = {"sd2-512": {"modelspec.prediction_type": "epsilon"}}


@pytest.fixture(scope="module")
def tiny_single(tmp_path_factory):
    """models/checkpoints/tiny-<family>.safetensors (fp32) and -fp16 copies, the config
    root holding each tiny config, and the original modules by family."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("single")
    (root / "models" / "checkpoints").mkdir(parents=True)
    originals = {}
    for family in TINY_FAMILIES:
        modules = _tiny_family(family, root / "configs" / family)
        encoders = {
            prefix: (modules[sub], layout)
            for prefix, (sub, layout) in encoder_layout(family).items()
        }
        state = export_state(modules["unet"], modules["vae"], encoders)
        target = root / "models" / "checkpoints"
        metadata = TINY_METADATA.get(family)
        full = {k: v.contiguous() for k, v in state.items()}
        save_file(full, str(target / f"tiny-{family}.safetensors"), metadata=metadata)
        half = {k: v.half().contiguous() for k, v in state.items()}
        save_file(half, str(target / f"tiny-{family}-fp16.safetensors"), metadata=metadata)
        originals[family] = modules
    return root, originals


@pytest.fixture
def tiny_family(tiny_single, monkeypatch):
    """The family declarations without their full-size sizes, their configs the tiny ones."""
    root, _ = tiny_single
    kinds = tuple(dataclasses.replace(k, sizes=None) for k in detect.KINDS)
    monkeypatch.setattr(detect, "KINDS", kinds)
    monkeypatch.setattr(configs, "CONFIGS_ROOT", root / "configs")
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(root / "models"))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return tiny_single


@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_single_file_without_config_loads_the_same_tensors(tiny_family, family, dtype):
    from gf_diffusion.loader import load_pipeline_components

    root, originals = tiny_family
    suffix = "-fp16" if dtype == torch.float16 else ""
    path = root / "models" / "checkpoints" / f"tiny-{family}{suffix}.safetensors"
    components = load_pipeline_components(path, "auto", torch.float32)
    for name, original in originals[family].items():
        loaded = components[name].state_dict()
        for key, value in original.state_dict().items():
            if key.endswith("position_ids"):
                continue
            expected = value.to(dtype).float()
            assert torch.equal(loaded[key].float(), expected), f"{name}.{key}"
    for name in ("tokenizer", "tokenizer_2"):
        if components.get(name) is not None:
            assert components[name]("a photo of a cat").input_ids[:3] == [49406, 320, 1125]


def test_single_file_without_config_samples_an_image(tiny_family):
    workflow = make_workflow(
        {
            "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd1.safetensors"}),
            "tokens": (
                "diffusion.tokenize",
                {"text": "a red cat", "tokenizer": link("ckpt", "tokenizer")},
            ),
            "cond": (
                "diffusion.encode_text",
                {"tokens": link("tokens", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
            ),
            "empty": (
                "diffusion.empty_latent",
                {"width": 32, "height": 32, "vae": link("ckpt", "vae")},
            ),
            "sample": (
                "diffusion.sampler",
                {
                    "model": link("ckpt", "model"),
                    "positive": link("cond", "conditioning"),
                    "negative": link("cond", "conditioning"),
                    "latent": link("empty", "latent"),
                    "scheduler": link("ckpt", "scheduler"),
                    "seed": 1,
                    "steps": 2,
                    "cfg": 1.0,
                },
            ),
            "decode": (
                "diffusion.vae_decode",
                {"vae": link("ckpt", "vae"), "latent": link("sample", "latent")},
            ),
            "show": ("core.show", {"value": link("decode", "image")}),
        }
    )
    executor = Executor(load_plugins().registry)
    result = executor.run(workflow, outputs=["decode"])
    assert result.ok, result.error
    image = result.outputs["decode"]["image"].cpu().numpy()
    assert image.shape[-3:-1] == (32, 32) and np.isfinite(image).all()


def test_opted_in_pickle_without_config_is_detected_and_loads(tiny_family, tmp_path):
    from safetensors.torch import load_file

    from gf_diffusion.loader import load_pipeline_components

    root, originals = tiny_family
    state = load_file(str(root / "models" / "checkpoints" / "tiny-sd1.safetensors"))
    path = root / "models" / "checkpoints" / "tiny-sd1-pickle.ckpt"
    torch.save({"state_dict": state, "global_step": 1}, path)
    try:
        components = load_pipeline_components(path, "auto", torch.float32, allow_pickle=True)
        expected = originals["sd1"]["unet"].conv_in.weight
        assert torch.equal(components["unet"].conv_in.weight, expected)
    finally:
        path.unlink()


def test_single_file_loaded_twice_reuses_the_resident_model(tiny_family):
    workflow = loader_workflow("tiny-sdxl.safetensors")
    executor = Executor(load_plugins().registry)
    first = executor.run(workflow, outputs=["ckpt"]).outputs["ckpt"]["model"]
    executor.cache.clear()
    second = executor.run(workflow, outputs=["ckpt"]).outputs["ckpt"]["model"]
    assert first is second and executor.models.loads == 1


def test_describe_names_kind_dtype_and_parameter_count(tiny_family):
    root, originals = tiny_family
    info = detect.describe(root / "models" / "checkpoints" / "tiny-sd1-fp16.safetensors")
    count = sum(
        v.numel()
        for module in originals["sd1"].values()
        for k, v in module.state_dict().items()
        if not k.endswith("position_ids")
    )
    assert (info["kind"], info["dtype"], info["parameters"]) == ("sd1", "F16", count)


def test_shipped_configs_are_config_choices(tiny_family):
    from gf_diffusion.loader import list_configs

    assert {f"graphflow/{k.config}" for k in SUPPORTED} <= set(list_configs())


def _config_errors(checkpoint: str, config: str) -> list:
    return validate(loader_workflow(checkpoint, config=config), load_plugins().registry)[1]


def test_a_shipped_config_of_another_family_is_a_validation_error(tiny_family):
    (error,) = _config_errors("tiny-sd1.safetensors", "graphflow/sdxl")
    assert (error.code, error.input) == (ErrorCode.INVALID_INPUT, "config")
    assert "tiny-sd1.safetensors is SD 1.x, which graphflow/sdxl does not describe" in (
        error.message
    )
    assert "choose graphflow/sd1 or auto" in error.message


def test_a_lora_with_a_shipped_config_is_an_error_on_the_checkpoint(tiny_family):
    from safetensors.torch import save_file

    root, _ = tiny_family
    target = root / "models" / "checkpoints" / "style-lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, str(target))
    try:
        (error,) = _config_errors("style-lora.safetensors", "graphflow/sd1")
    finally:
        target.unlink()
    assert error.input == "checkpoint" and "models/loras/" in error.message


def test_the_other_sd2_prediction_config_may_be_chosen(tiny_family):
    assert _config_errors("tiny-sd2-768-v.safetensors", "graphflow/sd2-512") == []


@pytest.mark.parametrize(
    ("family", "prediction"), [("sd2-768-v", "v_prediction"), ("sd2-512", "epsilon")]
)
def test_sd2_file_loads_with_its_prediction_type(tiny_family, family, prediction):
    from gf_diffusion.loader import load_pipeline_components

    root, _ = tiny_family
    path = root / "models" / "checkpoints" / f"tiny-{family}.safetensors"
    scheduler = load_pipeline_components(path, "auto", torch.float32)["scheduler"]
    assert scheduler.config.prediction_type == prediction


# --- opt-in: full-size random checkpoints (GBs of temp disk; see docs/models.md) ---

FULL_SIZE = pytest.mark.skipif(
    os.environ.get("GRAPHFLOW_FULL_SIZE_TESTS") != "1",
    reason="full-size checkpoints (2 + 6.5 GiB, ~3 min): set GRAPHFLOW_FULL_SIZE_TESTS=1",
)
# One tensor of each component: (LDM key in the file, component, diffusers name).
SAMPLED = {
    "sd1": [
        (
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
            "text_encoder",
            "text_model.embeddings.token_embedding.weight",
        )
    ],
    "sdxl": [
        (
            "conditioner.embedders.1.model.token_embedding.weight",
            "text_encoder_2",
            "text_model.embeddings.token_embedding.weight",
        )
    ],
}


@pytest.fixture(scope="session")
def full_size_folder(tmp_path_factory):
    """A temp folder holding the full-size random checkpoints for the whole test run
    (removed after it: pytest keeps old temp folders, and these are GBs)."""
    folder = tmp_path_factory.mktemp("full-size")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@FULL_SIZE
@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_full_size_random_checkpoint_loads_with_no_config(full_size_folder, family):
    from safetensors import safe_open

    from gf_diffusion.loader import load_pipeline_components

    path = build_checkpoint(family, full_size_folder / f"{family}.safetensors", seed=0)
    assert checkpoint_family(path).config == family
    components = load_pipeline_components(path, "auto", torch.float16)
    pairs = [
        (detect.CONV_IN, "unet", "conv_in.weight"),
        ("first_stage_model.decoder.conv_in.weight", "vae", "decoder.conv_in.weight"),
        *SAMPLED[family],
    ]
    with safe_open(str(path), framework="pt") as f:
        for key, component, name in pairs:
            state = components[component].state_dict()
            # transformers names CLIPTextModel's weights without the text_model. prefix
            loaded = state[name] if name in state else state[name.removeprefix("text_model.")]
            assert torch.equal(loaded, f.get_tensor(key)), key
