"""Load a VAE or a UNet alone, from models/vae and models/diffusion_models (or unet).

A file here is one component: a single ``.safetensors`` in the original (LDM) layout, with or
without its checkpoint prefix, or in the diffusers layout; or a diffusers component folder
(``config.json`` + weights). diffusers' ``from_single_file`` reads the file against the
component config graphflow ships (``configs/<family>/vae`` or ``/unet``), so nothing is
downloaded and no converter of our own is involved. A full checkpoint put here works too:
its VAE or UNet is taken out of it.

The VAE handle plugs into ``diffusion.vae_decode`` / ``vae_encode`` in place of a
checkpoint's; the MODEL handle carries its family's shipped scheduler (``extras``) as
``diffusion.load_checkpoint``'s does. The text encoders are in ``text_encoder_loaders.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from graphflow import Boolean, Choice, NodeContext, node
from graphflow.runtime.models import ModelFileError, file_version, load_state_dict

from . import configs, detect
from .component_files import (
    ComponentFolders,
    cached_label,
    check_component_file,
    folder_config,
    unet_family,
    unet_shape,
    unet_shape_of_config,
)
from .loader import ATTENTION, DTYPES, _set_attention, _torch_dtype
from .types import Model, Vae

log = logging.getLogger("graphflow.diffusion")

VAES = ComponentFolders("vae")
DIFFUSION_MODELS = ComponentFolders("diffusion_models", "unet")
# The shipped VAE configs: kl-f8 for SD 1.x/2.x (scaling 0.18215) and SDXL's (0.13025).
VAE_CONFIGS = ["auto", "sd1", "sdxl"]


def list_vae_files() -> list[str]:
    """Files and diffusers VAE folders in models/vae, sorted."""
    return VAES.names()


def list_diffusion_models() -> list[str]:
    """Files and diffusers UNet folders in models/diffusion_models, then models/unet."""
    return DIFFUSION_MODELS.names()


def check_vae_file(path: Path, allow_pickle: bool) -> detect.Header | None:
    """The header of a kl-f8 VAE file graphflow reads (None for a folder); a one-line
    ModelFileError for a file of another folder or a VAE of another latent width."""
    check_component_file(path, "vae", {"vae"}, allow_pickle)
    if path.is_dir():
        return None
    header = detect.read_header(path, allow_pickle)
    conv = next(
        (header.shapes[k] for k in KL_F8_INPUT if k in header.shapes),
        None,
    )
    if conv is not None and len(conv) == 4 and conv[1] != 4:
        raise detect.UnsupportedModelError(
            f"{path.name} is a VAE with {conv[1]} latent channels (SD3/Flux-style), which "
            "graphflow does not run yet (supported: the 4-channel SD 1.x/2.x and SDXL VAEs)"
        )
    return header


# Where a VAE's decoder takes its latent: how many channels it has.
KL_F8_INPUT = ("decoder.conv_in.weight", "first_stage_model.decoder.conv_in.weight")


def _describe_vae(path: Path) -> str:
    header = check_vae_file(path, False)
    if header is None:
        return "diffusers VAE"
    config = vae_config_name(path, header)
    return "VAE, SDXL scaling" if config == "sdxl" else "VAE, SD 1.x/2.x scaling"


def vae_label(name: str) -> str | None:
    """The dropdown label of a VAE: which latent scaling auto reads it with (headers only)."""
    return cached_label(VAES.path(name), _describe_vae)


def _describe_unet(path: Path) -> str:
    if not path.is_dir():
        check_component_file(path, "diffusion_models", {"unet"}, False)
    return f"{diffusion_model_family(path).label} UNet"


def diffusion_model_label(name: str) -> str | None:
    """The dropdown label of a UNet file or folder: its detected family (headers only)."""
    return cached_label(DIFFUSION_MODELS.path(name), _describe_unet)


def _quiet() -> None:
    import diffusers

    diffusers.utils.logging.disable_progress_bar()


def vae_config_name(path: Path, header: detect.Header) -> str:
    """Which shipped VAE config a VAE file is read with: "sdxl" for an SDXL checkpoint or a
    file whose name or ``modelspec.architecture`` says XL, else "sd1" (SD 1.x/2.x kl-f8).

    The two VAEs have the same layout; only the latent scaling differs, so the weights
    cannot tell them apart (the node's ``config`` choice overrides this rule).
    """
    kind = detect.detect(header)
    if kind is not None and kind.config:
        return "sdxl" if kind.config.startswith("sdxl") else "sd1"
    architecture = header.metadata.get("modelspec.architecture", "").lower()
    return "sdxl" if "xl" in path.stem.lower() or "xl" in architecture else "sd1"


def _read_vae(path: Path, config: str, torch_dtype: Any, allow_pickle: bool) -> Any:
    from diffusers import AutoencoderKL

    _quiet()
    if path.is_dir():
        return AutoencoderKL.from_pretrained(str(path), local_files_only=True, dtype=torch_dtype)
    if config == "auto":
        config = vae_config_name(path, detect.read_header(path, allow_pickle))
    state = load_state_dict(path, allow_pickle)
    if not any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in state):
        raise ModelFileError(f"{path.name} holds no VAE encoder/decoder weights")
    return AutoencoderKL.from_single_file(
        state,
        config=str(configs.config_folder(config)),
        subfolder="vae",
        local_files_only=True,
        dtype=torch_dtype,
    )


def load_vae_handle(
    ctx: NodeContext,
    name: str,
    dtype: str = "auto",
    config: str = "auto",
    allow_pickle: bool = False,
    attention: str = "auto",
) -> Any:
    """The VAE handle of ``name`` in models/vae (loaded once, then the resident one)."""
    path = VAES.path(name)
    check_vae_file(path, allow_pickle)
    torch_dtype = _torch_dtype(dtype, ctx.device, ctx.dtype)
    device = ctx.device

    def load() -> dict[str, Any]:
        loaded = {"vae": _read_vae(path, config, torch_dtype, allow_pickle).to(device).eval()}
        _set_attention(loaded, attention)
        return loaded

    loaded = ctx.models.load("vae", path, load, dtype=dtype, config=config, attention=attention)
    return loaded.component("vae")


@node("diffusion.load_vae", category="diffusion/loaders", display_name="Load VAE")
def load_vae(
    vae_name: Choice(list_vae_files, labels=vae_label),
    config: Choice(VAE_CONFIGS) = "auto",
    dtype: Choice(DTYPES) = "auto",
    allow_pickle: Boolean = False,
    attention: Choice(list(ATTENTION)) = "auto",
    ctx: NodeContext = None,
) -> Vae:
    """Load a VAE alone from models/vae, to decode and encode in place of a checkpoint's.

    A single file in the original layout (``encoder.down.0...``, also inside a full
    checkpoint's ``first_stage_model.``) or the diffusers layout, or a diffusers
    AutoencoderKL folder. config picks the latent scaling: sd1 (SD 1.x/2.x) or sdxl;
    auto reads it from the file (an SDXL checkpoint, "xl" in its name or metadata).
    Pickle files load only with allow_pickle, weights-only; attention as Load Checkpoint's.
    """
    return load_vae_handle(ctx, vae_name, dtype, config, allow_pickle, attention)


@load_vae.check
def _vae_loadable(vae_name: str, allow_pickle: bool = False, **_) -> str | None:
    try:
        check_vae_file(VAES.path(vae_name), allow_pickle)
    except ModelFileError as error:
        return f"vae_name: {error}"
    return None


@load_vae.fingerprint
def _vae_file_version(vae_name: str, **_) -> tuple[int, int]:
    return file_version(VAES.path(vae_name))


# --- the UNet alone ---------------------------------------------------------------------

UNET_CONFIGS = ["auto", *(kind.config for kind in detect.SUPPORTED)]


def diffusion_model_family(path: Path, allow_pickle: bool = False) -> detect.Kind:
    """The supported family of a UNet file or diffusers UNet folder (one-line
    ModelFileError when it is none)."""
    if path.is_dir():
        return unet_family(unet_shape_of_config(folder_config(path)), {}, path.name)
    header = detect.read_header(path, allow_pickle)
    return unet_family(unet_shape(header), dict(header.metadata), path.name)


def _chosen_family(path: Path, config: str, allow_pickle: bool) -> str:
    if config != "auto":
        return config
    return diffusion_model_family(path, allow_pickle).config


def _ldm_prefixed(state: dict[str, Any]) -> dict[str, Any]:
    """A bare LDM UNet (``input_blocks.0.0.weight``...) under the checkpoint prefix that
    diffusers' converter looks for; other layouts as they are."""
    if "input_blocks.0.0.weight" in state:
        return {detect.UNET + k: v for k, v in state.items()}
    return state


def family_scheduler(family: str) -> Any:
    """A fresh scheduler from the shipped ``configs/<family>/scheduler`` config."""
    import diffusers

    folder = configs.config_folder(family) / "scheduler"
    settings = json.loads((folder / "scheduler_config.json").read_text())
    return getattr(diffusers, settings["_class_name"]).from_config(settings)


def _read_unet(path: Path, family: str, torch_dtype: Any, allow_pickle: bool) -> Any:
    from diffusers import UNet2DConditionModel

    _quiet()
    if path.is_dir():
        return UNet2DConditionModel.from_pretrained(
            str(path), local_files_only=True, dtype=torch_dtype
        )
    state = _ldm_prefixed(load_state_dict(path, allow_pickle))
    return UNet2DConditionModel.from_single_file(
        state,
        config=str(configs.config_folder(family)),
        subfolder="unet",
        local_files_only=True,
        dtype=torch_dtype,
    )


@node(
    "diffusion.load_diffusion_model",
    category="diffusion/loaders",
    display_name="Load Diffusion Model",
)
def load_diffusion_model(
    unet_name: Choice(list_diffusion_models, labels=diffusion_model_label),
    config: Choice(UNET_CONFIGS) = "auto",
    dtype: Choice(DTYPES) = "auto",
    allow_pickle: Boolean = False,
    attention: Choice(list(ATTENTION)) = "auto",
    ctx: NodeContext = None,
) -> Model:
    """Load a UNet alone from models/diffusion_models (or models/unet).

    A single file in the original layout (``model.diffusion_model.`` keys, or the same keys
    without the prefix) or the diffusers layout, or a diffusers UNet2DConditionModel
    folder. The family (SD 1.x, 2.x, SDXL, their inpainting models, SDXL refiner) is
    detected from the weights' layout and sizes and its shipped config and scheduler used;
    config overrides it. Pickle files load only with allow_pickle, weights-only; attention
    picks graphflow's fused kernels ("auto": on CUDA) or diffusers' own, as Load Checkpoint.
    """
    path = DIFFUSION_MODELS.path(unet_name)
    family = _chosen_family(path, config, allow_pickle)
    torch_dtype = _torch_dtype(dtype, ctx.device, ctx.dtype)
    device = ctx.device

    def load() -> dict[str, Any]:
        unet = _read_unet(path, family, torch_dtype, allow_pickle)
        log.info("%s: loaded as the %s UNet", path.name, family)
        loaded = {"unet": unet.to(device).eval(), "scheduler": family_scheduler(family)}
        _set_attention(loaded, attention)
        return loaded

    options = {"dtype": dtype, "config": family, "attention": attention}
    loaded = ctx.models.load("diffusion_model", path, load, **options)
    return loaded.component("unet")  # its extras hold the scheduler, as a checkpoint's


@load_diffusion_model.check
def _unet_loadable(unet_name: str, config: str = "auto", allow_pickle=False, **_) -> str | None:
    try:
        path = DIFFUSION_MODELS.path(unet_name)
        check_component_file(path, "diffusion_models", {"unet"}, allow_pickle)
        _chosen_family(path, config, allow_pickle)
    except ModelFileError as error:
        return f"unet_name: {error}"
    return None


@load_diffusion_model.fingerprint
def _unet_file_version(unet_name: str, **_) -> tuple[int, int]:
    return file_version(DIFFUSION_MODELS.path(unet_name))


NODES = [load_vae, load_diffusion_model]
