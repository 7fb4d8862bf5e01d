"""pix2pix nodes: load a generator, translate images with it (Isola et al. 2017).

``gan.load_pix2pix`` offers the generator files users bring in ``models/pix2pix/`` (the
original PyTorch release's ``latest_net_G.pth`` of a ``unet_256``/``unet_128`` or
``resnet_9blocks``/``resnet_6blocks`` generator, or the same weights as ``.safetensors``) and
graphflow's own model, ``bundled/pix2pix-fashion-edges`` (Fashion-MNIST edge maps → items,
trained by scripts/train_pix2pix.py; see its MODEL_CARD in embedded/). The architecture is
read from the keys (pix2pix_models.py); anything else is refused with a message saying what
was expected. ``.pth`` files are pickles: read only with ``allow_pickle`` (or the
``allow_pickle`` setting), and then weights-only.

``gan.pix2pix_translate`` maps an image to the model's domain: 0..1 pixels to the generator's
-1..1, resized to the size the generator works at, and back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from graphflow import Boolean, Choice, Image, NodeContext, node
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.handles import ModelHandle, compute_device
from graphflow.runtime.models import check_pickle_rule, file_version

from .pix2pix_models import PIX2PIX_SUFFIXES, GeneratorLayout, read_generator
from .pix2pix_types import PIX2PIX_MODEL_TYPE, Pix2PixModel

log = logging.getLogger("graphflow.gan.pix2pix")

PIX2PIX_FOLDER = "pix2pix"
EMBEDDED_NAME = "bundled/pix2pix-fashion-edges"
EMBEDDED_WEIGHTS = (
    Path(__file__).resolve().parent
    / "embedded"
    / "pix2pix-fashion-edges"
    / "pix2pix-fashion-edges.safetensors"
)
MODEL_SIZE = "model's size"
NEAREST_MULTIPLE = "nearest multiple"
SIZES = [MODEL_SIZE, NEAREST_MULTIPLE]
OUTPUT_SIZES = ["input's size", "model's size"]
MODEL_DEFAULT = "model default"
RUNNING_AVERAGES = "running averages"
OWN_STATISTICS = "each image's own"
STATISTICS = [MODEL_DEFAULT, RUNNING_AVERAGES, OWN_STATISTICS]

PIX2PIX_MODELS = ModelCatalog(PIX2PIX_FOLDER, PIX2PIX_SUFFIXES)
PIX2PIX_MODELS.bundle({EMBEDDED_NAME: EMBEDDED_WEIGHTS})


def list_pix2pix_models() -> list[str]:
    """Generator files in models/pix2pix (.safetensors, .pth, .pt), then our own model."""
    return PIX2PIX_MODELS.names()


def pix2pix_model_path(name: str) -> Path:
    """The file of generator ``name`` (a models-folder file wins over the bundled one)."""
    return PIX2PIX_MODELS.path(name)


def load_pix2pix_model(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """{"generator": the network (eval, frozen, CPU), "layout": its GeneratorLayout,
    "statistics": how its batch norms normalise by default}.

    Our own model was evaluated with its running averages; the release's models were tested
    as the paper says, with each test image's own statistics (its test.py runs without
    ``--eval``), so that is their default.
    """
    generator, layout = read_generator(path, allow_pickle)
    own = Path(path).resolve() == EMBEDDED_WEIGHTS
    statistics = RUNNING_AVERAGES if own or layout.norm != "batch" else OWN_STATISTICS
    return {"generator": generator, "layout": layout, "statistics": statistics}


@node("gan.load_pix2pix", category="gan/pix2pix", display_name="Load Pix2Pix Generator")
def load_pix2pix(
    model_name: Choice(list_pix2pix_models) = EMBEDDED_NAME,
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> Pix2PixModel:
    """Load a pix2pix generator: one of yours from models/pix2pix, or our Fashion-MNIST one.

    Yours: the original PyTorch release's generator files (pytorch-CycleGAN-and-pix2pix,
    latest_net_G.pth of unet_256, unet_128, resnet_9blocks or resnet_6blocks, batch or
    instance norm), recognised from their keys. .pth files are pickles: they load only with
    allow_pickle, and then weights-only; a .safetensors copy needs no opt-in. The default,
    bundled/pix2pix-fashion-edges, turns 32×32 edge maps into Fashion-MNIST items in the
    edges' colour.
    """
    path = pix2pix_model_path(model_name)
    if ctx is None:
        return ModelHandle.of(load_pix2pix_model(path, allow_pickle), "pix2pix generator")
    return ctx.models.load("pix2pix", path, lambda: load_pix2pix_model(path, allow_pickle))


@load_pix2pix.check
def _pickle_opt_in(model_name: str = EMBEDDED_NAME, allow_pickle: bool = False, **_) -> str | None:
    refusal = check_pickle_rule(model_name, allow_pickle)
    return f"model_name: {refusal}" if refusal else None


@load_pix2pix.fingerprint
def _generator_file_version(model_name: str = EMBEDDED_NAME, **_) -> tuple:
    return file_version(pix2pix_model_path(model_name))


def working_size(height: int, width: int, layout: GeneratorLayout, resize: str) -> tuple:
    """(height, width) the generator runs at: its training size (square, as the release's
    test script resizes), or each side rounded to the nearest multiple it accepts."""
    if resize == MODEL_SIZE:
        return layout.native_size, layout.native_size
    if resize != NEAREST_MULTIPLE:
        raise ValueError(f"resize must be one of {', '.join(SIZES)} (got {resize!r})")
    step = layout.size_step
    return tuple(max(step, round(side / step) * step) for side in (height, width))


def _resized(planes: Any, size: tuple) -> Any:
    """(B, C, h, w) resized bilinearly (antialiased when shrinking) to ``size``."""
    import torch.nn.functional as F

    if tuple(planes.shape[-2:]) == tuple(size):
        return planes
    return F.interpolate(planes, size=size, mode="bilinear", align_corners=False, antialias=True)


def _model_input(image: Any, in_channels: int) -> Any:
    """(B, H, W, C) 0..1 → (B, in_channels, H, W) -1..1 (grey from RGB by Rec. 601 luma, RGB
    from grey by repetition; alpha dropped)."""
    import torch

    pixels = image.float()
    rgb = pixels[..., :3] if pixels.shape[-1] >= 3 else pixels[..., :1].expand(*pixels.shape[:3], 3)
    planes = rgb.permute(0, 3, 1, 2)
    if in_channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114], device=planes.device).view(1, 3, 1, 1)
        planes = (planes * luma).sum(1, keepdim=True)
    elif in_channels != 3:
        raise ValueError(f"pix2pix generators with {in_channels} input channels are not supported")
    return planes * 2 - 1


def translate(
    handle: ModelHandle,
    image: Any,
    resize: str = MODEL_SIZE,
    statistics: str = MODEL_DEFAULT,
    output_size: str = OUTPUT_SIZES[0],
    ctx: NodeContext | None = None,
) -> Any:
    """``image`` (B, H, W, C) in 0..1 through the generator of ``handle``; (B, h, w, 3) out."""
    import torch

    from .pix2pix_networks import input_statistics

    layout: GeneratorLayout = handle.extras["layout"]
    if statistics == MODEL_DEFAULT:
        statistics = handle.extras["statistics"]
    batch, height, width = image.shape[:3]
    size = working_size(height, width, layout, resize)
    if size != (height, width):
        log.info("pix2pix: %d×%d resized to %d×%d for %s", width, height, *size[::-1], layout.name)
    # The paper's test-time rule normalises each image by itself: one image per pass then.
    own = statistics == OWN_STATISTICS and layout.norm == "batch"
    chunk = 1 if own else max(1, batch)
    outputs = []
    part = handle.component("generator")
    with part.on_device(compute_device(part, ctx)) as generator:
        device = next(generator.parameters()).device
        for start in range(0, batch, chunk):
            if ctx is not None:
                ctx.check_interrupt()
            planes = _model_input(image[start : start + chunk].to(device), layout.in_channels)
            with torch.inference_mode(), input_statistics(own):
                result = generator(_resized(planes, size))
            result = ((result.float() + 1) / 2).clamp(0, 1)
            if output_size == OUTPUT_SIZES[0]:
                result = _resized(result, (height, width)).clamp(0, 1)
            outputs.append(result.expand(-1, 3, -1, -1).permute(0, 2, 3, 1))
            if ctx is not None:
                ctx.progress(min(start + chunk, batch), batch)
    return torch.cat(outputs).to(image.device).contiguous()


@node("gan.pix2pix_translate", category="gan/pix2pix", display_name="Pix2Pix Translate")
def pix2pix_translate(
    model: Pix2PixModel,
    image: Image,
    resize: Choice(SIZES) = MODEL_SIZE,
    output_size: Choice(OUTPUT_SIZES) = OUTPUT_SIZES[0],
    statistics: Choice(STATISTICS) = MODEL_DEFAULT,
    ctx: NodeContext = None,
) -> Image:
    """Translate images with a pix2pix generator (edges → item, labels → photo, …).

    Note the size: a generator works at the size it was trained at. "model's size" resizes
    each image to it (square: 256×256 for the release's models, 32×32 for our Fashion-MNIST
    one), as the release's test script does; "nearest multiple" keeps the aspect ratio and
    rounds each side to a multiple the network accepts (256 for unet_256, 4 for a ResNet).
    The result is resized back to the input's size, or kept at the model's with output_size.
    Pixels go from 0..1 to the generator's -1..1 and back.

    statistics: how batch norms normalise. The paper (and the release's test script)
    normalises each test image by its own statistics; our model uses the running averages it
    learnt. "model default" picks what each model was evaluated with.
    """
    return translate(model, image, resize, statistics, output_size, ctx)


PORT_TYPES = (PIX2PIX_MODEL_TYPE,)
NODES = [load_pix2pix, pix2pix_translate]
