"""Pose skeletons for an openpose ControlNet, from a pose model the user brings.

graphflow ships no pose weights. The node reads a transformers ViTPose folder
(``VitPoseForPoseEstimation``: usyd-community/vitpose-base-simple and the other ViTPose /
ViTPose+ checkpoints of the Hugging Face hub, with config.json, preprocessor_config.json and
the weights) saved in ``models/preprocessors/<name>/``, with ``local_files_only=True``.

ViTPose is a top-down estimator: it finds the 17 COCO keypoints of one person inside a box.
graphflow gives it the whole image as the box, so it suits pictures of one person that fill
most of the frame. The keypoints are drawn as OpenPose draws its 18-point body model (COCO's
17 plus a neck between the shoulders), in OpenPose's colours, on black: the control image
openpose ControlNets were trained on.
"""

from __future__ import annotations

import colorsys
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from graphflow import Choice, Float, Image, Int, NodeContext, node
from graphflow.runtime.handles import compute_device
from graphflow.runtime.models import ModelFileError, file_version

from .preprocessors_user import PREPROCESSOR_FOLDERS, _config_of, _uint8_rgb

NO_POSE_MODEL = "(no pose model in models/preprocessors)"
POSE_EXAMPLES = "usyd-community/vitpose-base-simple"
POSE_ARCHITECTURES = ("VitPoseForPoseEstimation",)

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
"""The 17 keypoints of COCO (and ViTPose), in their order."""

