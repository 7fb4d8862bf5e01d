"""Segmentation models users bring, from ``models/segmentation/``: finding, loading, running.

Three families, each recognised by what is on disk:

- a transformers semantic-segmentation folder (SegFormer, UperNet, DPT, BEiT, MobileViT...:
  any architecture ``AutoModelForSemanticSegmentation`` knows), with ``config.json``,
  ``preprocessor_config.json`` and the weights as ``save_pretrained`` writes them;
- a transformers DETR panoptic folder (``DetrForSegmentation``, e.g. detr-resnet-50-panoptic),
  whose segments are merged per class into a semantic map;
- a torchvision segmentation state dict (``.safetensors``, or ``.pth``/``.pt`` with the
  ``allow_pickle`` opt-in, read weights-only): DeepLabV3 with a ResNet-50, ResNet-101 or
  MobileNetV3-Large backbone, with or without its auxiliary head, any number of classes
  (21 = Pascal VOC, as torchvision's own weights).

Folders are read with ``local_files_only=True`` and torchvision networks are built with
``weights=None, weights_backbone=None``: nothing is ever downloaded.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.models import ModelFileError, load_state_dict

from .segment_colors import UNLABELLED, VOC_CLASSES, palette_for

SEGMENTATION_FOLDER = "segmentation"
NO_SEGMENTATION_MODEL = "(no segmentation model in models/segmentation)"
FILE_SUFFIXES = (".safetensors", ".pth", ".pt")
PANOPTIC_ARCHITECTURES = ("DetrForSegmentation",)
TORCHVISION_SHORT_SIDE = 520
"""torchvision's segmentation weights were evaluated with the shorter side resized to 520."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SEGMENTATION_EXAMPLES = (
    "nvidia/segformer-b0-finetuned-ade-512-512 or facebook/detr-resnet-50-panoptic"
)


def is_transformers_folder(path: Path) -> bool:
    """True for a folder holding a transformers model (its config.json)."""
    return (path / "config.json").is_file()


SEGMENTATION_MODELS = ModelCatalog(
    SEGMENTATION_FOLDER, FILE_SUFFIXES, is_model_folder=is_transformers_folder
)


def missing_model_message() -> str:
    """What to do when there is no segmentation model: where to put which files."""
    return (
        "vision.segment needs a segmentation model, which graphflow cannot ship: save a "
        f"transformers segmentation folder (for example {SEGMENTATION_EXAMPLES} from the "
        "Hugging Face hub, with config.json, preprocessor_config.json and the weights) as "
        "models/segmentation/<name>/, or put a torchvision DeepLabV3 state dict "
        "(deeplabv3_resnet50/resnet101/mobilenet_v3_large .pth or .safetensors) in "
        "models/segmentation/, then choose it; vision.superpixels needs no model"
    )


def list_segmentation_models() -> list[str]:
    """Model folders and weight files under models/segmentation, or the one "none" choice."""
    return SEGMENTATION_MODELS.names() or [NO_SEGMENTATION_MODEL]


def model_path(name: str) -> Path:
    """The path of segmentation model ``name`` (ModelFileError saying what to do if none)."""
    if name == NO_SEGMENTATION_MODEL:
        raise ModelFileError(missing_model_message())
    return SEGMENTATION_MODELS.path(name)


# --------------------------------------------------------------------------- torchvision


@dataclass(frozen=True)
class TorchvisionLayout:
    """One torchvision segmentation network: how its state dict is recognised and built."""

    name: str
    detect: Callable[[set[str], dict], bool]
    build: str  # the torchvision.models.segmentation function


def _resnet_blocks(keys: set[str], layer: str) -> int:
    prefix = f"backbone.{layer}."
    return len({key[len(prefix) :].split(".")[0] for key in keys if key.startswith(prefix)})


def _is_deeplab(keys: set[str]) -> bool:
    return "classifier.0.convs.0.0.weight" in keys and "classifier.4.weight" in keys


