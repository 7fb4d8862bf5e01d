"""Control-image preprocessors whose weights graphflow cannot ship: the user brings them.

Depth maps come from a transformers depth-estimation model folder (DPT / MiDaS, Depth
Anything, GLPN, ZoeDepth...) that the user saved in ``models/preprocessors/<name>/``
(``config.json``, ``preprocessor_config.json`` and the weights, as ``save_pretrained`` or a
Hugging Face hub download leaves them). Folders are read with ``local_files_only=True``:
nothing is ever downloaded. When no such folder exists the node's only choice says so, and
choosing it fails validation with a message naming the folder to create.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from graphflow import Choice, Image, NodeContext, node
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.handles import compute_device
from graphflow.runtime.models import ModelFileError, file_version

PREPROCESSOR_FOLDER = "preprocessors"
NO_DEPTH_MODEL = "(no depth model in models/preprocessors)"
DEPTH_EXAMPLES = "depth-anything/Depth-Anything-V2-Small-hf or Intel/dpt-hybrid-midas"


def is_transformers_folder(path: Path) -> bool:
    """True for a folder holding a transformers model (its config.json)."""
    return (path / "config.json").is_file()


PREPROCESSOR_FOLDERS = ModelCatalog(PREPROCESSOR_FOLDER, (), is_model_folder=is_transformers_folder)


@lru_cache(maxsize=64)
def _config_of(path: str, version: Any) -> dict:
    """config.json of a model folder (cached by the file's version)."""
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_depth_model(path: Path) -> bool:
    """True when the folder's config names a depth-estimation architecture (or, without
    ``architectures``, a model type transformers estimates depth with)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES

    try:
        config = _config_of(str(path), file_version(path / "config.json"))
    except OSError:
        return False
    architectures = config.get("architectures") or []
    if architectures:
        return any(a in MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES.values() for a in architectures)
    return config.get("model_type") in MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES


def list_depth_models() -> list[str]:
    """Depth-estimation folders under models/preprocessors, or the one "none" choice."""
    found = [
        name
        for name in PREPROCESSOR_FOLDERS.names()
        if is_depth_model(PREPROCESSOR_FOLDERS.path(name))
    ]
    return found or [NO_DEPTH_MODEL]


def missing_depth_model_message() -> str:
    """What to do when there is no depth model: where to put which files."""
    return (
        "image.depth_map needs a depth-estimation model, which graphflow cannot ship: save a "
        f"transformers depth model folder (for example {DEPTH_EXAMPLES} from the Hugging "
        "Face hub, with its config.json, preprocessor_config.json and weights) as "
        "models/preprocessors/<name>/, then choose <name>"
    )


def depth_model_path(name: str) -> Path:
    """The folder of depth model ``name`` (ModelFileError saying what to do if none)."""
    if name == NO_DEPTH_MODEL:
        raise ModelFileError(missing_depth_model_message())
    path = PREPROCESSOR_FOLDERS.path(name)
    if not is_depth_model(path):
        config = _config_of(str(path), file_version(path / "config.json"))
        raise ModelFileError(
            f"models/preprocessors/{name} is not a depth-estimation model (its config.json "
            f"names {config.get('architectures') or config.get('model_type')}); "
            f"{missing_depth_model_message()}"
        )
    return path


def load_depth_model(path: Path) -> dict[str, Any]:
    """{"model": the depth network (eval, frozen), "processor": its image processor}."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    try:
        model = AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelFileError(
            f"models/preprocessors/{path.name} could not be loaded as a depth model ({error}); "
            "it needs config.json, preprocessor_config.json and the weights "
            "(model.safetensors) as save_pretrained writes them"
        ) from None
    model.requires_grad_(False)
    return {"model": model.eval(), "processor": processor}


def normalised_depth(predicted: Any, height: int, width: int) -> Any:
    """(1, h, w) model output → (height, width) in 0..1 (bicubic, stretched per image)."""
    import torch.nn.functional as F

    depth = F.interpolate(
        predicted[:, None].float(), size=(height, width), mode="bicubic", align_corners=False
    )[0, 0]
    low, high = depth.min(), depth.max()
    return ((depth - low) / (high - low)).clamp(0, 1) if high > low else depth * 0


@node("image.depth_map", category="image/preprocessors", display_name="Depth Map")
def depth_map(
    image: Image, model: Choice(list_depth_models) = NO_DEPTH_MODEL, ctx: NodeContext = None
) -> Image:
    """Depth map (near is white, far is black) for a depth ControlNet, from your model.

    graphflow ships no depth weights: put a transformers depth-estimation folder (for example
    Depth-Anything-V2-Small-hf or dpt-hybrid-midas, as the Hugging Face hub has them) in
    models/preprocessors/<name>/ and choose it. DPT and Depth Anything predict relative
    inverse depth; each image's map is stretched to 0..1 and scaled to the image's size.
    """
    import torch

    from .edges import as_edge_image

    path = depth_model_path(model)
    if ctx is not None:
        handle = ctx.models.load("depth_estimation", path, lambda: load_depth_model(path))
    else:
        handle = _unmanaged_depth(str(path), file_version(path))
    processor = handle.extras["processor"]
    network = handle.component("model")
    batch, height, width = image.shape[:3]
    maps = []
    with network.on_device(compute_device(network, ctx)) as module:
        device = next(module.parameters()).device
        for index in range(batch):
            if ctx is not None:
                ctx.progress(index, batch)
            inputs = processor(images=_uint8_rgb(image[index]), return_tensors="pt")
            with torch.inference_mode():
                predicted = module(pixel_values=inputs["pixel_values"].to(device)).predicted_depth
            maps.append(normalised_depth(predicted.cpu(), height, width))
    return as_edge_image(torch.stack(maps), image)


def _uint8_rgb(pixels: Any) -> Any:
    """(H, W, C) 0..1 → (H, W, 3) uint8 NumPy: what the processors expect from image files
    (they resize in 8 bits either way, so the result is that of transformers' pipeline)."""
    import torch

    rgb = pixels[..., :3].expand(*pixels.shape[:2], 3).float()
    return (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


@lru_cache(maxsize=2)
def _unmanaged_depth(path: str, version: Any) -> Any:
    """The depth model for calls without a run (scripts, tests), kept per folder version."""
    from graphflow.runtime.handles import ModelHandle

    return ModelHandle.of(load_depth_model(Path(path)), "depth model")


@depth_map.check
def _depth_model_chosen(model: str = NO_DEPTH_MODEL, **_) -> str | None:
    return f"model: {missing_depth_model_message()}" if model == NO_DEPTH_MODEL else None


NODES = [depth_map]
