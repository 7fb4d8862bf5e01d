"""ComfyUI's image class types: scaling (to a size or by a factor), inverting, blank images,
and upscale models, on graphflow's IMAGE tensors and gf_image's upscaler.

IMAGE is (B, H, W, C) floats in 0..1 in both projects. Scaling uses ComfyUI's rules
(``resample.py``: torch's interpolations as ComfyUI calls them, Lanczos-3 for "lanczos");
results are clipped to 0..1, where bicubic and lanczos may overshoot a little at hard edges
(ComfyUI clips them only when saving).
"""

from __future__ import annotations

from gf_diffusion.resample import CROP_METHODS, IMAGE_METHODS, common_upscale
from gf_image.io import MAX_PIXELS
from gf_image.types import UpscaleModel
from gf_image.upscale import list_upscale_models, load_upscale_model, upscale_with_model
from graphflow import Choice, Float, Image, Int, NodeContext
from graphflow.runtime.models import check_pickle_rule

from .names import ComfyInput, comfy_node

MAX_RESOLUTION = 16384


def scale_image(image, width: int, height: int, method: str, crop: str):
    """IMAGE resized to width × height by ComfyUI's rules, clipped to 0..1."""
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"scaling to {width}×{height} ({width * height / 1e6:.0f} MP) is refused; "
            f"images above {MAX_PIXELS / 1e6:.0f} MP are not made"
        )
    planes = image.movedim(-1, 1)
    scaled = common_upscale(planes, width, height, method, crop)
    return scaled.movedim(1, -1).clamp(0.0, 1.0).contiguous()


@comfy_node("ImageScale", display_name="Upscale Image", category="image/upscaling")
def image_scale(
    image: Image,
    upscale_method: Choice(IMAGE_METHODS),
    width: Int(min=0, max=MAX_RESOLUTION, step=1) = 512,
    height: Int(min=0, max=MAX_RESOLUTION, step=1) = 512,
    crop: Choice(CROP_METHODS) = "disabled",
) -> Image:
    """Resize images to width × height.

    Both 0 keeps the image; one 0 follows the other so as to keep the aspect ratio. crop
    "center" first cuts the image to the target's aspect ratio (else it is stretched).
    Methods: nearest-exact, bilinear, area (averages, best for reducing), bicubic and
    lanczos (sharpest).
    """
    if width == 0 and height == 0:
        return image
    in_height, in_width = image.shape[1:3]
    if width == 0:
        width = max(1, round(in_width * height / in_height))
    elif height == 0:
        height = max(1, round(in_height * width / in_width))
    return scale_image(image, width, height, upscale_method, crop)


@comfy_node("ImageScaleBy", display_name="Upscale Image By", category="image/upscaling")
def image_scale_by(
    image: Image,
    upscale_method: Choice(IMAGE_METHODS),
    scale_by: Float(min=0.01, max=8.0, step=0.01) = 1.0,
) -> Image:
    """Resize images by a factor (each side rounded to whole pixels)."""
    in_height, in_width = image.shape[1:3]
    width = max(1, round(in_width * scale_by))
    height = max(1, round(in_height * scale_by))
    return scale_image(image, width, height, upscale_method, "disabled")


@comfy_node("ImageInvert", display_name="Invert Image", category="image")
def image_invert(image: Image) -> Image:
    """Invert colours: 1 − value in every channel."""
    return 1.0 - image


@comfy_node(
    "EmptyImage",
    display_name="EmptyImage",  # a V1 node without a display-name mapping: its class name
    category="image",
    inputs={"color": ComfyInput(display="color")},
)
def empty_image(
    width: Int(min=1, max=MAX_RESOLUTION, step=1) = 512,
    height: Int(min=1, max=MAX_RESOLUTION, step=1) = 512,
    batch_size: Int(min=1, max=4096) = 1,
    color: Int(min=0, max=0xFFFFFF, step=1) = 0,
) -> Image:
    """A batch of images filled with one colour (0xRRGGBB; 0 is black)."""
    import torch

    if width * height > MAX_PIXELS:
        raise ValueError(f"{width}×{height} is above {MAX_PIXELS / 1e6:.0f} MP")
    rgb = [((color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)]
    return torch.tensor(rgb, dtype=torch.float32).expand(batch_size, height, width, 3).clone()


@comfy_node("UpscaleModelLoader", display_name="Load Upscale Model", category="loaders")
def upscale_model_loader(
    model_name: Choice(list_upscale_models), ctx: NodeContext = None
) -> UpscaleModel:
    """Load a super-resolution model from models/upscale_models (any architecture spandrel
    knows: ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT...), or one graphflow ships (bundled/).

    .pth/.ckpt pickles load weights-only, and only when the allow_pickle setting is on
    (GRAPHFLOW_ALLOW_PICKLE=1): a pickle can run code; .safetensors always load.
    """
    return load_upscale_model.function(model_name, False, ctx)


@upscale_model_loader.check
def _pickle_setting(model_name: str, **_) -> str | None:
    refusal = check_pickle_rule(model_name, False)
    return f"model_name: {refusal}" if refusal else None


@upscale_model_loader.fingerprint
def _model_file(model_name: str, **_) -> object:
    return load_upscale_model.fingerprint_function(model_name=model_name)


@comfy_node(
    "ImageUpscaleWithModel",
    display_name="Upscale Image (using Model)",
    category="image/upscaling",
)
def image_upscale_with_model(
    upscale_model: UpscaleModel, image: Image, ctx: NodeContext = None
) -> Image:
    """Upscale images with a super-resolution model (×2, ×4... as the model defines).

    Large images go through the model in overlapping tiles sized to the memory available,
    blended so that no seam shows.
    """
    return upscale_with_model.function(upscale_model, image, ctx=ctx)


NODES = [
    image_scale,
    image_scale_by,
    image_invert,
    empty_image,
    upscale_model_loader,
    image_upscale_with_model,
]
