"""GAN generator architectures as graphflow's own torch modules.

:class:`DCGANGenerator` is the generator of Radford et al.'s DCGAN (2015): the latent
vector z (nz numbers) is read as an nz×1×1 image and grown by transposed convolutions
(kernel 4), the first to 4×4 (stride 1, no padding), each further one doubling the size
(stride 2, padding 1); every layer but the last has batch norm and ReLU, the last maps to nc
channels through tanh (pixels in −1..1). The widths halve on the way up and end at ngf
feature maps before the image: for a 64 px image 8·ngf, 4·ngf, 2·ngf, ngf; for 128 px
16·ngf ... ngf. So nz, ngf, nc and the image size fix every weight's shape.

A class-conditional generator (cDCGAN, as omniart-eye-generator's) concatenates a one-hot
class vector to z, so its first layer reads nz + classes channels.

This module imports torch; the pack's nodes import it only when a generator is loaded.

The modules are for sampling (eval mode): dropout layers some training codes place between
blocks do nothing in eval mode, so they are not part of the module (their indices only shift
the state dict's keys, which dcgan_files.py maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class GeneratorShape:
    """What a DCGAN generator's weights are shaped by, plus the class names (conditional)."""

    nz: int = 100
    ngf: int = 64
    nc: int = 3
    image_size: int = 64
    classes: tuple[str, ...] = field(default_factory=tuple)
    conv_bias: bool = False

    def __post_init__(self):
        size = self.image_size
        if size < 8 or size & (size - 1):
            raise ValueError(f"a DCGAN image size is a power of two ≥ 8, not {size}")
        if min(self.nz, self.ngf, self.nc) < 1:
            raise ValueError(f"nz, ngf and nc must be positive ({self.nz}, {self.ngf}, {self.nc})")

    @property
    def layers(self) -> int:
        """Transposed convolutions: one to 4×4, then one per doubling (64 px → 5)."""
        return int(math.log2(self.image_size)) - 1

    def widths(self) -> list[int]:
        """Channels after each layer: ngf·2^k halving down to ngf, then nc."""
        hidden = [self.ngf * 2 ** (self.layers - 2 - index) for index in range(self.layers - 1)]
        return [*hidden, self.nc]

    @property
    def input_channels(self) -> int:
        """What the first layer reads: z and, for a conditional generator, the one-hot class."""
        return self.nz + len(self.classes)


class UpBlock(nn.Module):
    """Transposed convolution (kernel 4) → batch norm → ReLU."""

    def __init__(self, channels_in: int, channels_out: int, first: bool, bias: bool):
        super().__init__()
        stride, padding = (1, 0) if first else (2, 1)
        self.conv = nn.ConvTranspose2d(channels_in, channels_out, 4, stride, padding, bias=bias)
        self.norm = nn.BatchNorm2d(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output: twice the input's size (4×4 from 1×1 for the first)."""
        return torch.relu(self.norm(self.conv(x)))


class DCGANGenerator(nn.Module):
    """DCGAN generator (optionally class-conditional): z of shape (B, nz) → (B, nc, S, S)
    in −1..1. See the module docstring for the architecture."""

    def __init__(self, shape: GeneratorShape | None = None, **sizes):
        super().__init__()
        self.shape = shape or GeneratorShape(**sizes)
        widths = self.shape.widths()
        channels = [self.shape.input_channels, *widths[:-1]]
        bias = self.shape.conv_bias
        self.blocks = nn.ModuleList(
            UpBlock(channels[i], channels[i + 1], i == 0, bias) for i in range(len(widths) - 1)
        )
        self.to_image = nn.ConvTranspose2d(channels[-1], widths[-1], 4, 2, 1, bias=bias)

    @property
    def nz(self) -> int:
        """Latent size."""
        return self.shape.nz

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names of a conditional generator (empty for an unconditional one)."""
        return self.shape.classes

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images for latents ``z`` (B, nz) (or (B, nz, 1, 1)) and, for a conditional
        generator, class indices ``labels`` (B,)."""
        batch = z.shape[0]
        x = z.reshape(batch, self.shape.nz)
        if self.shape.classes:
            if labels is None:
                raise ValueError("a class-conditional generator needs a class label per latent")
            onehot = nn.functional.one_hot(labels.long(), len(self.shape.classes))
            x = torch.cat([x, onehot.to(x.dtype)], dim=1)
        x = x.reshape(batch, -1, 1, 1)
        for block in self.blocks:
            x = block(x)
        return torch.tanh(self.to_image(x))


NODES = []
