"""Component files (a VAE, a text encoder or a UNet alone): folders, detection, wrong files.

What the separate loaders (``component_loaders.py``, ``text_encoder_loaders.py``) share:

- the models sub-folders each one lists (``vae/``; ``text_encoders/`` then ``clip/``;
  ``diffusion_models/`` then ``unet/``, as ComfyUI merges them), through the engine's
  :class:`~graphflow.runtime.catalog.ModelCatalog` (links, ``extra_models``, ``model_paths``);
- the check that a file is of the folder's kind, built on ``detect.py``'s declarations: a
  LoRA put in ``vae/`` is told it belongs in ``models/loras/``;
- which shipped family a UNet alone is, from structure first (SDXL's added embedding,
  SD 2.x's linear attention projections, the input channels) and the shipped sizes second,
  so the rule reads the same at full size and in the tests' tiny models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.models import ModelFileError, check_pickle_rule

from . import detect
from .detect import UNET, ConfigNeededError, Header, WrongFolderError

COMPONENT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def is_component_folder(path: Path) -> bool:
    """True for a diffusers/transformers component folder (one holding a ``config.json``)."""
    return (path / "config.json").is_file()


class ComponentFolders:
    """One loader's models sub-folders, the first one's names winning over the later ones'."""

    def __init__(self, *folders: str):
        self.catalogs = [
            ModelCatalog(f, COMPONENT_SUFFIXES, is_model_folder=is_component_folder)
            for f in folders
        ]
        self.folder = folders[0]

    def names(self) -> list[str]:
        """Every listed file or component folder, sorted per sub-folder, first folder first."""
        found: list[str] = []
        for catalog in self.catalogs:
            found += [n for n in catalog.names() if n not in found]
        return found

    def path(self, name: str) -> Path:
        """Where ``name`` is: the first sub-folder holding it (ModelFileError if none)."""
        for catalog in self.catalogs[1:]:
            if not self.catalogs[0].in_models_folder(name) and catalog.in_models_folder(name):
                return catalog.path(name)
        return self.catalogs[0].path(name)


def check_component_file(path: Path, folder: str, accepted: set[str], allow_pickle: bool) -> str:
    """What a file in ``models/<folder>`` is, or a one-line ModelFileError naming its folder.

    ``accepted`` names the :data:`detect.KINDS` the loader takes; a supported checkpoint
    (its component is taken out of it) and a file detect does not know are accepted too, so
    the loader's own reading says what is missing. Returns the detected kind name ("" if
    unknown).
    """
    refusal = check_pickle_rule(path.name, allow_pickle)
    if path.is_dir():
        pickled = next(iter(sorted(path.glob("*.bin"))), None)
        if pickled is not None and not any(path.glob("*.safetensors")):
            refusal = check_pickle_rule(f"{path.name}/{pickled.name}", allow_pickle)
    if refusal:
        raise ModelFileError(refusal)
    if path.is_dir():
        return "folder"
    kind = detect.detect(detect.read_header(path, allow_pickle))
    if kind is None or kind.name in accepted or kind.config is not None:
        return kind.name if kind else ""
    raise WrongFolderError(
        f"{path.name} is a {kind.label}, not a {folder.rstrip('s').replace('_', ' ')} file: "
        f"it belongs in models/{kind.folder}/, not models/{folder}/"
    )


# --- which family a UNet alone is -----------------------------------------------------


@dataclass(frozen=True)
class UNetShape:
    """What tells SD UNets apart: widths, input channels, context width, layout details."""

    width: int
    in_channels: int
    context: int | None
    linear_projection: bool
    added_embedding: bool


def _first(h: Header, suffix: str) -> tuple[int, ...] | None:
    return next((s for k, s in h.shapes.items() if k.endswith(suffix)), None)