TORCHVISION_LAYOUTS = (
    TorchvisionLayout(
        "deeplabv3_resnet50",
        lambda keys, _: _is_deeplab(keys) and _resnet_blocks(keys, "layer3") == 6,
        "deeplabv3_resnet50",
    ),
    TorchvisionLayout(
        "deeplabv3_resnet101",
        lambda keys, _: _is_deeplab(keys) and _resnet_blocks(keys, "layer3") == 23,
        "deeplabv3_resnet101",
    ),
    TorchvisionLayout(
        "deeplabv3_mobilenet_v3_large",
        lambda keys, _: _is_deeplab(keys) and "backbone.16.0.weight" in keys,
        "deeplabv3_mobilenet_v3_large",
    ),
)


def torchvision_layout(state: dict) -> TorchvisionLayout:
    """The layout whose declaration matches the state dict's keys (ModelFileError if none)."""
    keys = set(state)
    for layout in TORCHVISION_LAYOUTS:
        if layout.detect(keys, state):
            return layout
    sample = ", ".join(sorted(keys)[:4])
    raise ModelFileError(
        "not a torchvision DeepLabV3 state dict (expected keys like backbone.layer3.0.* or "
        "backbone.16.0.weight and classifier.0.convs.*, classifier.4.weight; found "
        f"{sample or 'no keys'}...); graphflow reads deeplabv3_resnet50, deeplabv3_resnet101 "
        "and deeplabv3_mobilenet_v3_large weights"
    )


def _plain_state(data: Any, name: str) -> dict:
    """The tensors of a weights file, unwrapped from a training checkpoint's {"model": ...}."""
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not data:
        raise ModelFileError(f"{name} holds no state dict")
    return {key.removeprefix("module."): value for key, value in data.items()}