NECK = -1
OPENPOSE_FROM_COCO = (0, NECK, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
"""OpenPose's 18 body points (nose, neck, right shoulder, elbow, wrist, left shoulder,
elbow, wrist, right hip, knee, ankle, left hip, knee, ankle, right eye, left eye, right
ear, left ear) as COCO keypoint indices; the neck is the shoulders' midpoint."""

OPENPOSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
"""OpenPose's 17 limbs between its 18 points, in its drawing (and colour) order."""

LIMB_BRIGHTNESS = 0.6  # OpenPose draws limbs at 60 % of their colour, joints at full colour


def openpose_colors() -> tuple[tuple[int, int, int], ...]:
    """OpenPose's 18 colours: hues 0°, 20°, ... 340° at full saturation, each channel
    rounded to a multiple of 85 (red, orange, yellow, ..., magenta, pink)."""
    colors = []
    for index in range(18):
        rgb = colorsys.hsv_to_rgb(index / 18.0, 1.0, 1.0)
        colors.append(tuple(round(channel * 3) * 85 for channel in rgb))
    return tuple(colors)


def openpose_points(keypoints: Any, scores: Any, threshold: float) -> list:
    """One person's 18 OpenPose points, (x, y) or None where the model is unsure, from
    COCO-17 keypoints (17, 2) and their scores (17,)."""
    points = []
    for coco in OPENPOSE_FROM_COCO:
        if coco == NECK:
            left, right = 5, 6
            if min(float(scores[left]), float(scores[right])) < threshold:
                points.append(None)
                continue
            x = (float(keypoints[left][0]) + float(keypoints[right][0])) / 2
            y = (float(keypoints[left][1]) + float(keypoints[right][1])) / 2
            points.append((x, y))
        elif float(scores[coco]) >= threshold:
            points.append((float(keypoints[coco][0]), float(keypoints[coco][1])))
        else:
            points.append(None)
    return points


def _limb_polygon(start, end, half_width: float) -> list[tuple[float, float]]:
    """An ellipse from ``start`` to ``end`` with the given half-width, as a polygon."""
    (x0, y0), (x1, y1) = start, end
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_length = math.hypot(x1 - x0, y1 - y0) / 2
    angle = math.atan2(y1 - y0, x1 - x0)
    cos, sin = math.cos(angle), math.sin(angle)
    polygon = []
    for step in range(36):
        t = 2 * math.pi * step / 36
        ex, ey = half_length * math.cos(t), half_width * math.sin(t)
        polygon.append((cx + ex * cos - ey * sin, cy + ex * sin + ey * cos))
    return polygon


def draw_openpose(height: int, width: int, people: list, line_width: int = 4) -> Any:
    """An (H, W, 3) uint8 NumPy picture of the people's skeletons on black, limbs first
    (60 % colour) then joints (full colour, radius ``line_width``)."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageDraw

    canvas = PILImage.new("RGB", (width, height))
    draw = ImageDraw.Draw(canvas)
    colors = openpose_colors()
    for points in people:
        for index, (a, b) in enumerate(OPENPOSE_LIMBS):
            if points[a] is None or points[b] is None:
                continue
            dim = tuple(int(channel * LIMB_BRIGHTNESS) for channel in colors[index])
            draw.polygon(_limb_polygon(points[a], points[b], line_width), fill=dim)
    for points in people:
        for index, point in enumerate(points):
            if point is not None:
                x, y = point
                r = line_width
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colors[index])
    return np.array(canvas)


# --------------------------------------------------------------------------- the model


def is_pose_model(path: Path) -> bool:
    """True when the folder's config names ViTPose (architecture or model type)."""
    try:
        config = _config_of(str(path), file_version(path / "config.json"))
    except OSError:
        return False
    architectures = config.get("architectures") or []
    if architectures:
        return any(a in POSE_ARCHITECTURES for a in architectures)
    return config.get("model_type") == "vitpose"


def list_pose_models() -> list[str]:
    """ViTPose folders under models/preprocessors, or the one "none" choice."""
    found = [n for n in PREPROCESSOR_FOLDERS.names() if is_pose_model(PREPROCESSOR_FOLDERS.path(n))]
    return found or [NO_POSE_MODEL]


def missing_pose_model_message() -> str:
    """What to do when there is no pose model: where to put which files."""
    return (
        "image.pose needs a pose-estimation model, which graphflow cannot ship: save a "
        f"transformers ViTPose folder (for example {POSE_EXAMPLES} from the Hugging Face "
        "hub, with its config.json, preprocessor_config.json and weights) as "
        "models/preprocessors/<name>/, then choose <name>"
    )


def pose_model_path(name: str) -> Path:
    """The folder of pose model ``name`` (ModelFileError saying what to do if none)."""
    if name == NO_POSE_MODEL:
        raise ModelFileError(missing_pose_model_message())
    path = PREPROCESSOR_FOLDERS.path(name)
    if not is_pose_model(path):
        config = _config_of(str(path), file_version(path / "config.json"))
        raise ModelFileError(
            f"models/preprocessors/{name} is not a ViTPose model (its config.json names "
            f"{config.get('architectures') or config.get('model_type')}); "
            f"{missing_pose_model_message()}"
        )
    return path


def load_pose_model(path: Path) -> dict[str, Any]:
    """{"model": the ViTPose network (eval, frozen), "processor": its image processor}."""
    from transformers import AutoImageProcessor, VitPoseForPoseEstimation

    try:
        model = VitPoseForPoseEstimation.from_pretrained(path, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelFileError(
            f"models/preprocessors/{path.name} could not be loaded as a ViTPose model "
            f"({error}); it needs config.json, preprocessor_config.json and the weights "
            "(model.safetensors) as save_pretrained writes them"
        ) from None
    model.requires_grad_(False)
    return {"model": model.eval(), "processor": processor}


def estimate_keypoints(module: Any, processor: Any, pixels: Any) -> tuple[Any, Any]:
    """COCO-17 keypoints (17, 2) in pixels and their scores (17,) of the person filling one
    (H, W, C) image: the whole image is ViTPose's person box."""
    import torch

    height, width = pixels.shape[:2]
    boxes = [[[0.0, 0.0, float(width), float(height)]]]
    inputs = processor(images=_uint8_rgb(pixels), boxes=boxes, return_tensors="pt")
    device = next(module.parameters()).device
    arguments = {"pixel_values": inputs["pixel_values"].to(device)}
    if getattr(module.config.backbone_config, "num_experts", 1) > 1:  # ViTPose+: COCO expert
        arguments["dataset_index"] = torch.zeros(1, dtype=torch.int64, device=device)
    with torch.inference_mode():
        outputs = module(**arguments)
    outputs.heatmaps = outputs.heatmaps.cpu()
    person = processor.post_process_pose_estimation(outputs, boxes=boxes)[0][0]
    if len(person["scores"]) != len(COCO_KEYPOINTS):
        raise ModelFileError(
            f"the pose model predicts {len(person['scores'])} keypoints; image.pose draws "
            f"the {len(COCO_KEYPOINTS)} COCO body keypoints (a COCO-trained ViTPose)"
        )
    return person["keypoints"], person["scores"]


@node("image.pose", category="image/preprocessors", display_name="OpenPose Skeleton")
def pose(
    image: Image,
    model: Choice(list_pose_models) = NO_POSE_MODEL,
    threshold: Float(0.0, 1.0, step=0.01) = 0.3,
    line_width: Int(min=1, max=64) = 4,
    ctx: NodeContext = None,
) -> Image:
    """OpenPose-style body skeleton on black, for an openpose ControlNet, from your model.

    graphflow ships no pose weights: put a transformers ViTPose folder (for example
    vitpose-base-simple from the Hugging Face hub) in models/preprocessors/<name>/ and
    choose it. The whole image is taken as one person's box, so use it on pictures of one
    person. Keypoints scoring below threshold are left out, with their limbs; line_width is
    the limbs' half-width and the joints' radius in pixels (OpenPose uses 4 at 512 px).
    """
    import torch

    path = pose_model_path(model)
    if ctx is not None:
        handle = ctx.models.load("pose_estimation", path, lambda: load_pose_model(path))
    else:
        handle = _unmanaged_pose(str(path), file_version(path))
    processor = handle.extras["processor"]
    network = handle.component("model")
    batch, height, width = image.shape[:3]
    pictures = []
    with network.on_device(compute_device(network, ctx)) as module:
        for index in range(batch):
            if ctx is not None:
                ctx.progress(index, batch)
            keypoints, scores = estimate_keypoints(module, processor, image[index])
            people = [openpose_points(keypoints, scores, threshold)]
            pictures.append(torch.from_numpy(draw_openpose(height, width, people, line_width)))
    out = torch.stack(pictures).float() / 255.0
    return out.to(image.device, image.dtype)


@lru_cache(maxsize=2)
def _unmanaged_pose(path: str, version: Any) -> Any:
    """The pose model for calls without a run (scripts, tests), kept per folder version."""
    from graphflow.runtime.handles import ModelHandle

    return ModelHandle.of(load_pose_model(Path(path)), "pose model")


@pose.check
def _pose_model_chosen(model: str = NO_POSE_MODEL, **_) -> str | None:
    return f"model: {missing_pose_model_message()}" if model == NO_POSE_MODEL else None


NODES = [pose]