def unet_shape(h: Header) -> UNetShape:
    """The :class:`UNetShape` of a UNet state dict in the LDM (with or without the
    ``model.diffusion_model.`` prefix) or the diffusers layout."""
    conv_in = (
        h.shapes.get(detect.CONV_IN)
        or h.shapes.get("input_blocks.0.0.weight")
        or h.shapes.get("conv_in.weight")
    )
    if conv_in is None or len(conv_in) != 4:
        raise ModelFileError("no UNet input convolution (input_blocks.0.0 / conv_in) in it")
    context = _first(h, ".attn2.to_k.weight")
    proj_in = _first(h, ".proj_in.weight")
    return UNetShape(
        width=conv_in[0],
        in_channels=conv_in[1],
        context=context[1] if context else None,
        linear_projection=proj_in is not None and len(proj_in) == 2,
        added_embedding=any(
            k.startswith(("label_emb.", UNET + "label_emb.", "add_embedding.")) for k in h.shapes
        ),
    )


def unet_shape_of_config(config: dict[str, Any]) -> UNetShape:
    """The :class:`UNetShape` a diffusers UNet2DConditionModel config describes."""
    context = config.get("cross_attention_dim")
    return UNetShape(
        width=config["block_out_channels"][0],
        in_channels=config["in_channels"],
        context=context if isinstance(context, int) else None,
        linear_projection=bool(config.get("use_linear_projection")),
        added_embedding=config.get("addition_embed_type") == "text_time",
    )


INPAINT_NAMES = {9: "inpainting", 8: "instruct-pix2pix"}


def _family_name(shape: UNetShape, metadata: dict[str, str]) -> str:
    variant = INPAINT_NAMES.get(shape.in_channels)
    if shape.added_embedding:
        refiner = shape.width == 384 or shape.context == 1280
        return "sdxl-refiner" if refiner else "sdxl" + (f"-{variant}" if variant else "")
    if shape.linear_projection:
        if variant:
            return f"sd2-{variant}"
        header = Header({}, {}, metadata)
        return "sd2-512" if detect.sd2_is_epsilon(header) else "sd2-768-v"
    return "sd1" + (f"-{variant}" if variant else "")


def unet_family(shape: UNetShape, metadata: dict[str, str], name: str) -> detect.Kind:
    """The supported family of a UNet alone; ConfigNeededError when its sizes are not the
    shipped config's (or no family has its layout)."""
    family = _family_name(shape, metadata)
    kind = next((k for k in detect.KINDS if k.name == family and k.config), None)
    if kind is None:
        raise ConfigNeededError(f"{name} is a UNet graphflow ships no config for ({family})")
    sizes = kind.sizes or {}
    expected = sizes.get(detect.CONV_IN)
    context = sizes.get(detect.CONTEXT)
    wrong = []
    if expected and (shape.width, shape.in_channels) != tuple(expected[:2]):
        wrong.append(f"input convolution {shape.width}×{shape.in_channels}")
    if context and shape.context not in (None, context[1]):
        wrong.append(f"text context width {shape.context}")
    if wrong:
        raise ConfigNeededError(
            f"{name} is laid out like the {kind.label} UNet but its sizes differ "
            f"({', '.join(wrong)}); put a diffusers UNet folder (config.json) in its place"
        )
    return kind


def folder_config(path: Path) -> dict[str, Any]:
    """The ``config.json`` of a component folder."""
    return json.loads((path / "config.json").read_text())


_LABELS: dict[tuple, str | None] = {}


def cached_label(path: Path, describe: Callable[[Path], str]) -> str | None:
    """A dropdown label from ``describe(path)`` (headers only), cached by file version; a
    file the loader refuses is labelled with the one-line reason, shortened."""
    from graphflow.runtime.models import PICKLE_SUFFIXES, file_version

    if path.suffix.lower() in PICKLE_SUFFIXES:
        return "pickle file"  # never opened for a label, whatever the opt-in
    key = (str(path), file_version(path), describe)
    if key not in _LABELS:
        try:
            _LABELS[key] = describe(path)
        except ModelFileError as error:
            text = str(error)
            _LABELS[key] = text[text.index("belongs in") :] if "belongs in" in text else "?"
    return _LABELS[key]
