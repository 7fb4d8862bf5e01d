"""Segmentation: split an image into labelled regions, colour them, and pick regions as masks.

A SEGMENTATION value is a label map (one integer per pixel, (B, H, W)) with a name and a
colour per label. Two nodes make one:

- ``vision.superpixels`` needs no weights: scikit-image's SLIC, Felzenszwalb or quickshift
  group pixels into regions of similar colour (the "unsupervised" segmentation of the
  lecture: regions, but no idea what they are);
- ``vision.segment`` runs a semantic segmentation model you bring (SegFormer, DETR panoptic,
  torchvision DeepLabV3; see segment_models.py), whose labels are classes ("sky", "person").

Both also return the map as a colour image: ADE20K models in ADE20K's class colours, the
map ControlNet's seg models expect. ``vision.segmentation_mask`` turns chosen labels into a
MASK (for a regional prompt or inpainting) and ``vision.segmentation_labels`` lists the
labels present, with their share of the picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from graphflow import (
    Boolean,
    Choice,
    Float,
    Image,
    Int,
    Mask,
    NodeContext,
    Outputs,
    String,
    node,
    port_type,
)
from graphflow.runtime.handles import compute_device
from graphflow.runtime.models import check_pickle_rule, file_version
from graphflow.value_codec import register_dataclass

from . import segment_models as models
from .segment_colors import distinct_colors

CATEGORY = "vision/segmentation"
METHODS = ["slic", "felzenszwalb", "quickshift"]
COLORINGS = ["mean colour", "palette"]

SEGMENTATION_TYPE, SegmentationRef = port_type(
    "SEGMENTATION", "Label map (B, H, W) with a name and a colour per label", "#ce93d8"
)
PORT_TYPES = (SEGMENTATION_TYPE,)


@dataclass(frozen=True, eq=False)
class Segmentation:
    """A batch of label maps: ``labels`` (B, H, W) int64 on the CPU, each value an index into
    ``names`` and ``colors`` (RGB 0..255)."""

    labels: Any
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def color_image(self) -> Any:
        """The maps in their labels' colours: an IMAGE (B, H, W, 3) in 0..1."""
        import torch

        table = torch.tensor(self.colors, dtype=torch.float32) / 255.0
        return table[self.labels]

    def mean_color_image(self, image: Any) -> Any:
        """Each region filled with the mean colour of ``image`` over it (an IMAGE)."""
        import torch

        batch, height, width = self.labels.shape
        pixels = _rgb(image).to("cpu", torch.float32).reshape(batch, height * width, 3)
        out = torch.empty_like(pixels)
        for index in range(batch):
            flat = self.labels[index].reshape(-1)
            count = len(self.names)
            sums = torch.zeros(count, 3).index_add_(0, flat, pixels[index])
            areas = torch.bincount(flat, minlength=count).clamp(min=1)[:, None]
            out[index] = (sums / areas)[flat]
        return out.reshape(batch, height, width, 3)


register_dataclass(Segmentation, "gf_vision.segmentation")


def _rgb(image: Any) -> Any:
    """The first three channels of an IMAGE (grey images repeated to three)."""
    return image[..., :3].expand(*image.shape[:3], 3)


# --------------------------------------------------------------------------- superpixels


def superpixel_labels(pixels: Any, method: str, settings: dict[str, Any]) -> Any:
    """(H, W) int NumPy labels 0..N-1 of one (H, W, 3) float NumPy image in 0..1."""
    from skimage import segmentation
    from skimage.segmentation import relabel_sequential

    sigma = settings["sigma"]
    if method == "slic":
        labels = segmentation.slic(
            pixels,
            n_segments=settings["regions"],
            compactness=settings["compactness"],
            sigma=sigma,
            start_label=0,
            channel_axis=-1,
        )
    elif method == "felzenszwalb":
        labels = segmentation.felzenszwalb(
            pixels,
            scale=settings["scale"],
            sigma=sigma,
            min_size=settings["min_size"],
            channel_axis=-1,
        )
    elif method == "quickshift":
        labels = segmentation.quickshift(
            pixels,
            kernel_size=settings["kernel_size"],
            max_dist=settings["max_dist"],
            sigma=sigma,
            channel_axis=-1,
        )
    else:
        raise ValueError(f"unknown superpixel method {method!r} (choose from {METHODS})")
    return relabel_sequential(labels)[0]


