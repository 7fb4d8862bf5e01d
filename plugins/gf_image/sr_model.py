"""graphflow-sr-x4: a small, fast ×4 super-resolution network trained by scripts/train_sr.py.

Everything runs at the *low* resolution: a 3×3 convolution to ``num_feat`` features,
``num_blocks`` residual blocks (conv → ReLU → conv, added to their input; no batch norm, as in
EDSR), a 3×3 convolution whose output is added to the first one's (a long skip), a last
convolution to 3·4² channels and PixelShuffle(4), added to the bicubic upscale of the input.
The network only predicts the residual over bicubic, so it starts as bicubic and improves on
it. The weights are committed in ``embedded_sr/`` (safetensors, fp32).

spandrel does not know this architecture (its keys are ``conv_in``, ``blocks.N.conv1`` …,
deliberately unlike the keys of spandrel's EDSR or Compact, which it would otherwise load
silently wrong). ``sr_descriptor`` wraps the network in a spandrel ``ImageModelDescriptor`` so
``image.upscale_with_model`` can run it like any other model.

Also here: the degradation used for training and evaluation (antialiased bicubic ÷4, rounded
to 8 bits) and a Y-channel PSNR. See docs/super_resolution.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SCALE = 4
EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded_sr"
EMBEDDED_NAME = "graphflow-sr-x4"
EMBEDDED_WEIGHTS = EMBEDDED_DIR / f"{EMBEDDED_NAME}.safetensors"


class ResidualBlock(nn.Module):
    """conv → ReLU → conv, added to the input; starts close to the identity."""

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        with torch.no_grad():  # a small second conv: a deep stack trains from the start
            self.conv2.weight.mul_(0.1)
            self.conv2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out."""
        return x + self.conv2(F.relu(self.conv1(x)))


class GraphflowSR(nn.Module):
    """Residual blocks at low resolution, PixelShuffle up, plus the bicubic upscale.

    Input and output are (B, 3, H, W) floats in 0..1 (the output is not clamped, so the loss
    sees overshoot; callers clamp).
    """

    def __init__(self, num_feat: int = 64, num_blocks: int = 6, scale: int = SCALE) -> None:
        super().__init__()
        self.scale = scale
        self.conv_in = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.blocks = nn.Sequential(*(ResidualBlock(num_feat) for _ in range(num_blocks)))
        self.conv_mid = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_out = nn.Conv2d(num_feat, 3 * scale * scale, 3, 1, 1)
        self.upsampler = nn.PixelShuffle(scale)
        # Start as the bicubic upscale: the last layer only learns the residual.
        nn.init.normal_(self.conv_out.weight, std=1e-3)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 3, H·scale, W·scale)."""
        features = self.conv_in(x)
        features = features + self.conv_mid(self.blocks(features))
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic")
        return self.upsampler(self.conv_out(features)) + base


def config_from_state(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """num_feat, num_blocks and scale of a GraphflowSR state dict."""
    blocks = {key.split(".")[1] for key in state if key.startswith("blocks.")}
    num_feat = state["conv_in.weight"].shape[0]
    scale = math.isqrt(state["conv_out.bias"].shape[0] // 3)
    return {"num_feat": num_feat, "num_blocks": len(blocks), "scale": scale}


def load_sr_model(path: Path | str = EMBEDDED_WEIGHTS) -> GraphflowSR:
    """The network with weights from a safetensors file (default: the committed one), eval mode."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    model = GraphflowSR(**config_from_state(state))
    model.load_state_dict(state)
    return model.eval()


def save_sr_model(model: GraphflowSR, path: Path | str, metadata: dict[str, str]) -> None:
    """Write the weights as fp32 safetensors with ``metadata`` (strings) in the header."""
    from safetensors.torch import save_file

    state = {key: value.detach().contiguous().float() for key, value in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def sr_descriptor(path: Path | str = EMBEDDED_WEIGHTS) -> Any:
    """The network as a spandrel ``ImageModelDescriptor`` (what the upscale nodes run)."""
    import spandrel
    from spandrel.util import KeyCondition

    class GraphflowSRArch(spandrel.Architecture[GraphflowSR]):
        """spandrel's view of GraphflowSR; used directly, never registered globally."""

        def __init__(self) -> None:
            super().__init__(
                id="GraphflowSR",
                name="graphflow-sr",
                detect=KeyCondition.has_all("conv_in.weight", "conv_mid.weight", "conv_out.weight"),
            )

        def load(self, state_dict: dict[str, Any]) -> Any:
            config = config_from_state(state_dict)
            model = GraphflowSR(**config)
            return spandrel.ImageModelDescriptor(
                model,
                state_dict,
                architecture=self,
                purpose="SR",
                tags=[f"{config['num_feat']}nf", f"{config['num_blocks']}nb"],
                supports_half=True,
                supports_bfloat16=True,
                scale=model.scale,
                input_channels=3,
                output_channels=3,
            )

    from safetensors.torch import load_file

    descriptor = GraphflowSRArch().load(load_file(str(path)))
    descriptor.model.eval()
    return descriptor


# --------------------------------------------------------------------------- degradation


def to_tensor(array: Any) -> torch.Tensor:
    """(H, W, 3) uint8 array → (1, 3, H, W) float tensor in 0..1."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1)[None].float() / 255


def crop_to_scale(image: torch.Tensor, scale: int = SCALE) -> torch.Tensor:
    """Crop (B, C, H, W) bottom/right so H and W are multiples of ``scale``."""
    height, width = image.shape[-2:]
    return image[..., : height - height % scale, : width - width % scale]


def bicubic_down(image: torch.Tensor, scale: int = SCALE) -> torch.Tensor:
    """The low-resolution input: antialiased bicubic ÷``scale``, rounded to 8-bit levels."""
    low = F.interpolate(image, scale_factor=1 / scale, mode="bicubic", antialias=True)
    return (low.clamp(0, 1) * 255).round() / 255


def bicubic_up(image: torch.Tensor, scale: int = SCALE) -> torch.Tensor:
    """The bicubic baseline: ×``scale`` bicubic interpolation, clamped to 0..1."""
    return F.interpolate(image, scale_factor=scale, mode="bicubic").clamp(0, 1)


def luma(image: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 Y (16..235 range, as in the SR literature) of (B, 3, H, W) in 0..1."""
    r, g, b = image[:, 0], image[:, 1], image[:, 2]
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255


def psnr_y(output: torch.Tensor, target: torch.Tensor, border: int = SCALE) -> float:
    """PSNR in dB on the Y channel, ``border`` pixels cropped on every side, 8-bit rounded."""
    a = (luma(output.clamp(0, 1)) * 255).round()
    b = (luma(target.clamp(0, 1)) * 255).round()
    if border:
        a = a[..., border:-border, border:-border]
        b = b[..., border:-border, border:-border]
    mse = ((a - b) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(255.0**2 / mse)).item()
