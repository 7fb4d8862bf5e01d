"""The torch modules of pix2pix (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017), nested so that their state-dict keys are those of the
original PyTorch release (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``).

Written here; only the module *nesting* follows the release, because the nesting is what
spells the keys (see pix2pix_models.py for the key layouts and how a file is recognised).

* :class:`UnetGenerator`: down-convolutions 4×4 stride 2 (LeakyReLU 0.2 before, norm after),
  transposed 4×4 stride-2 up-convolutions (ReLU before, norm after); every level but the
  outermost returns its input concatenated with its output (the skip connection); the
  innermost (1×1 at 256 pixels) has no norm after its down-convolution; tanh out. Widths ngf,
  2·ngf, 4·ngf, then 8·ngf for every deeper level.
* :class:`ResnetGenerator`: Johnson et al.'s network as the release builds it.
* :class:`PatchDiscriminator`: the PatchGAN (the release's ``NLayerDiscriminator``).

With batch norm, a convolution followed by a norm has no bias (the norm's shift replaces it);
with instance norm (no affine parameters, no running statistics) it has one. The paper runs
the generator at test time as in training: batch norm with the test image's own statistics;
:func:`input_statistics` does that without touching the running averages.

Imported only when a model is built (torch is not imported when the plugin loads).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("batch", "instance")
PADDINGS = ("reflect", "replicate", "zero")

_OWN_STATISTICS = contextvars.ContextVar("pix2pix_own_statistics", default=False)


@contextmanager
def input_statistics(enabled: bool = True) -> Iterator[None]:
    """Within this block, batch norms of pix2pix generators normalise with the statistics of
    the batch they are given (the paper's test-time rule), not their running averages.

    Only this thread (context) sees it, and the running averages are never updated.
    """
    token = _OWN_STATISTICS.set(enabled)
    try:
        yield
    finally:
        _OWN_STATISTICS.reset(token)


class GeneratorBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d (same parameters and buffers) that follows :func:`input_statistics`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with the running averages, or, in training or inside
        ``input_statistics``, with the batch's own mean and variance."""
        if self.training or not _OWN_STATISTICS.get():
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The norm after a convolution: batch (affine, running stats) or instance (neither)."""
    if norm == "batch":
        return GeneratorBatchNorm(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"norm must be one of {', '.join(NORMS)} (got {norm!r})")


# --------------------------------------------------------------------------- U-Net


class UnetSkipBlock(nn.Module):
    """One level of the U-Net: down, the deeper levels (``inner``), up; the input is
    concatenated to the output (skip connection) except at the outermost level."""

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        *,
        in_channels: int | None = None,
        inner: nn.Module | None = None,
        outermost: bool = False,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        biased = norm == "instance"  # a batch norm's shift makes a conv bias redundant
        # Even the outermost down-convolution (no norm after it) has no bias with batch norm.
        down = nn.Conv2d(in_channels or outer_channels, inner_channels, 4, 2, 1, bias=biased)
        if outermost:
            up = nn.ConvTranspose2d(inner_channels * 2, outer_channels, 4, 2, 1)
            layers = [down, inner, nn.ReLU(True), up, nn.Tanh()]
        elif inner is None:  # innermost: no norm at the 1×1 bottleneck
            up = nn.ConvTranspose2d(inner_channels, outer_channels, 4, 2, 1, bias=biased)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up]
            layers.append(norm_layer(norm, outer_channels))
        else:
            up = nn.ConvTranspose2d(inner_channels * 2, outer_channels, 4, 2, 1, bias=biased)
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner_channels), inner]
            layers += [nn.ReLU(True), up, norm_layer(norm, outer_channels)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → the outermost's image, or the input and this level's output."""
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net: ``num_downs`` halvings (8 for 256 pixels, ``unet_256``), tanh out.

    Image sides must be multiples of 2**num_downs. Input and output in -1..1.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"a pix2pix U-Net has at least 5 levels (got num_downs={num_downs})")
        block = UnetSkipBlock(ngf * 8, ngf * 8, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, inner=block, norm=norm, dropout=dropout)
        for factor in (4, 2, 1):
            block = UnetSkipBlock(ngf * factor, ngf * factor * 2, inner=block, norm=norm)
        self.model = UnetSkipBlock(
            out_channels, ngf, in_channels=in_channels, inner=block, outermost=True, norm=norm
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) in -1..1 → (B, out, H, W) in -1..1."""
        return self.model(x)


# --------------------------------------------------------------------------- ResNet


def _padded(padding: str, layers: list[nn.Module]) -> int:
    """Append the padding layer for a 3×3 convolution; return the convolution's own padding."""
    if padding == "reflect":
        layers.append(nn.ReflectionPad2d(1))
    elif padding == "replicate":
        layers.append(nn.ReplicationPad2d(1))
    elif padding != "zero":
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)} (got {padding!r})")
    return 1 if padding == "zero" else 0


