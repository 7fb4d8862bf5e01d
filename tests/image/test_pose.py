"""image.pose (gf_image/pose.py): OpenPose drawing of COCO keypoints, a tiny random ViTPose
saved locally, and the messages when no pose model is there."""

from __future__ import annotations

import json

import pytest
import torch

from gf_image import examples, pose
from graphflow import Executor, ValidationFailed
from graphflow.runtime.models import ModelFileError, ModelManager
from support import link, make_workflow, registry_with


def save_tiny_vitpose(folder) -> None:
    """A two-layer ViTPose (~40 KB of random weights) on 64×48 person crops."""
    from transformers import (
        VitPoseBackboneConfig,
        VitPoseConfig,
        VitPoseForPoseEstimation,
        VitPoseImageProcessor,
    )

    backbone = VitPoseBackboneConfig(
        image_size=[64, 48],
        patch_size=[16, 16],
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        out_indices=[2],
    )
    torch.manual_seed(0)
    config = VitPoseConfig(backbone_config=backbone, num_labels=17)
    VitPoseForPoseEstimation(config).save_pretrained(folder)
    VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(folder)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_tiny_vitpose(root / "preprocessors" / "tiny-vitpose")
    depth = root / "preprocessors" / "depth"
    depth.mkdir()
    (depth / "config.json").write_text(
        json.dumps({"model_type": "dpt", "architectures": ["DPTForDepthEstimation"]})
    )
    return root


@pytest.fixture
def models(models_root, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    pose._unmanaged_pose.cache_clear()
    return models_root


def standing_person() -> tuple[torch.Tensor, torch.Tensor]:
    """COCO-17 keypoints of a person facing the camera in a 128×128 picture, all certain."""
    points = [
        (64, 20), (68, 16), (60, 16), (72, 18), (56, 18), (80, 40), (48, 40), (86, 60),
        (42, 60), (90, 80), (38, 80), (74, 80), (54, 80), (74, 100), (54, 100), (74, 120),
        (54, 120),
    ]  # fmt: skip
    return torch.tensor(points, dtype=torch.float32), torch.ones(17)


def test_openpose_colours_step_the_hue_by_20_degrees():
    colors = pose.openpose_colors()
    assert colors[:3] == ((255, 0, 0), (255, 85, 0), (255, 170, 0))
    assert colors[6] == (0, 255, 0) and colors[12] == (0, 0, 255)
    assert colors[-1] == (255, 0, 85) and len(set(colors)) == 18


def test_the_neck_is_between_the_shoulders_and_points_follow_openpose_order():
    keypoints, scores = standing_person()
    points = pose.openpose_points(keypoints, scores, threshold=0.5)
    assert len(points) == 18
    assert points[0] == (64, 20)  # nose
    assert points[1] == (64, 40)  # neck: mid of the shoulders (80, 40) and (48, 40)
    assert points[2] == (48, 40)  # right shoulder is COCO 6
    assert points[17] == (72, 18)  # left ear is COCO 3


def test_unsure_keypoints_are_left_out_and_a_shoulder_takes_the_neck_with_it():
    keypoints, scores = standing_person()
    scores[6] = 0.1  # right shoulder
    points = pose.openpose_points(keypoints, scores, threshold=0.3)
    assert points[2] is None and points[1] is None and points[5] is not None


def test_joints_are_drawn_in_full_colour_and_limbs_at_60_percent():
    keypoints, scores = standing_person()
    people = [pose.openpose_points(keypoints, scores, threshold=0.3)]
    picture = pose.draw_openpose(128, 128, people, line_width=3)
    colors = pose.openpose_colors()
    assert picture.shape == (128, 128, 3) and picture.dtype.name == "uint8"
    assert tuple(picture[100, 54]) == colors[9]  # right knee joint
    # mid of the right thigh (hip (54, 80) → knee (54, 100)) is limb 7's colour dimmed
    assert tuple(picture[90, 54]) == tuple(int(c * 0.6) for c in colors[7])
    assert tuple(picture[5, 5]) == (0, 0, 0) and tuple(picture[100, 10]) == (0, 0, 0)


def test_a_missing_keypoint_draws_neither_joint_nor_limbs():
    keypoints, scores = standing_person()
    scores[14] = 0.0  # right knee: no knee, no thigh, no shin
    picture = pose.draw_openpose(128, 128, [pose.openpose_points(keypoints, scores, 0.3)], 3)
    assert tuple(picture[100, 54]) == (0, 0, 0) and tuple(picture[90, 54]) == (0, 0, 0)


def test_only_vitpose_folders_are_offered(models):
    assert pose.list_pose_models() == ["tiny-vitpose"]


def test_the_skeleton_is_drawn_where_transformers_vitpose_puts_the_keypoints(models):
    from transformers import AutoImageProcessor, VitPoseForPoseEstimation

    photo = examples.example_photo("astronaut", size=64)
    folder = models / "preprocessors" / "tiny-vitpose"
    model = VitPoseForPoseEstimation.from_pretrained(folder, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    boxes = [[[0.0, 0.0, 64.0, 64.0]]]
    pixels = (photo[0].numpy() * 255).round().astype("uint8")
    inputs = processor(images=pixels, boxes=boxes, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    person = processor.post_process_pose_estimation(outputs, boxes=boxes)[0][0]
    people = [pose.openpose_points(person["keypoints"], person["scores"], 0.2)]
    expected = torch.from_numpy(pose.draw_openpose(64, 64, people, 2)).float() / 255
    skeleton = pose.pose(photo, model="tiny-vitpose", threshold=0.2, line_width=2)
    assert skeleton.shape == photo.shape
    assert torch.equal(skeleton[0], expected)


def test_the_model_loads_once_per_manager(models):
    manager = ModelManager()
    executor = Executor(registry_with(*pose.NODES), models=manager)
    for _ in range(2):
        result = executor.run(pose_workflow("tiny-vitpose"), outputs=["pose"])
        assert result.ok, result.error
    assert manager.loads == 1


def test_without_a_pose_model_validation_says_which_folder_to_fill(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert pose.list_pose_models() == [pose.NO_POSE_MODEL]
    with pytest.raises(ValidationFailed) as caught:
        Executor(registry_with(*pose.NODES), models=ModelManager()).run(
            pose_workflow(pose.NO_POSE_MODEL)
        )
    message = str(caught.value)
    assert "needs a pose-estimation model, which graphflow cannot ship" in message
    assert "models/preprocessors/<name>/" in message and "vitpose-base-simple" in message
    with pytest.raises(ModelFileError, match=r"models/preprocessors/<name>/"):
        pose.pose(torch.rand(1, 8, 8, 3))


def test_a_folder_of_another_task_is_refused_clearly(models):
    with pytest.raises(ModelFileError, match=r"depth is not a ViTPose model"):
        pose.pose_model_path("depth")


def pose_workflow(model: str):
    return make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "astronaut", "size": 64}),
            "pose": ("image.pose", {"image": link("photo", "image"), "model": model}),
            "show": ("image.preview", {"images": link("pose", "image")}),
        }
    )