def colored(segmentation: Segmentation, image: Any, coloring: str) -> Any:
    """The colour image of a segmentation, in palette colours or the image's mean colours,
    on the image's device and dtype."""
    if coloring == "mean colour":
        out = segmentation.mean_color_image(image)
    elif coloring == "palette":
        out = segmentation.color_image()
    else:
        raise ValueError(f"unknown colouring {coloring!r} (choose from {COLORINGS})")
    return out.to(image.device, image.dtype)


@node(
    "vision.superpixels",
    category=CATEGORY,
    display_name="Superpixels",
)
def superpixels(
    image: Image,
    method: Choice(METHODS) = "slic",
    regions: Int(min=1, max=10000) = 100,
    compactness: Float(0.01, 100.0, step=0.01) = 10.0,
    scale: Float(1.0, 10000.0, step=1.0) = 100.0,
    min_size: Int(min=1, max=100000) = 50,
    kernel_size: Float(0.5, 50.0, step=0.5) = 5.0,
    max_dist: Float(0.5, 500.0, step=0.5) = 10.0,
    sigma: Float(0.0, 10.0, step=0.1) = 0.8,
    coloring: Choice(COLORINGS) = "mean colour",
) -> Outputs(segmentation=SegmentationRef, image=Image):
    """Regions of similar colour, without any model (scikit-image superpixels).

    slic: about ``regions`` compact cells (k-means in colour + position; higher compactness
    = squarer cells, lower = cells following edges). felzenszwalb: a graph of neighbouring
    pixels merged while the colour step inside a region stays below ``scale`` (higher = fewer,
    larger regions; none smaller than ``min_size`` pixels). quickshift: mode seeking in colour
    + position (``kernel_size`` = the neighbourhood, ``max_dist`` = where trees are cut).
    ``sigma`` smooths the image first. The image output fills each region with its mean
    colour or a distinct palette colour; labels are numbered from 0 in reading order.
    """
    import numpy as np
    import torch

    settings = {
        "regions": regions,
        "compactness": compactness,
        "scale": scale,
        "min_size": min_size,
        "kernel_size": kernel_size,
        "max_dist": max_dist,
        "sigma": sigma,
    }
    pixels = _rgb(image).detach().to("cpu", torch.float64).numpy()
    maps = [superpixel_labels(np.ascontiguousarray(one), method, settings) for one in pixels]
    labels = torch.as_tensor(np.stack(maps), dtype=torch.int64)
    count = int(labels.max()) + 1
    segmentation = Segmentation(
        labels, tuple(f"region {index}" for index in range(count)), distinct_colors(count)
    )
    return segmentation, colored(segmentation, image, coloring)


# --------------------------------------------------------------------------- models


