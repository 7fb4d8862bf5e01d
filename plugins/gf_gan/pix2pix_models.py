"""Which pix2pix generator a state dict holds, and loading it (the original PyTorch release's
``unet_256`` / ``unet_128`` and ``resnet_9blocks`` / ``resnet_6blocks`` files, and ours).

The release (junyanz/pytorch-CycleGAN-and-pix2pix) saves its generators as plain state dicts
(``latest_net_G.pth``). Their keys spell the module nesting, which pix2pix_networks.py
reproduces:

* **U-Net**: the outermost level is ``model.model``; each level is a ``Sequential`` named
  ``model`` whose entry 1 (entry 3 in the outermost one) is the next level. So the first
  down-convolution is ``model.model.0.weight`` (ngf, in, 4, 4), the second level's
  ``model.model.1.model.1.weight``, the third's ``model.model.1.model.3.model.1.weight``…;
  the outermost up-convolution is ``model.model.3.weight`` (2·ngf, out, 4, 4). The number
  of levels is num_downs (8 for ``unet_256``: 256 pixels halve to 1).
* **ResNet**: ``model`` is one ``Sequential``: ``model.1`` the 7×7 convolution (ngf, in, 7, 7),
  ``model.4`` and ``model.7`` the stride-2 ones, ``model.10`` … the residual blocks
  (``model.10.conv_block.1.weight``), and the last 7×7 convolution 7 entries after the last
  block (``model.26`` with 9 blocks).

Batch norm (the release's pix2pix default) shows as ``.weight``/``.running_mean`` keys of the
norms (``model.model.1.model.2.*``, ``model.2.*``); instance norm (CycleGAN's default) has no
norm keys. Dropout has no weights: in a U-Net it cannot be seen (nor does it matter in eval
mode); in a ResNet block it shifts the second convolution from entry 5 to 6.

This module imports torch only when a generator is built or a file is read, so the plugin
loads without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from graphflow.runtime.models import ModelFileError, load_state_dict

UNET = "unet"
RESNET = "resnet"
PIX2PIX_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass(frozen=True)
class GeneratorLayout:
    """Which generator a state dict holds: enough to build it.

    ``depth`` is num_downs for a U-Net, the number of residual blocks for a ResNet.
    """

    architecture: str
    in_channels: int
    out_channels: int
    ngf: int
    depth: int
    norm: str
    dropout: bool = False
    padding: str = "reflect"

    @property
    def name(self) -> str:
        """The release's name for it: ``unet_256``, ``resnet_9blocks``..."""
        if self.architecture == UNET:
            return f"unet_{2**self.depth}"
        return f"resnet_{self.depth}blocks"

    @property
    def size_step(self) -> int:
        """Image sides must be multiples of this (2**num_downs, or 4)."""
        return 2**self.depth if self.architecture == UNET else 4

    @property
    def native_size(self) -> int:
        """The side the release trains this generator at (its crop size)."""
        return 2**self.depth if self.architecture == UNET else 256

    def describe(self) -> str:
        """One line: name, channels, width and norm."""
        return (
            f"{self.name} ({self.in_channels}→{self.out_channels} channels, ngf {self.ngf}, "
            f"{self.norm} norm{', dropout' if self.dropout else ''})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (for a model card or safetensors metadata)."""
        return asdict(self)

    def build(self) -> Any:
        """A freshly initialised generator (torch module) of this layout."""
        from .pix2pix_networks import ResnetGenerator, UnetGenerator

        if self.architecture == UNET:
            return UnetGenerator(
                self.in_channels, self.out_channels, self.depth, self.ngf, self.norm, self.dropout
            )
        return ResnetGenerator(
            self.in_channels,
            self.out_channels,
            self.ngf,
            self.norm,
            self.dropout,
            self.depth,
            self.padding,
        )


_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def clean_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """The generator's tensors: a DataParallel ``module.`` prefix removed, non-tensors
    (``_metadata``) dropped."""
    cleaned = {}
    for key, value in state.items():
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            cleaned[key.removeprefix("module.")] = value
    return cleaned


def _unet_layout(state: Mapping[str, Any]) -> GeneratorLayout:
    first = state["model.model.0.weight"]  # (ngf, in, 4, 4)
    ngf, in_channels = first.shape[:2]
    prefix, depth = "model.model.1.model.", 1
    while f"{prefix}3.model.1.weight" in state:  # a middle block: its inner block is entry 3
        prefix, depth = f"{prefix}3.model.", depth + 1
    if f"{prefix}3.weight" not in state:
        raise ModelFileError("its innermost U-Net block is missing (no up-convolution found)")
    # The outermost up-convolution is entry 3 of the outermost block: (2·ngf, out, 4, 4).
    last = state.get("model.model.3.weight")
    if last is None:
        raise ModelFileError("the outermost up-convolution model.model.3.weight is missing")
    norm = "batch" if "model.model.1.model.2.weight" in state else "instance"
    return GeneratorLayout(UNET, int(in_channels), int(last.shape[1]), int(ngf), depth + 1, norm)


def _resnet_layout(state: Mapping[str, Any]) -> GeneratorLayout:
    first = state["model.1.weight"]  # (ngf, in, 7, 7)
    ngf, in_channels = first.shape[:2]
    blocks = 0
    while any(k.startswith(f"model.{10 + blocks}.conv_block.") for k in state):
        blocks += 1
    if blocks == 0:
        raise ModelFileError("it has no residual blocks (model.10.conv_block.* keys)")
    block = "model.10.conv_block."
    padding = "zero" if f"{block}0.weight" in state else "reflect"
    offset = 0 if padding == "zero" else 1  # the second conv: entry 4/5 (zero) or 5/6 (padded)
    dropout = f"{block}{5 + offset}.weight" in state
    last = state.get(f"model.{10 + blocks + 7}.weight")
    if last is None:
        raise ModelFileError(f"the last convolution model.{10 + blocks + 7}.weight is missing")
    norm = "batch" if "model.2.weight" in state else "instance"
    layout = GeneratorLayout(
        RESNET, int(in_channels), int(last.shape[0]), int(ngf), blocks, norm, dropout, padding
    )
    return layout


def detect_layout(state: Mapping[str, Any]) -> GeneratorLayout:
    """The release generator whose keys these are (U-Net or ResNet), or ModelFileError
    saying what was expected and what was found."""
    try:
        if "model.model.0.weight" in state:
            return _unet_layout(state)
        if "model.1.weight" in state and "model.10.conv_block.1.weight" in state:
            return _resnet_layout(state)
        if "model.1.weight" in state and "model.10.conv_block.0.weight" in state:
            return _resnet_layout(state)
    except (KeyError, IndexError, ValueError) as error:
        raise ModelFileError(f"a damaged pix2pix generator ({error})") from None
    keys = sorted(state)
    shown = ", ".join(keys[:4]) + (f", … ({len(keys)} keys)" if len(keys) > 4 else "")
    raise ModelFileError(
        "not a pix2pix generator of the original PyTorch release (unet_256/unet_128: keys "
        "model.model.0.weight, model.model.1.model.1.weight, …; resnet_9blocks/resnet_6blocks: "
        f"model.1.weight, model.10.conv_block.1.weight, …); this file has {shown or 'no tensors'}"
    )


def _without_unused_norm_buffers(state: dict[str, Any], layout: GeneratorLayout) -> dict:
    """Drop instance-norm running statistics: old releases tracked them, but the generator
    (like the release's current code) normalises with each image's own."""
    if layout.norm != "instance":
        return state
    return {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in _NORM_BUFFERS}


def generator_from_state_dict(state: Mapping[str, Any]) -> tuple[Any, GeneratorLayout]:
    """The generator a release state dict describes, its weights loaded (eval mode, frozen)."""
    state = clean_state_dict(state)
    layout = detect_layout(state)
    state = _without_unused_norm_buffers(state, layout)
    generator = layout.build()
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelFileError(
            f"looks like a {layout.describe()} but its weights do not fit: "
            f"{_first_problem(str(error))}"
        ) from None
    generator.requires_grad_(False)
    return generator.eval(), layout


def _first_problem(message: str) -> str:
    """The first line of load_state_dict's complaint, shortened."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = lines[1] if len(lines) > 1 else (lines[0] if lines else message)
    return re.sub(r"\s+", " ", text)[:300]


def read_generator(path: Path, allow_pickle: bool = False) -> tuple[Any, GeneratorLayout]:
    """The generator in a weights file (safetensors, or an opted-in .pth read weights-only),
    or ModelFileError naming the file and what is wrong with it."""
    import pickle

    try:
        state = load_state_dict(Path(path), allow_pickle)
    except ModelFileError:
        raise
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{Path(path).name} is not a plain weights file: torch.load(weights_only=True) "
            f"refused it ({str(error).splitlines()[0][:200]}); graphflow never runs code from "
            "a pickle"
        ) from None
    except Exception as error:  # truncated or corrupt file
        raise ModelFileError(f"{Path(path).name} could not be read: {error}") from None
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{Path(path).name} holds a {type(state).__name__}, not a state dict")
    try:
        return generator_from_state_dict(state)
    except ModelFileError as error:
        raise ModelFileError(f"{Path(path).name}: {error}") from None


NODES = []
