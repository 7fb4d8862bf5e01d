"""graphflow-sr-x4: a small, fast ×4 super-resolution network trained by scripts/train_sr.py.

The network is ESPCN-class: a stack of 3×3 convolutions with PReLU at the *low* resolution,
a last convolution to 3·4² channels and PixelShuffle(4), added to the bicubic upscale of the
input (the network only predicts the residual, so it starts as bicubic and improves on it).
The weights are committed in ``embedded_sr/`` (safetensors, 48 features, about 740 KB).

spandrel does not know this architecture (its keys are ``layers.N``, deliberately not the
``body.N`` of spandrel's similar "Compact", which adds a *nearest* upscale and would load the
file silently wrong). ``sr_descriptor`` wraps the network in a spandrel
``ImageModelDescriptor`` so ``image.upscale_with_model`` can run it like any other model.

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


class GraphflowSR(nn.Module):
    """Convs + PReLU at low resolution, PixelShuffle up, plus the bicubic upscale.

    ``layers`` is ``[conv_first, prelu, (conv, prelu) × num_conv, conv_last]``. Input and
    output are (B, 3, H, W) floats in 0..1 (the output is not clamped, so the loss sees
    overshoot; callers clamp).
    """

    def __init__(self, num_feat: int = 48, num_conv: int = 8, scale: int = SCALE) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * scale * scale, 3, 1, 1))
        self.layers = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)
        for layer in layers[:-1]:
            if isinstance(layer, nn.Conv2d):  # He init keeps the signal alive through the stack
                nn.init.kaiming_normal_(layer.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        # Start as the bicubic upscale: the last layer only learns the residual.
        nn.init.normal_(layers[-1].weight, std=1e-3)
        nn.init.zeros_(layers[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 3, H·scale, W·scale)."""
        out = x
        for layer in self.layers:
            out = layer(out)
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic")
        return self.upsampler(out) + base


def config_from_state(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """num_feat, num_conv and scale of a GraphflowSR state dict."""
    last = max(int(key.split(".")[1]) for key in state if key.startswith("layers."))
    num_feat = state["layers.0.weight"].shape[0]
    scale = math.isqrt(state[f"layers.{last}.bias"].shape[0] // 3)
    return {"num_feat": num_feat, "num_conv": (last - 2) // 2, "scale": scale}


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
                detect=KeyCondition.has_all("layers.0.weight", "layers.1.weight"),
            )

        def load(self, state_dict: dict[str, Any]) -> Any:
            model = GraphflowSR(**config_from_state(state_dict))
            return spandrel.ImageModelDescriptor(
                model,
                state_dict,
                architecture=self,
                purpose="SR",
                tags=[f"{model.layers[0].out_channels}nf"],
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
