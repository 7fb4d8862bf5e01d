"""ComfyUI's loader class types on graphflow's loaders: CheckpointLoaderSimple, LoraLoader,
LoraLoaderModelOnly and VAELoader.

They call the functions behind graphflow's own nodes (``gf_diffusion.loader``,
``gf_diffusion.lora`` and ``gf_diffusion.component_loaders``), so a model loaded through
either name is the same resident model, and their checks and file fingerprints are
graphflow's, under ComfyUI's input names.
CLIP is graphflow's text encoders and tokenizers together (:class:`~gf_comfy.types.ClipValue`).
Pickle files (.ckpt/.pt) follow graphflow's rule: refused unless pickles are allowed in the
settings (``GRAPHFLOW_ALLOW_PICKLE``), then read weights-only, as ComfyUI reads them.
"""

from __future__ import annotations

from dataclasses import replace

from gf_diffusion import component_loaders, loader, lora
from gf_diffusion.latents import vae_geometry
from gf_diffusion.types import Model, Vae
from graphflow import Choice, Float, NodeContext, NodeResult, Outputs

from .clip_layers import default_layer
from .names import ComfyInput, comfy_node
from .types import Clip, ClipValue

STRENGTH = Float(-100.0, 100.0, step=0.01)


def _renamed(message: str | None, graphflow_name: str, comfy_name: str) -> str | None:
    """A graphflow check message pointed at ComfyUI's input name instead of graphflow's."""
    if message and message.startswith(f"{graphflow_name}: "):
        return f"{comfy_name}: " + message.removeprefix(f"{graphflow_name}: ")
    return message


@comfy_node(
    "CheckpointLoaderSimple",
    display_name="Load Checkpoint",
    category="loaders",
    inputs={"ckpt_name": ComfyInput(tooltip="The name of the checkpoint (model) to load.")},
    output_names=("MODEL", "CLIP", "VAE"),
)
def checkpoint_loader_simple(
    ckpt_name: Choice(loader.list_checkpoints), ctx: NodeContext = None
) -> Outputs(model=Model, clip=Clip, vae=Vae):
    """Loads a diffusion model checkpoint, diffusion models are used to denoise latents.

    Checkpoints of models/checkpoints (single files of SD 1.x, 2.x and SDXL, or diffusers
    folders) and graphflow's embedded graphflow-tiny, through graphflow's checkpoint loader
    (the family is detected, a resident model is reused). CLIP carries the text encoders
    and tokenizers, set to the layer ComfyUI encodes from by default for the family.
    """
    model, text_encoder, tokenizer, vae, _ = loader.load_checkpoint.function(
        checkpoint=ckpt_name,
        config="auto",
        dtype="auto",
        allow_pickle=False,
        attention="auto",
        ctx=ctx,
    )
    clip = ClipValue(text_encoder, tokenizer, default_layer(text_encoder))
    # KSampler remakes EmptyLatentImage's SD-shaped latent in this VAE's geometry.
    model = model.with_extras({"vae_geometry": vae_geometry(vae)})
    return model, clip, vae


@checkpoint_loader_simple.check
def _checkpoint_loadable(ckpt_name: str = "", **_) -> str | None:
    message = loader.load_checkpoint.check_function(
        checkpoint=ckpt_name, config="auto", allow_pickle=False
    )
    return _renamed(message, "checkpoint", "ckpt_name")


@checkpoint_loader_simple.fingerprint
def _checkpoint_version(ckpt_name: str = "", **_) -> object:
    return loader.load_checkpoint.fingerprint_function(checkpoint=ckpt_name)


@comfy_node(
    "LoraLoader",
    display_name="Load LoRA",
    category="loaders",
    inputs={
        "model": ComfyInput(tooltip="The diffusion model the LoRA will be applied to."),
        "clip": ComfyInput(tooltip="The CLIP model the LoRA will be applied to."),
        "lora_name": ComfyInput(tooltip="The name of the LoRA."),
        "strength_model": ComfyInput(
            tooltip="How strongly to modify the diffusion model. This value can be negative."
        ),
        "strength_clip": ComfyInput(
            tooltip="How strongly to modify the CLIP model. This value can be negative."
        ),
    },
    output_names=("MODEL", "CLIP"),
)
def lora_loader(
    model: Model,
    clip: Clip,
    lora_name: Choice(lora.list_loras),
    strength_model: STRENGTH = 1.0,
    strength_clip: STRENGTH = 1.0,
) -> Outputs(model=Model, clip=Clip):
    """LoRAs are used to modify diffusion and CLIP models, altering the way in which latents
    are denoised such as applying styles. Multiple LoRA nodes can be linked together.

    graphflow's LoRA loader (kohya/A1111, PEFT, LoCon, LoHa, LoKr, full diffs): the changes
    go on the model's and text encoders' patch stacks, the loaded models are never changed.
    With both strengths 0 the inputs are returned as they are and the file is not read.
    """
    if strength_model == 0 and strength_clip == 0:
        return model, clip
    patched, text_encoder, ui = lora.apply_lora(
        lora_name, model, clip.text_encoder, strength_model, strength_clip, False
    )
    return NodeResult((patched, replace(clip, text_encoder=text_encoder)), ui=ui)


@comfy_node(
    "LoraLoaderModelOnly",
    display_name="LoraLoaderModelOnly",
    category="loaders",
    output_names=("MODEL",),
)
def lora_loader_model_only(
    model: Model,
    lora_name: Choice(lora.list_loras),
    strength_model: STRENGTH = 1.0,
    ctx: NodeContext = None,
) -> Model:
    """Apply a LoRA's diffusion-model layers only (its text-encoder layers are left out).

    graphflow's LoRA loader; strength 0 returns the model as it is without reading the file.
    """
    if strength_model == 0:
        return model
    return lora.load_lora_model_only.function(model, lora_name, strength_model, False, ctx)


def _lora_loadable(lora_name: str = "", **_) -> str | None:
    return _renamed(
        lora.load_lora.check_function(lora=lora_name, allow_pickle=False), "lora", "lora_name"
    )


def _lora_version(lora_name: str = "", **_) -> object:
    return lora.load_lora.fingerprint_function(lora=lora_name)


for _spec in (lora_loader, lora_loader_model_only):
    _spec.check(_lora_loadable)
    _spec.fingerprint(_lora_version)


@comfy_node("VAELoader", display_name="Load VAE", category="loaders", output_names=("VAE",))
def vae_loader(vae_name: Choice(component_loaders.list_vae_files), ctx: NodeContext = None) -> Vae:
    """Load a VAE alone from models/vae, to decode and encode in place of a checkpoint's.

    graphflow's VAE loader: a single file in the original or diffusers layout, or a
    diffusers AutoencoderKL folder; the latent scaling (SD 1.x/2.x or SDXL) is read from
    the file. ComfyUI's ``pixel_space`` and TAESD choices are not offered.
    """
    return component_loaders.load_vae_handle(ctx, vae_name)


@vae_loader.check
def _vae_loadable(vae_name: str = "", **_) -> str | None:
    return component_loaders.load_vae.check_function(vae_name=vae_name, allow_pickle=False)


@vae_loader.fingerprint
def _vae_version(vae_name: str = "", **_) -> object:
    return component_loaders.load_vae.fingerprint_function(vae_name=vae_name)


NODES = [checkpoint_loader_simple, lora_loader, lora_loader_model_only, vae_loader]