def load_torchvision_model(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """{"model": the DeepLabV3 network (eval, frozen), "kind", "names", "colors"} of a state
    dict file; built with weights=None, weights_backbone=None, then the file's tensors."""
    from torchvision.models import segmentation

    try:
        state = _plain_state(load_state_dict(path, allow_pickle), path.name)
    except ModelFileError:
        raise
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{path.name} is not a plain weights file: torch.load(weights_only=True) refused "
            f"it ({_refusal_reason(error)}); graphflow never runs code from a pickle"
        ) from None
    except Exception as error:  # truncated or corrupt file
        raise ModelFileError(f"{path.name} could not be read: {error}") from None
    layout = torchvision_layout(state)
    classes = int(state["classifier.4.weight"].shape[0])
    aux = any(key.startswith("aux_classifier.") for key in state)
    model = getattr(segmentation, layout.build)(
        weights=None, weights_backbone=None, num_classes=classes, aux_loss=aux
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelFileError(
            f"{path.name} looks like {layout.name} but does not fit it: {error}"
        ) from None
    model.requires_grad_(False)
    names = VOC_CLASSES if classes == len(VOC_CLASSES) else _numbered(classes)
    return {
        "model": model.eval(),
        "kind": "torchvision",
        "names": tuple(names),
        "colors": palette_for(dict(enumerate(names))),
    }


def _refusal_reason(error: Exception) -> str:
    """The useful line of torch's weights-only refusal (what it refused), without its
    advice to load with weights_only=False."""
    _, found, rest = str(error).partition("WeightsUnpickler error:")
    if not found:
        return "not a torch weights file"
    lines = [line.strip() for line in rest.splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".") if lines else "not a torch weights file"


def _numbered(count: int) -> list[str]:
    return [f"class {index}" for index in range(count)]


# --------------------------------------------------------------------------- transformers


def folder_config(path: Path) -> dict:
    """config.json of a model folder ({} when unreadable)."""
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def folder_kind(path: Path) -> str:
    """The kind ("semantic" or "panoptic") of a folder transformers can segment with;
    ModelFileError naming what its config says otherwise."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES as SEMANTIC,
    )

    config = folder_config(path)
    architectures = config.get("architectures") or []
    if any(a in PANOPTIC_ARCHITECTURES for a in architectures):
        return "panoptic"
    if any(a in SEMANTIC.values() for a in architectures):
        return "semantic"
    if not architectures and config.get("model_type") in SEMANTIC:
        return "semantic"
    raise ModelFileError(
        f"models/segmentation/{path.name} is not a segmentation model (its config.json names "
        f"{architectures or config.get('model_type') or 'no architecture'}); "
        f"{missing_model_message()}"
    )


def load_transformers_model(path: Path) -> dict[str, Any]:
    """{"model", "processor", "kind", "names", "colors"} of a transformers folder."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForSemanticSegmentation,
        DetrForSegmentation,
    )

    kind = folder_kind(path)
    model_class = DetrForSegmentation if kind == "panoptic" else AutoModelForSemanticSegmentation
    try:
        model = model_class.from_pretrained(path, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelFileError(
            f"models/segmentation/{path.name} could not be loaded as a {kind} segmentation "
            f"model ({error}); it needs config.json, preprocessor_config.json and the weights "
            "(model.safetensors) as save_pretrained writes them"
        ) from None
    model.requires_grad_(False)
    labels = {int(key): str(value) for key, value in model.config.id2label.items()}
    size = max(labels, default=-1) + 1
    names = [labels.get(index, f"class {index}") for index in range(size)]
    colors = palette_for(labels)
    if kind == "panoptic":  # pixels no segment covers get a label of their own
        names.append("(unlabelled)")
        colors = (*colors[:size], UNLABELLED)
    return {
        "model": model.eval(),
        "processor": processor,
        "kind": kind,
        "names": tuple(names),
        "colors": tuple(colors),
    }


def load_segmentation_model(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """The model at ``path``: a transformers folder or a torchvision state dict file."""
    if path.is_dir():
        return load_transformers_model(path)
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise ModelFileError(
            f"{path.name}: segmentation weight files are {', '.join(FILE_SUFFIXES)}; "
            f"{missing_model_message()}"
        )
    return load_torchvision_model(path, allow_pickle)


# --------------------------------------------------------------------------- running


def uint8_rgb(pixels: Any) -> Any:
    """(H, W, C) 0..1 → (H, W, 3) uint8 NumPy, as image processors expect from files."""
    import torch

    rgb = pixels[..., :3].expand(*pixels.shape[:2], 3).float()
    return (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def predict_labels(module: Any, extras: dict, pixels: Any, threshold: float) -> Any:
    """(H, W) int64 label map of one image (H, W, C) in 0..1 from a loaded model."""
    import torch

    height, width = pixels.shape[:2]
    device = next(module.parameters()).device
    kind = extras["kind"]
    if kind == "torchvision":
        return _torchvision_labels(module, pixels, device)
    processor = extras["processor"]
    inputs = processor(images=uint8_rgb(pixels), return_tensors="pt")
    with torch.inference_mode():
        outputs = module(pixel_values=inputs["pixel_values"].to(device))
    if kind == "semantic":
        found = processor.post_process_semantic_segmentation(
            outputs, target_sizes=[(height, width)]
        )[0]
        return found.to("cpu", torch.int64)
    return _panoptic_labels(processor, outputs, (height, width), threshold, extras["names"])


def _panoptic_labels(processor, outputs, size, threshold: float, names) -> Any:
    """A DETR panoptic result merged per class: each pixel gets its segment's class id, and
    pixels of no segment the last ("(unlabelled)") label."""
    import torch

    result = processor.post_process_panoptic_segmentation(
        outputs, threshold=threshold, target_sizes=[size], label_ids_to_fuse=set()
    )[0]
    segments = result["segmentation"].to("cpu")
    labels = torch.full(size, len(names) - 1, dtype=torch.int64)
    for info in result["segments_info"]:
        labels[segments == info["id"]] = int(info["label_id"])
    return labels


def _torchvision_labels(module: Any, pixels: Any, device: Any) -> Any:
    import torch
    import torch.nn.functional as F

    height, width = pixels.shape[:2]
    scale = TORCHVISION_SHORT_SIDE / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    rgb = pixels[..., :3].expand(height, width, 3).permute(2, 0, 1)[None].float().to(device)
    rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    with torch.inference_mode():
        logits = module((rgb - mean) / std)["out"]
    logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    return logits[0].argmax(0).to("cpu", torch.int64)
