"""Load checkpoint: a diffusers folder or a single-file Stable Diffusion checkpoint, local only.

Besides the models folder, the embedded graphflow-tiny model (``embedded.py``) is always
offered (through the engine's :class:`~graphflow.runtime.catalog.ModelCatalog`), so a fresh
installation can make images without any download. What a diffusers folder looks like
(``model_index.json``) is known here, not in the engine: :func:`is_diffusers_folder`.

The node returns handles (``graphflow.runtime.handles``): MODEL is the UNet's, VAE the VAE's,
TEXT_ENCODER holds one per encoder, so a patch on one component never touches another.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from graphflow import Boolean, Choice, NodeContext, Outputs, node
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.models import (
    ModelFileError,
    check_pickle_rule,
    file_version,
    list_models,
    models_dir,
    resolve_model_path,
)

from .configs import config_folder, family_tokenizers, is_shipped
from .detect import SUPPORTED, ConfigNeededError, checkpoint_family
from .embedded import embedded_checkpoints, is_embedded, load_embedded_components
from .types import Model, Scheduler, TextEncoder, Tokenizer, Vae
from .values import TextEncoders, Tokenizers

log = logging.getLogger("graphflow.diffusion")

CHECKPOINT_SUFFIXES = {".safetensors", ".ckpt", ".pt", ".pth"}
# Config choices naming a config shipped in this package (configs/<family>).
SHIPPED = "graphflow/"
# Shipped configs of one layout (SD 2.x ε and v): either may be chosen for the other's file.
SAME_LAYOUT = ({"sd2-512", "sd2-768-v"},)
DTYPES = ["auto", "fp32", "fp16", "bf16"]


def is_diffusers_folder(path: Path) -> bool:
    """True for a diffusers model folder (one holding a ``model_index.json``)."""
    return (path / "model_index.json").is_file()


CHECKPOINTS = ModelCatalog("checkpoints", CHECKPOINT_SUFFIXES, is_model_folder=is_diffusers_folder)
CHECKPOINTS.bundle(embedded_checkpoints)


def list_checkpoints() -> list[str]:
    """Checkpoints in models/checkpoints (diffusers folders and single files), then embedded."""
    return CHECKPOINTS.names()


def checkpoint_label(name: str) -> str | None:
    """The dropdown label of a checkpoint: its detected family ("SD 1.x", "SDXL base",
    "graphflow-tiny (embedded)"), read from headers only and cached by file version."""
    from .model_listing import choice_label

    return choice_label(checkpoint_path(name))


def _models_folder_checkpoints() -> list[str]:
    return list_models("checkpoints", CHECKPOINT_SUFFIXES, is_model_folder=is_diffusers_folder)


def checkpoint_path(name: str) -> Path:
    """The path of checkpoint ``name``: in models/checkpoints, else an embedded model.

    A models-folder checkpoint of the same name wins, so a user can replace the embedded one.
    """
    return CHECKPOINTS.path(name)


def list_configs() -> list[str]:
    """Config choices for single-file checkpoints: "auto" (detected), a diffusers folder of
    the models folder, or one shipped with graphflow ("graphflow/sd2-512", ...)."""
    folders = [n for n in _models_folder_checkpoints() if not Path(n).suffix]
    listed = list_models("configs", (), is_model_folder=is_diffusers_folder)
    shipped = [SHIPPED + kind.config for kind in SUPPORTED]
    return ["auto", *folders, *(f"configs/{n}" for n in listed), *shipped]


def _torch_dtype(name: str, device: str, default: Any) -> Any:
    import torch

    if name == "auto":
        return default
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _check_shipped_choice(checkpoint: Path, name: str, allow_pickle: bool) -> None:
    """Refuse a shipped config chosen for a file of another family (before the load)."""
    kind = checkpoint_family(checkpoint, allow_pickle=allow_pickle)
    if kind.config == name or any({kind.config, name} <= same for same in SAME_LAYOUT):
        return
    raise ConfigNeededError(
        f"{checkpoint.name} is {kind.label}, which {SHIPPED}{name} does not describe: "
        f"choose {SHIPPED}{kind.config} or auto"
    )


def _config_folder(checkpoint: Path, config: str, allow_pickle: bool = False) -> Path:
    """The diffusers folder that describes a single-file checkpoint's architecture.

    An explicit choice wins, then a folder beside the file (``name/`` or ``name.config/``),
    then the shipped config of the family detected from the file's keys and shapes.
    """
    if config.startswith(SHIPPED):
        name = config.removeprefix(SHIPPED)
        if name not in {kind.config for kind in SUPPORTED}:
            raise ConfigNeededError(f"graphflow ships no config named {name}")
        _check_shipped_choice(checkpoint, name, allow_pickle)
        return config_folder(name)
    if config != "auto":
        return (
            resolve_model_path("checkpoints", config)
            if not config.startswith("configs/")
            else resolve_model_path("configs", config.removeprefix("configs/"))
        )
    for candidate in (
        checkpoint.with_suffix(""),
        checkpoint.with_name(checkpoint.stem + ".config"),
    ):
        if is_diffusers_folder(candidate):
            return candidate
    try:
        kind = checkpoint_family(checkpoint, allow_pickle=allow_pickle)
    except ConfigNeededError as error:
        raise ConfigNeededError(
            f"{error}: put one at {checkpoint.with_suffix('')} or in {models_dir() / 'configs'} "
            "and choose it as the loader's config"
        ) from error
    log.info("%s: detected %s", checkpoint.name, kind.label)
    return config_folder(kind.config)


def load_pipeline_components(
    path: Path, config: str, torch_dtype: Any, allow_pickle: bool = False
) -> dict[str, Any]:
    """Load a checkpoint's components on the CPU with diffusers (never touching the network)."""
    import diffusers
    import transformers

    # Their per-file loading bars would interleave with graphflow's own node progress.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    if is_embedded(path):
        return load_embedded_components(path, torch_dtype)
    if path.is_dir():
        pipe = diffusers.DiffusionPipeline.from_pretrained(
            path, local_files_only=True, dtype=torch_dtype
        )
    else:
        folder = _config_folder(path, config, allow_pickle)
        # A shipped config holds tokenizer settings only; the BPE files are built from ours.
        tokenizers = family_tokenizers(folder) if is_shipped(folder) else {}
        class_name = json.loads((folder / "model_index.json").read_text())["_class_name"]
        pipeline_class = getattr(diffusers, class_name, None)
        if pipeline_class is None or not hasattr(pipeline_class, "from_single_file"):
            raise ModelFileError(f"{class_name} pipelines cannot be loaded from a single file")
        pipe = pipeline_class.from_single_file(
            str(path), config=str(folder), local_files_only=True, dtype=torch_dtype, **tokenizers
        )
    return dict(pipe.components)


