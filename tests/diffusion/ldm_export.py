"""Write diffusers SD modules as one original-layout (LDM) .safetensors checkpoint.

Test support: it lets the single-file loading path be checked against a diffusers folder
holding the very same weights. Key names follow the original Stable Diffusion layout
(``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``).
"""

from __future__ import annotations

import json
from pathlib import Path

UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    # SDXL's pooled-text + size conditioning.
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}
VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _unet_prefixes(config) -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix) pairs for every block of a UNet2DConditionModel."""
    per = config.layers_per_block + 1
    pairs = []
    for i, kind in enumerate(config.down_block_types):
        for j in range(config.layers_per_block):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{per * i + j + 1}.0."))
            if "CrossAttn" in kind:
                pairs.append(
                    (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{per * i + j + 1}.1.")
                )
        if i < len(config.down_block_types) - 1:
            pairs.append(
                (f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{per * (i + 1)}.0.op.")
            )
    for i, kind in enumerate(config.up_block_types):
        for j in range(per):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{per * i + j}.0."))
            if "CrossAttn" in kind:
                pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{per * i + j}.1."))
        if i < len(config.up_block_types) - 1:
            slot = 2 if "CrossAttn" in kind else 1
            pairs.append(
                (f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{per * i + per - 1}.{slot}.")
            )
    pairs.append(("mid_block.attentions.0.", "middle_block.1."))
    pairs += [(f"mid_block.resnets.{j}.", f"middle_block.{2 * j}.") for j in range(2)]
    return pairs


def _rename_resnet(rest: str, table: dict[str, str]) -> str:
    for new, old in table.items():
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_to_ldm(state: dict, config) -> dict:
    """diffusers UNet keys → ``model.diffusion_model.*`` keys."""
    prefixes = _unet_prefixes(config)
    out = {}
    for key, value in state.items():
        for new, old in UNET_TOP.items():
            if key.startswith(new + "."):
                out["model.diffusion_model." + old + key[len(new) :]] = value
                break
        else:
            for new, old in prefixes:
                if key.startswith(new):
                    rest = key[len(new) :]
                    if ".resnets." in new:
                        rest = _rename_resnet(rest, UNET_RESNET)
                    out["model.diffusion_model." + old + rest] = value
                    break
            else:
                raise KeyError(f"no LDM name for UNet key {key}")
    return out


def vae_to_ldm(state: dict, config) -> dict:
    """diffusers AutoencoderKL keys → ``first_stage_model.*`` keys (attention as 1×1 convs)."""
    levels = len(config.block_out_channels)
    out = {}
    for key, value in state.items():
        new = key
        new = new.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        for i in range(levels):
            new = new.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            new = new.replace(
                f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."
            )
            up = levels - 1 - i
            new = new.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{up}.block.")
            new = new.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{up}.upsample.")
        new = new.replace("mid_block.resnets.0.", "mid.block_1.").replace(
            "mid_block.resnets.1.", "mid.block_2."
        )
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for diffusers_name, ldm_name in VAE_ATTENTION.items():
                new = new.replace(f"attn_1.{diffusers_name}.", f"attn_1.{ldm_name}.")
            if value.dim() == 2:
                value = value[:, :, None, None]
        out["first_stage_model." + new] = value
    return out


def clip_to_ldm(state: dict) -> dict:
    """transformers CLIPTextModel keys → ``cond_stage_model.transformer.text_model.*``."""
    out = {}
    for key, value in state.items():
        key = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + key] = value
    return out


OPENCLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def openclip_to_ldm(state: dict, prefix: str) -> dict:
    """transformers CLIPTextModel(WithProjection) keys → OpenCLIP's layout under ``prefix``
    (``cond_stage_model.model.`` for SD 2.x, ``conditioner.embedders.N.model.`` for SDXL):
    q/k/v fused into ``in_proj``, the projection stored transposed."""
    import torch

    out = {}
    layers: dict[str, dict[str, object]] = {}
    top = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    for key, value in state.items():
        if not key.startswith(("text_model.", "text_projection.")):
            key = "text_model." + key
        if key in top:
            out[prefix + top[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T
        elif key.startswith("text_model.encoder.layers."):
            index, rest = key.removeprefix("text_model.encoder.layers.").split(".", 1)
            base = f"{prefix}transformer.resblocks.{index}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in (
                "q_proj",
                "k_proj",
                "v_proj",
            ):
                layers.setdefault(base, {})[rest.removeprefix("self_attn.")] = value
                continue
            for new, old in OPENCLIP_LAYER.items():
                if rest.startswith(new + "."):
                    rest = old + rest[len(new) :]
                    break
            out[base + rest] = value
        elif key != "text_model.embeddings.position_ids":
            raise KeyError(f"no OpenCLIP name for text encoder key {key}")
    for base, parts in layers.items():
        for kind in ("weight", "bias"):
            fused = [parts[f"{p}_proj.{kind}"] for p in "qkv"]
            out[f"{base}attn.in_proj_{kind}"] = torch.cat(fused, 0)
    return out


def export_state(unet, vae, encoders: dict) -> dict:
    """One LDM-layout state dict of a UNet, a VAE and text encoders.

    ``encoders`` maps an LDM prefix to ``(module, layout)``, layout "clip" (transformers'
    names, as SD 1.x and SDXL's first encoder) or "openclip"; for example
    ``{"cond_stage_model.transformer.": (te, "clip")}``. Works on meta tensors too.
    """
    state = {}
    state.update(unet_to_ldm(unet.state_dict(), unet.config))
    state.update(vae_to_ldm(vae.state_dict(), vae.config))
    for prefix, (module, layout) in encoders.items():
        te = module.state_dict()
        if layout == "openclip":
            state.update(openclip_to_ldm(te, prefix))
        else:
            for key, value in te.items():
                key = key if key.startswith("text_model.") else "text_model." + key
                state[prefix + key] = value
    return state


def export_single_file(pipe, path: Path) -> Path:
    """Save an SD 1.x pipeline's UNet, VAE and text encoder as one LDM-layout safetensors."""
    from safetensors.torch import save_file

    state = {}
    state.update(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    state.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    state.update(clip_to_ldm(pipe.text_encoder.state_dict()))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


# Each family's text encoders: LDM prefix → (diffusers component, layout).
ENCODERS = {
    "sd1": {"cond_stage_model.transformer.": ("text_encoder", "clip")},
    "sd2": {"cond_stage_model.model.": ("text_encoder", "openclip")},
    "sdxl": {
        "conditioner.embedders.0.transformer.": ("text_encoder", "clip"),
        "conditioner.embedders.1.model.": ("text_encoder_2", "openclip"),
    },
    "sdxl-refiner": {"conditioner.embedders.0.model.": ("text_encoder_2", "openclip")},
}


def encoder_layout(config: str) -> dict:
    """:data:`ENCODERS` of a shipped config name ("sd1-inpainting" → "sd1"'s)."""
    return ENCODERS["sdxl-refiner" if config == "sdxl-refiner" else config.split("-")[0]]


def meta_state(family: str) -> dict:
    """The LDM-layout state dict (meta tensors) of the family's shipped config."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from ldm_export import export_state
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from gf_diffusion.configs import config_folder

    folder = config_folder(family)

    def read(sub: str) -> dict:
        return json.loads((folder / sub / "config.json").read_text())

    encoders = {}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(read("unet"))
        vae = AutoencoderKL.from_config(read("vae"))
        for prefix, (sub, layout) in encoder_layout(family).items():
            cls = CLIPTextModelWithProjection if sub == "text_encoder_2" else CLIPTextModel
            encoders[prefix] = (cls(CLIPTextConfig.from_pretrained(folder / sub)), layout)
    return export_state(unet, vae, encoders)


def build_checkpoint(family: str, path: Path, seed: int = 0) -> Path:
    """Write a seeded random fp16 checkpoint of ``family`` at ``path`` (kept if present)."""
    import torch
    from safetensors.torch import save_file

    if path.is_file():
        return path
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, meta in sorted(meta_state(family).items()):
        value = torch.randn(meta.shape, generator=generator) * 0.02
        state[key] = value.to(torch.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file(state, str(partial))
    partial.rename(path)
    return path
