"""Tiny random ControlNets for the tiny SD and SDXL test models (built locally, no downloads).

Their sizes match ``tiny_models.build_tiny_sd`` / ``build_tiny_sdxl`` UNets (widths 32/64,
one layer per block, 16×16 latents of 32×32 images: a hint embedding with one stride-2
step). The zero convolutions get small random weights, so a ControlNet changes the image.
:func:`to_original_layout` writes a diffusers ControlNet state dict in the original
(ControlNet repository / ComfyUI) layout, for the single-file loading tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ldm_export import UNET_RESNET, UNET_TOP
from tiny_models import build_tiny_sd, build_tiny_sdxl

SD_CONFIG = {
    "in_channels": 4,
    "conditioning_channels": 3,
    "conditioning_embedding_out_channels": (8, 16),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SDXL_CONFIG = {
    **SD_CONFIG,
    "cross_attention_dim": 64,
    "attention_head_dim": (1, 1),
    "use_linear_projection": True,
    "transformer_layers_per_block": (1, 2),
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 80,
}


def tiny_controlnet(config: dict, seed: int = 0):
    """A ControlNetModel of ``config`` with random weights, zero convolutions included."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel(**config)
    with torch.no_grad():
        zero = [*net.controlnet_down_blocks, net.controlnet_mid_block]
        for conv in [*zero, net.controlnet_cond_embedding.conv_out]:
            conv.weight.normal_(0.0, 0.05)
            conv.bias.normal_(0.0, 0.05)
    return net.eval()


def _down_prefixes(config) -> list[tuple[str, str]]:
    per = config["layers_per_block"] + 1
    pairs = []
    for i, kind in enumerate(config["down_block_types"]):
        for j in range(config["layers_per_block"]):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{per * i + j + 1}.0."))
            if "CrossAttn" in kind:
                pairs.append(
                    (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{per * i + j + 1}.1.")
                )
        if i < len(config["down_block_types"]) - 1:
            pairs.append(
                (f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{per * (i + 1)}.0.op.")
            )
    pairs += [
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    pairs.append(("mid_block.attentions.0.", "middle_block.1."))
    return pairs


def _hint_names(config) -> dict[str, str]:
    steps = len(config["conditioning_embedding_out_channels"]) - 1
    names = {"controlnet_cond_embedding.conv_in.": "input_hint_block.0."}
    for k in range(2 * steps):
        names[f"controlnet_cond_embedding.blocks.{k}."] = f"input_hint_block.{2 * (k + 1)}."
    names["controlnet_cond_embedding.conv_out."] = f"input_hint_block.{2 * (2 * steps + 1)}."
    return names


def to_original_layout(state: dict, config: dict, prefix: str = "control_model.") -> dict:
    """diffusers ControlNetModel keys → the original layout (``input_hint_block``,
    ``input_blocks``, ``zero_convs``, ``middle_block_out``) under ``prefix``."""
    tops = {f"{new}.": f"{old}." for new, old in UNET_TOP.items()}
    tops["controlnet_mid_block."] = "middle_block_out.0."
    tops.update(_hint_names(config))
    out = {}
    for key, value in state.items():
        if key.startswith("controlnet_down_blocks."):
            index, rest = key.removeprefix("controlnet_down_blocks.").split(".", 1)
            out[f"{prefix}zero_convs.{index}.0.{rest}"] = value
            continue
        for new, old in [*tops.items(), *_down_prefixes(config)]:
            if key.startswith(new):
                rest = key[len(new) :]
                if ".resnets." in new:
                    for d, o in UNET_RESNET.items():
                        if rest.startswith(d + "."):
                            rest = o + rest[len(d) :]
                out[prefix + old + rest] = value
                break
        else:
            raise KeyError(f"no original-layout name for ControlNet key {key}")
    return out


def save_controlnets(root: Path) -> None:
    """models/controlnet with tiny ControlNets as folders and single files of every layout."""
    from safetensors.torch import save_file

    folder = root / "controlnet"
    folder.mkdir(parents=True, exist_ok=True)
    for name, config, seed in (
        ("tiny-cn", SD_CONFIG, 1),
        ("tiny-cn-b", SD_CONFIG, 2),
        ("tiny-xl-cn", SDXL_CONFIG, 3),
    ):
        net = tiny_controlnet(config, seed)
        net.save_pretrained(folder / name)
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(folder / f"{name}.safetensors"))
        save_file(to_original_layout(state, config), str(folder / f"{name}-original.safetensors"))
        save_file(to_original_layout(state, config, ""), str(folder / f"{name}-bare.safetensors"))
    # SDXL's tiny size embedding is not the released width: its files take a config beside.
    config = json.loads((folder / "tiny-xl-cn" / "config.json").read_text())
    for stem in ("tiny-xl-cn", "tiny-xl-cn-original", "tiny-xl-cn-bare"):
        (folder / f"{stem}.config.json").write_text(json.dumps(config))


@pytest.fixture(scope="session")
def control_models_root(tmp_path_factory):
    """A models folder: checkpoints/tiny-sd and tiny-sdxl, models/controlnet's tiny ones."""
    root = tmp_path_factory.mktemp("control_models")
    build_tiny_sd(root / "checkpoints" / "tiny-sd")
    build_tiny_sdxl(root / "checkpoints" / "tiny-sdxl")
    save_controlnets(root)
    return root


@pytest.fixture
def control_models(control_models_root, monkeypatch):
    """Point graphflow at the control models folder for one test (on the CPU)."""
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(control_models_root))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return control_models_root