ATTENTION = {"auto": None, "graphflow": True, "diffusers": False}


def _set_attention(components: dict[str, Any], attention: str) -> None:
    """Route attention through graphflow's kernels or diffusers' own processor.

    "auto" uses graphflow's (Triton on CUDA) when the model is on CUDA.
    """
    from .attention_processor import install_attention_processor

    for name in ("unet", "vae"):
        if components.get(name) is not None:
            install_attention_processor(components[name], enabled=ATTENTION[attention])


@node(
    "diffusion.load_checkpoint",
    category="diffusion/loaders",
    display_name="Load Checkpoint",
)
def load_checkpoint(
    checkpoint: Choice(list_checkpoints, labels=checkpoint_label),
    config: Choice(list_configs) = "auto",
    dtype: Choice(DTYPES) = "auto",
    allow_pickle: Boolean = False,
    attention: Choice(list(ATTENTION)) = "auto",
    ctx: NodeContext = None,
) -> Outputs(
    model=Model, text_encoder=TextEncoder, tokenizer=Tokenizer, vae=Vae, scheduler=Scheduler
):
    """Load a Stable Diffusion checkpoint from models/checkpoints.

    A diffusers folder (with model_index.json) or a single-file .safetensors checkpoint
    (SD 1.x, 2.x, SDXL, their inpainting models, SDXL refiner, InstructPix2Pix: the family
    is detected from the file and graphflow's shipped config used; a config folder chosen
    as ``config``, or beside the file, wins).
    Pickle files (.ckpt/.pt) load only with allow_pickle, and then weights-only. Loading the
    same checkpoint again reuses the model already in memory. attention picks graphflow's
    fused kernels ("auto": on CUDA) or diffusers' own attention, for this run.
    """
    path = checkpoint_path(checkpoint)
    device = ctx.device
    torch_dtype = _torch_dtype(dtype, device, ctx.dtype)

    def load() -> dict[str, Any]:
        components = load_pipeline_components(path, config, torch_dtype, allow_pickle)
        for component in components.values():
            if hasattr(component, "to") and hasattr(component, "parameters"):
                component.to(device)
                component.eval()
        _set_attention(components, attention)
        return components

    # The attention choice is part of the key: a resident model is never switched under the
    # feet of cached outputs that hold it.
    loaded = ctx.models.load(
        "checkpoint", path, load, config=config, dtype=dtype, attention=attention
    )
    present = loaded.components
    encoders = [loaded.component(k) for k in ("text_encoder", "text_encoder_2") if k in present]
    extras = loaded.extras
    tokenizers = [extras[k] for k in ("tokenizer", "tokenizer_2") if extras.get(k) is not None]
    return (
        loaded.component("unet"),  # its extras hold the scheduler, for samplers given a MODEL
        TextEncoders(encoders),
        Tokenizers(tokenizers),
        loaded.component("vae"),
        extras["scheduler"],
    )


@load_checkpoint.check
def _loadable(checkpoint: str, config: str, allow_pickle: bool, **_) -> str | None:
    refusal = check_pickle_rule(checkpoint, allow_pickle)
    if refusal:
        return f"checkpoint: {refusal}"
    if Path(checkpoint).suffix.lower() in CHECKPOINT_SUFFIXES:
        try:
            _config_folder(checkpoint_path(checkpoint), config, allow_pickle)
        except ConfigNeededError as error:
            return f"config: {error}"
        except ModelFileError as error:
            detected = config == "auto" or config.startswith(SHIPPED)  # the file was read
            return f"{'checkpoint' if detected else 'config'}: {error}"
    return None


@load_checkpoint.fingerprint
def _checkpoint_file_version(checkpoint: str, **_) -> tuple[int, int]:
    return file_version(checkpoint_path(checkpoint))


NODES = [load_checkpoint]
