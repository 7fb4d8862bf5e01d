"""What a model file is, from its header: model_info, model_listing, the dropdown labels and
``graphflow models list`` / ``graphflow models inspect``.

Every file here is made in a temporary folder with only the tensors the rules read (a few
hundred kB at most), so each test runs in well under a second.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from gf_diffusion import loader, lora, model_listing
from gf_diffusion.model_info import inspect_model
from graphflow.cli import main
from graphflow.runtime.models import ModelFileError

UNET = "model.diffusion_model."
ATTN2_K = "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"


def _zeros(shapes: dict, dtype=torch.float16) -> dict:
    return {k: torch.zeros(s, dtype=dtype) for k, s in shapes.items()}


def ldm_checkpoint(path, context=768, width=320, xl=False):
    """The keys detection reads: conv_in, one cross-attention key, VAE and text encoder(s)."""
    shapes = {
        UNET + "input_blocks.0.0.weight": (width, 4, 3, 3),
        UNET + ATTN2_K: (width * 2, context),
        "first_stage_model.decoder.conv_in.weight": (8, 4, 3, 3),
    }
    if xl:
        shapes["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] = (768,)
        shapes["conditioner.embedders.1.model.ln_final.weight"] = (1280,)
    else:
        shapes["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = (768,)
    save_file(_zeros(shapes), str(path))
    return path


def kohya_sdxl_lora(path, rank=8):
    k = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    te1 = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    te2 = "lora_te2_text_model_encoder_layers_0_self_attn_q_proj"
    tensors = _zeros(
        {
            f"{k}.lora_down.weight": (rank, 2048),
            f"{k}.lora_up.weight": (640, rank),
            f"{te1}.lora_down.weight": (rank, 768),
            f"{te1}.lora_up.weight": (768, rank),
            f"{te2}.lora_down.weight": (rank, 1280),
            f"{te2}.lora_up.weight": (1280, rank),
        }
    )
    for layer in (k, te1, te2):
        tensors[f"{layer}.alpha"] = torch.tensor(4.0)
    meta = {"ss_network_module": "networks.lora", "ss_base_model_version": "sdxl_base_v1-0"}
    save_file(tensors, str(path), metadata=meta)
    return path


def peft_sd2_lora(path):
    layer = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    tensors = _zeros({f"{layer}.lora_A.weight": (4, 1024), f"{layer}.lora_B.weight": (320, 4)})
    config = json.dumps({"unet.r": 4, "unet.lora_alpha": 2})
    save_file(tensors, str(path), metadata={"lora_adapter_metadata": config})
    return path


def loha_sd1(path):
    layer = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    shapes = {"hada_w1_a": (640, 4), "hada_w1_b": (4, 768), "hada_w2_a": (640, 4)}
    shapes["hada_w2_b"] = (4, 768)
    tensors = _zeros({f"{layer}.{k}": s for k, s in shapes.items()}, torch.float32)
    tensors[f"{layer}.alpha"] = torch.tensor(2.0)
    save_file(tensors, str(path))
    return path


def locon_sd1(path):
    conv = "lora_unet_down_blocks_0_resnets_0_conv1"
    attn = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    shapes = {
        f"{conv}.lora_down.weight": (4, 320, 3, 3),
        f"{conv}.lora_up.weight": (320, 4, 1, 1),
        f"{attn}.lora_down.weight": (16, 768),
        f"{attn}.lora_up.weight": (320, 16),
    }
    save_file(_zeros(shapes), str(path))
    return path


@pytest.fixture
def models(tmp_path, monkeypatch):
    root = tmp_path / "models"
    for sub in ("checkpoints", "loras", "embeddings"):
        (root / sub).mkdir(parents=True)
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(root))
    return root


def test_an_sd1_checkpoint_is_described_part_by_part(tmp_path):
    info = inspect_model(ldm_checkpoint(tmp_path / "sd1.safetensors"))
    assert (info["kind"], info["label"], info["dtype"]) == ("sd1", "SD 1.x", "fp16")
    assert info["parameters"] == 320 * 4 * 9 + 640 * 768 + 8 * 4 * 9 + 768
    details = info["details"]
    assert details["contains"] == {
        "unet": 320 * 4 * 9 + 640 * 768,
        "vae": 8 * 4 * 9,
        "text_encoders": 768,
    }
    assert details["text_encoders"] == ["CLIP ViT-L"]
    assert (details["context_width"], details["unet_in_channels"]) == (768, 4)
    assert details["loads"] is True and details["config"] == "graphflow/sd1"


def test_an_sdxl_checkpoint_names_both_text_encoders(tmp_path):
    info = inspect_model(ldm_checkpoint(tmp_path / "xl.safetensors", context=2048, xl=True))
    assert info["label"] == "SDXL base"
    assert info["details"]["text_encoders"] == ["CLIP ViT-L", "OpenCLIP ViT-bigG"]


def test_a_checkpoint_of_other_sizes_says_it_needs_a_config(tmp_path):
    info = inspect_model(ldm_checkpoint(tmp_path / "odd.safetensors", width=32))
    assert info["label"] == "SD 1.x layout, other sizes (needs a config)"
    assert info["details"]["loads"] is False
    assert "needs a diffusers config folder" in info["details"]["note"]


def test_a_config_folder_beside_the_file_makes_it_loadable(tmp_path):
    path = ldm_checkpoint(tmp_path / "odd.safetensors", width=32)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "model_index.json").write_text("{}")
    info = inspect_model(path)
    assert info["label"] == "SD 1.x"
    assert info["details"]["loads"] is True
    assert info["details"]["config"] == str(tmp_path / "odd")


def test_a_diffusers_folder_lists_its_components_and_family(tmp_path):
    folder = tmp_path / "xl"
    (folder / "unet").mkdir(parents=True)
    index = {
        "_class_name": "StableDiffusionXLPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
    }
    index["vae"] = ["diffusers", "AutoencoderKL"]
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "config.json").write_text('{"cross_attention_dim": 2048, "in_channels": 9}')
    save_file(_zeros({"conv_in.weight": (8, 9, 3, 3)}), str(folder / "unet" / "m.safetensors"))
    info = inspect_model(folder)
    assert info["label"] == "SDXL inpainting (diffusers folder)"
    assert info["details"]["components"]["unet"] == {
        "class": "UNet2DConditionModel",
        "parameters": 8 * 9 * 9,
        "dtype": "fp16",
    }
    assert info["details"]["components"]["vae"] == {"class": "AutoencoderKL"}
    assert info["parameters"] == 8 * 9 * 9


def test_a_broken_diffusers_index_is_a_one_line_error(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="broken: unreadable diffusers config"):
        inspect_model(tmp_path / "broken")


def test_the_embedded_model_is_labelled_as_such():
    info = inspect_model(loader.checkpoint_path("graphflow-tiny"))
    assert info["label"] == "graphflow-tiny (embedded)" and info["dtype"] == "fp32"
    assert "MiniLM" in info["details"]["components"]["text_encoder"]["weights"]


def test_a_kohya_sdxl_lora_has_rank_alpha_and_three_targets(tmp_path):
    info = inspect_model(kohya_sdxl_lora(tmp_path / "xl_lora.safetensors"))
    details = info["details"]
    assert info["kind"] == "lora" and info["label"] == "LoRA rank 8, SDXL"
    assert (details["format"], details["key_style"], details["base"]) == (
        "LoRA (kohya)",
        "kohya",
        "SDXL",
    )
    assert details["targets"] == {"unet": 1, "text_encoder": 1, "text_encoder_2": 1}
    assert details["ranks"] == [8] and details["alphas"] == [4.0] and details["layers"] == 3
    assert info["metadata"]["ss_network_module"] == "networks.lora"


def test_a_peft_lora_takes_its_alpha_from_the_adapter_config(tmp_path):
    info = inspect_model(peft_sd2_lora(tmp_path / "peft.safetensors"))
    details = info["details"]
    assert (details["format"], details["key_style"], details["base"]) == ("LoRA", "peft", "SD 2.x")
    assert details["ranks"] == [4] and details["alphas"] == [2.0]
    assert details["targets"] == {"unet": 1}
    assert info["label"] == "LoRA rank 4, SD 2.x"


def test_a_loha_is_named_with_its_rank_and_base(tmp_path):
    info = inspect_model(loha_sd1(tmp_path / "loha.safetensors"))
    assert info["details"]["format"] == "LoHa" and info["details"]["ranks"] == [4]
    assert info["label"] == "LoHa rank 4, SD 1.x" and info["dtype"] == "fp32"
    assert info["details"]["alphas"] == [2.0]


def test_a_lokr_width_is_the_product_of_its_halves(tmp_path):
    layer = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    shapes = {"lokr_w1": (4, 8), "lokr_w2_a": (160, 2), "lokr_w2_b": (2, 128)}  # in: 8 x 128
    path = tmp_path / "lokr.safetensors"
    save_file(_zeros({f"{layer}.{k}": v for k, v in shapes.items()}), str(path))
    info = inspect_model(path)
    assert info["details"]["format"] == "LoKr" and info["details"]["ranks"] == [2]
    assert info["label"] == "LoKr rank 2, SD 2.x"


def test_a_lora_with_3x3_convolutions_is_a_locon_with_a_rank_range(tmp_path):
    info = inspect_model(locon_sd1(tmp_path / "locon.safetensors"))
    assert info["details"]["format"] == "LoCon" and info["details"]["ranks"] == [4, 16]
    assert info["label"] == "LoCon rank 4-16, SD 1.x"


def test_listings_do_not_read_alpha_values(tmp_path):
    info = inspect_model(kohya_sdxl_lora(tmp_path / "l.safetensors"), read_values=False)
    assert info["details"]["alphas"] is None and info["details"]["ranks"] == [8]


def test_an_sdxl_embedding_has_vectors_per_encoder(tmp_path):
    path = tmp_path / "xl_emb.safetensors"
    save_file(_zeros({"clip_l": (2, 768), "clip_g": (2, 1280)}), str(path))
    info = inspect_model(path)
    assert info["kind"] == "embedding" and info["label"] == "embedding, 2 vectors, SDXL"
    assert info["details"]["encoders"] == {
        "clip_l": {"vectors": 2, "width": 768},
        "clip_g": {"vectors": 2, "width": 1280},
    }


def test_an_a1111_embedding_is_read_for_clip_l(tmp_path):
    path = tmp_path / "style.safetensors"
    save_file(_zeros({"string_to_param.*": (3, 768)}), str(path))
    details = inspect_model(path)["details"]
    assert details == {
        "vectors": 3,
        "encoders": {"clip_l": {"vectors": 3, "width": 768}},
        "base": "SD 1.x",
    }


def test_pickle_files_are_refused_without_the_opt_in(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"string_to_param": {"*": torch.zeros(2, 1024)}, "name": "old"}, path)
    with pytest.raises(ModelFileError, match="pickle file"):
        inspect_model(path)
    info = inspect_model(path, allow_pickle=True)
    assert info["file_format"] == "pickle" and info["label"] == "embedding, 2 vectors, SD 2.x"


def test_a_file_that_is_no_model_is_a_one_line_error(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("not a model")
    with pytest.raises(ModelFileError, match=r"not a readable \.safetensors model file"):
        inspect_model(path)


def test_listing_marks_bundled_and_misplaced_files(models):
    ldm_checkpoint(models / "checkpoints" / "sd1.safetensors")
    kohya_sdxl_lora(models / "checkpoints" / "stray_lora.safetensors")
    folders = {f["folder"]: f for f in model_listing.list_models_folders()}
    checkpoints = {m["name"]: m for m in folders["checkpoints"]["models"]}
    assert checkpoints["sd1.safetensors"]["label"] == "SD 1.x"
    assert checkpoints["stray_lora.safetensors"]["belongs_in"] == "loras"
    tiny = checkpoints["graphflow-tiny"]
    assert tiny["bundled"] is True and tiny["label"] == "graphflow-tiny (embedded)"
    assert folders["loras"]["models"] == []
    assert {"vae", "text_encoders", "controlnet", "upscale_models"} <= set(folders)


def test_listing_includes_extra_model_folders_from_the_settings(models, tmp_path, monkeypatch):
    extra = tmp_path / "a1111" / "Lora"
    extra.mkdir(parents=True)
    loha_sd1(extra / "shared_loha.safetensors")
    config = tmp_path / "graphflow.toml"
    config.write_text(f'[model_paths]\nloras = ["{extra.as_posix()}"]\n')
    monkeypatch.setenv("GRAPHFLOW_CONFIG", str(config))
    from graphflow.settings import load_settings, use_settings

    with use_settings(load_settings({}).settings):
        (listing,) = model_listing.list_models_folders("loras")
    assert str(extra) in listing["search"]
    assert [(m["name"], m["label"]) for m in listing["models"]] == [
        ("shared_loha.safetensors", "LoHa rank 4, SD 1.x")
    ]


def test_dropdown_labels_come_from_headers_and_are_cached_by_file_version(models):
    path = ldm_checkpoint(models / "checkpoints" / "a.safetensors")
    kohya_sdxl_lora(models / "loras" / "detail.safetensors")
    (models / "checkpoints" / "old.ckpt").write_bytes(b"never opened")
    data = loader.load_checkpoint.to_dict()["inputs"][0]
    assert data["choice_labels"] == {
        "a.safetensors": "SD 1.x",
        "old.ckpt": "pickle file",
        "graphflow-tiny": "graphflow-tiny (embedded)",
    }
    lora_input = lora.load_lora.to_dict()["inputs"][2]
    assert lora_input["choice_labels"] == {"detail.safetensors": "LoRA rank 8, SDXL"}
    reads = model_listing.INFO.reads
    loader.load_checkpoint.to_dict()
    assert model_listing.INFO.reads == reads  # nothing changed: nothing read again
    ldm_checkpoint(path, width=32)  # the file changes (size too): read again
    labels = loader.load_checkpoint.to_dict()["inputs"][0]["choice_labels"]
    assert labels["a.safetensors"] == "SD 1.x layout, other sizes (needs a config)"
    assert model_listing.INFO.reads == reads + 1


def test_cli_models_list_prints_labels_and_json(models, capsys):
    ldm_checkpoint(models / "checkpoints" / "sd1.safetensors")
    assert main(["models", "list", "--folder", "checkpoints"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("checkpoints/  (")
    assert "sd1.safetensors" in out and "SD 1.x" in out and "fp16" in out
    assert "graphflow-tiny (embedded)" in out and "[bundled]" in out
    assert main(["models", "list", "--folder", "loras", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["folders"][0]["folder"] == "loras" and data["folders"][0]["models"] == []


def test_cli_models_inspect_by_path_and_by_folder_name(models, capsys):
    kohya_sdxl_lora(models / "loras" / "detail.safetensors")
    assert main(["models", "inspect", "loras/detail.safetensors"]) == 0
    out = capsys.readouterr().out
    assert "what:        LoRA rank 8, SDXL" in out
    assert "targets:     unet 1 layers, text_encoder 1 layers, text_encoder_2 1 layers" in out
    assert "alpha(s):    4" in out
    path = str(models / "loras" / "detail.safetensors")
    assert main(["models", "inspect", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["details"]["ranks"] == [8]


def test_cli_models_inspect_problems_are_one_line(models, tmp_path, capsys):
    assert main(["models", "inspect", "loras/missing.safetensors"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no model file 'loras/missing.safetensors'")
    assert len(err.strip().splitlines()) == 1
    pickle = tmp_path / "x.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(2)}}, pickle)
    assert main(["models", "inspect", str(pickle)]) == 2
    assert "pickle file" in capsys.readouterr().err
    assert main(["models", "inspect", str(pickle), "--allow-pickle"]) == 0
    assert "file format: pickle" in capsys.readouterr().out


def test_the_image_packs_models_command_is_still_there(capsys):
    with pytest.raises(SystemExit):
        main(["models", "import-ncnn", "--help"])
    assert "ncnn" in capsys.readouterr().out
