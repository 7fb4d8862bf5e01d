"""LoRA key names → parameter names of our modules (diffusers UNet, transformers CLIP).

LoRA files name the *layer* a change belongs to in one of several spellings:

- kohya-ss / A1111: the module path with dots turned into underscores, after a component
  prefix (``lora_unet_down_blocks_0_attentions_0_proj_in``,
  ``lora_te_text_model_encoder_layers_0_self_attn_q_proj``; SDXL ``lora_te1_``/``lora_te2_``).
  SD 1.x files use diffusers UNet paths; SDXL files use the original (LDM/sgm) UNet paths
  (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``);
- diffusers / PEFT: the dotted module path after ``unet.`` / ``text_encoder.`` /
  ``text_encoder_2.`` (``unet.down_blocks.0.attentions.0.proj_in``);
- ComfyUI-style dotted LDM paths after ``diffusion_model.``.

Instead of rewriting names with string replacements, each spelling is looked up in a table
built from the *real module*: every module path that owns a ``weight`` is entered under its
underscored form, and for a UNet also under the underscored form of its LDM path (computed
from the UNet's block layout). A dotted name is underscored before the lookup, so one table
answers every spelling, and a name the model does not have is simply not found (and
reported by the caller). Text-encoder paths are entered with and without ``text_model.``
(transformers' ``CLIPTextModel`` and ``CLIPTextModelWithProjection`` differ there).
"""

from __future__ import annotations

from typing import Any

# Component prefixes: (prefix, component) — component "unet", or the text encoder's index.
PREFIXES: tuple[tuple[str, Any], ...] = (
    ("lora_unet_", "unet"),
    ("lora_te1_", 0),
    ("lora_te2_", 1),
    ("lora_te_", 0),
    ("unet.", "unet"),
    ("text_encoder_2.", 1),
    ("text_encoder.", 0),
    ("diffusion_model.", "unet"),
    ("model.diffusion_model.", "unet"),
)

# LDM resnet layer names → diffusers names.
_RESNET_INNER = {
    "norm1": "in_layers_0",
    "conv1": "in_layers_2",
    "time_emb_proj": "emb_layers_1",
    "norm2": "out_layers_0",
    "conv2": "out_layers_3",
    "conv_shortcut": "skip_connection",
}


def underscored(path: str) -> str:
    """A module path as kohya spells it: dots become underscores."""
    return path.replace(".", "_")


def split_component(name: str) -> tuple[Any, str] | None:
    """(component, module name without its prefix) for a LoRA layer name, or None."""
    for prefix, component in PREFIXES:
        if name.startswith(prefix):
            return component, name[len(prefix) :]
    return None


def _weighted_modules(module: Any) -> list[str]:
    """Paths of every submodule that has its own ``weight`` parameter."""
    import torch

    return [
        path
        for path, sub in module.named_modules()
        if path and isinstance(getattr(sub, "weight", None), torch.nn.Parameter)
    ]


def _ldm_prefixes(config: Any) -> dict[str, str]:
    """Diffusers UNet block prefixes → the LDM (sgm) prefixes of the same blocks."""
    per_block = int(config.layers_per_block) if isinstance(config.layers_per_block, int) else 0
    blocks = len(config.block_out_channels)
    table = {
        "conv_in": "input_blocks_0_0",
        "time_embedding_linear_1": "time_embed_0",
        "time_embedding_linear_2": "time_embed_2",
        "add_embedding_linear_1": "label_emb_0_0",
        "add_embedding_linear_2": "label_emb_0_2",
        "conv_norm_out": "out_0",
        "conv_out": "out_2",
        "mid_block_resnets_0": "middle_block_0",
        "mid_block_attentions_0": "middle_block_1",
        "mid_block_resnets_1": "middle_block_2",
    }
    if not per_block:
        return table
    for i in range(blocks):
        for j in range(per_block):
            index = 1 + i * (per_block + 1) + j
            table[f"down_blocks_{i}_resnets_{j}"] = f"input_blocks_{index}_0"
            table[f"down_blocks_{i}_attentions_{j}"] = f"input_blocks_{index}_1"
        if i < blocks - 1:
            index = 1 + i * (per_block + 1) + per_block
            table[f"down_blocks_{i}_downsamplers_0_conv"] = f"input_blocks_{index}_0_op"
    up_types = list(config.up_block_types)
    for i in range(blocks):
        has_attention = "CrossAttn" in up_types[i]
        for j in range(per_block + 1):
            index = i * (per_block + 1) + j
            table[f"up_blocks_{i}_resnets_{j}"] = f"output_blocks_{index}_0"
            table[f"up_blocks_{i}_attentions_{j}"] = f"output_blocks_{index}_1"
        last = i * (per_block + 1) + per_block
        table[f"up_blocks_{i}_upsamplers_0_conv"] = (
            f"output_blocks_{last}_{2 if has_attention else 1}_conv"
        )
    return table


def _ldm_name(path: str, prefixes: dict[str, str]) -> str | None:
    """The underscored LDM name of a diffusers UNet module path (None if it has none)."""
    name = underscored(path)
    for prefix in sorted(prefixes, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "_"):
            rest = name[len(prefix) :].lstrip("_")
            if "resnets" in prefix and rest in _RESNET_INNER:
                rest = _RESNET_INNER[rest]
            return prefixes[prefix] + ("_" + rest if rest else "")
    return None


def unet_table(unet: Any) -> dict[str, str]:
    """Underscored layer names (diffusers and LDM spellings) → module paths of ``unet``."""
    table: dict[str, str] = {}
    config = getattr(unet, "config", None)
    prefixes = _ldm_prefixes(config) if config is not None else {}
    for path in _weighted_modules(unet):
        table[underscored(path)] = path
        ldm = _ldm_name(path, prefixes) if prefixes else None
        if ldm is not None:
            table.setdefault(ldm, path)
    return table


def text_encoder_table(encoder: Any) -> dict[str, str]:
    """Underscored layer names (with and without ``text_model_``) → module paths."""
    table: dict[str, str] = {}
    for path in _weighted_modules(encoder):
        bare = path.removeprefix("text_model.")
        table[underscored(bare)] = path
        table[underscored("text_model." + bare)] = path
    return table