@node(
    "vision.segment",
    category=CATEGORY,
    display_name="Semantic Segmentation",
)
def segment(
    image: Image,
    model: Choice(models.list_segmentation_models) = models.NO_SEGMENTATION_MODEL,
    threshold: Float(0.0, 1.0, step=0.01) = 0.85,
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> Outputs(segmentation=SegmentationRef, image=Image):
    """Label every pixel with a class (sky, person, road...), with a model you bring.

    graphflow ships no segmentation weights: put a transformers SegFormer (or other semantic
    segmentation) or DETR-panoptic folder in models/segmentation/<name>/, or a torchvision
    DeepLabV3 state dict in models/segmentation/ (.pth only with allow_pickle, read
    weights-only), and choose it. threshold: the score a DETR segment needs to be kept
    (others, and pixels no segment covers, are "(unlabelled)"). The image output is the map
    in the model's class colours: ADE20K's table for ADE20K models (what ControlNet seg
    models read), VOC's for VOC models.
    """
    import torch

    path = models.model_path(model)
    if ctx is not None:
        handle = ctx.models.load(
            "segmentation", path, lambda: models.load_segmentation_model(path, allow_pickle)
        )
    else:
        handle = _unmanaged_model(str(path), file_version(path), allow_pickle)
    extras = dict(handle.extras)
    network = handle.component("model")
    maps = []
    with network.on_device(compute_device(network, ctx)) as module:
        for index in range(image.shape[0]):
            if ctx is not None:
                ctx.progress(index, image.shape[0])
            maps.append(models.predict_labels(module, extras, image[index], threshold))
    segmentation = Segmentation(torch.stack(maps), extras["names"], extras["colors"])
    return segmentation, colored(segmentation, image, "palette")


@lru_cache(maxsize=2)
def _unmanaged_model(path: str, version: Any, allow_pickle: bool) -> Any:
    """The model for calls without a run (scripts, tests), kept per file version."""
    from graphflow.runtime.handles import ModelHandle

    loaded = models.load_segmentation_model(Path(path), allow_pickle)
    return ModelHandle.of(loaded, "segmentation model")


@segment.check
def _model_chosen(
    model: str = models.NO_SEGMENTATION_MODEL, allow_pickle: bool = False, **_
) -> str | None:
    if model == models.NO_SEGMENTATION_MODEL:
        return f"model: {models.missing_model_message()}"
    refusal = check_pickle_rule(model, allow_pickle)
    return f"model: {refusal}" if refusal else None


@segment.fingerprint
def _model_version(model: str = models.NO_SEGMENTATION_MODEL, **_) -> tuple:
    if model == models.NO_SEGMENTATION_MODEL:
        return ()
    return file_version(models.model_path(model))


# --------------------------------------------------------------------------- using a map


def chosen_labels(segmentation: Segmentation, text: str) -> list[int]:
    """Label ids named in ``text``: comma-separated ids or names (case-insensitive; a name
    also matches the first of a label's ";"-separated synonyms, as in ADE20K's names)."""
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    if not wanted:
        raise ValueError("labels: name at least one label (e.g. 'person, sky' or '3, 7')")
    by_name: dict[str, int] = {}
    for index, name in enumerate(segmentation.names):
        for alias in (name, name.split(";")[0], name.split(",")[0]):
            by_name.setdefault(alias.strip().lower(), index)
    found = []
    for part in wanted:
        if part.isdigit() and int(part) < len(segmentation.names):
            found.append(int(part))
        elif part.lower() in by_name:
            found.append(by_name[part.lower()])
        else:
            present = ", ".join(
                f"{i} {segmentation.names[i]}" for i in present_labels(segmentation)
            )
            raise ValueError(f"labels: no label {part!r} in this segmentation (present: {present})")
    return found


def present_labels(segmentation: Segmentation) -> list[int]:
    """The label ids that cover at least one pixel, largest area first."""
    import torch

    areas = torch.bincount(segmentation.labels.reshape(-1), minlength=len(segmentation.names))
    order = torch.argsort(areas, descending=True, stable=True)
    return [int(i) for i in order if areas[i] > 0]


@node("vision.segmentation_mask", category=CATEGORY, display_name="Segments to Mask")
def segmentation_mask(
    segmentation: SegmentationRef, labels: String = "", invert: Boolean = False
) -> Mask:
    """A MASK that is 1 where the map has one of the chosen labels, 0 elsewhere.

    labels: comma-separated label names or ids ("person, sky", "3, 7"; see Segmentation
    Labels for those present). invert selects everything else. Feed it to a mask prompt
    (regional conditioning) or an inpainting node; grow or feather it with the mask nodes.
    """
    import torch

    ids = torch.tensor(chosen_labels(segmentation, labels), dtype=torch.int64)
    mask = torch.isin(segmentation.labels, ids).float()
    return 1.0 - mask if invert else mask


@node("vision.segmentation_labels", category=CATEGORY, display_name="Segmentation Labels")
def segmentation_labels(segmentation: SegmentationRef) -> String:
    """The labels present in the map, one per line: id, name and share of the pixels,
    largest first — the names and ids Segments to Mask takes."""
    import torch

    areas = torch.bincount(segmentation.labels.reshape(-1), minlength=len(segmentation.names))
    total = int(areas.sum()) or 1
    return "\n".join(
        f"{index}\t{segmentation.names[index]}\t{100.0 * int(areas[index]) / total:.1f}%"
        for index in present_labels(segmentation)
    )


@node("vision.segmentation_image", category=CATEGORY, display_name="Colour Segmentation")
def segmentation_image(
    segmentation: SegmentationRef, image: Image = None, coloring: Choice(COLORINGS) = "palette"
) -> Image:
    """Draw a label map: each label in its palette colour, or (with an image of the same
    size) each region in the image's mean colour over it."""
    if coloring == "palette":
        return segmentation.color_image()
    if image is None:
        raise ValueError("image: mean colour needs the image the map was made from")
    if tuple(image.shape[:3]) != tuple(segmentation.labels.shape):
        raise ValueError(
            f"image: its size {tuple(image.shape[:3])} is not the map's "
            f"{tuple(segmentation.labels.shape)} (batch, height, width)"
        )
    return colored(segmentation, image, coloring)


NODES = [superpixels, segment, segmentation_mask, segmentation_labels, segmentation_image]