class ResnetBlock(nn.Module):
    """x + (pad, 3×3 conv, norm, ReLU, [dropout], pad, 3×3 conv, norm)(x)."""

    def __init__(self, channels: int, norm: str, dropout: bool, padding: str) -> None:
        super().__init__()
        biased = norm == "instance"
        layers: list[nn.Module] = []
        pad = _padded(padding, layers)
        layers += [nn.Conv2d(channels, channels, 3, padding=pad, bias=biased)]
        layers += [norm_layer(norm, channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        pad = _padded(padding, layers)
        layers += [nn.Conv2d(channels, channels, 3, padding=pad, bias=biased)]
        layers.append(norm_layer(norm, channels))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s generator as the release builds it: 7×7 conv, two stride-2 convs,
    ``blocks`` residual blocks at a quarter of the size, two transposed convs, 7×7 conv, tanh.

    Image sides must be multiples of 4. Input and output in -1..1.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = False,
        blocks: int = 9,
        padding: str = "reflect",
    ) -> None:
        super().__init__()
        biased = norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3)]
        layers += [
            nn.Conv2d(in_channels, ngf, 7, bias=biased),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for factor in (1, 2):
            conv = nn.Conv2d(ngf * factor, ngf * factor * 2, 3, 2, 1, bias=biased)
            layers += [conv, norm_layer(norm, ngf * factor * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, dropout, padding) for _ in range(blocks)]
        for factor in (4, 2):
            up = nn.ConvTranspose2d(ngf * factor, ngf * factor // 2, 3, 2, 1, 1, bias=biased)
            layers += [up, norm_layer(norm, ngf * factor // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) in -1..1 → (B, out, H, W) in -1..1."""
        return self.model(x)


# --------------------------------------------------------------------------- PatchGAN


class PatchDiscriminator(nn.Module):
    """The PatchGAN of pix2pix (the release's ``NLayerDiscriminator``): one real/fake logit per
    overlapping patch. ``layers`` stride-2 4×4 convolutions (LeakyReLU 0.2, norm after all but
    the first), one stride-1 one, and a 1-channel 4×4 output. With 3 layers a logit sees
    70×70 pixels; with 1, 16×16. Input: the condition and the image, concatenated.
    """

    def __init__(
        self, in_channels: int = 6, ndf: int = 64, layers: int = 3, norm: str = "batch"
    ) -> None:
        super().__init__()
        biased = norm == "instance"
        sequence: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, layers + 1):
            wider = ndf * min(2**n, 8)
            stride = 2 if n < layers else 1
            sequence += [nn.Conv2d(width, wider, 4, stride, 1, bias=biased)]
            sequence += [norm_layer(norm, wider), nn.LeakyReLU(0.2, True)]
            width = wider
        sequence.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.model = nn.Sequential(*sequence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) → (B, 1, h, w) logits."""
        return self.model(x)
