"""Fast (feed-forward) style transfer: one network per style, one pass per image.

Johnson, Alahi and Fei-Fei ("Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", 2016) train an image transformation network with the same perceptual loss
the Gatys optimisation of style.py lowers; afterwards styling an image is a single forward
pass (milliseconds) instead of hundreds of VGG19 evaluations. The layout follows the paper:
a 9×9 convolution, two stride-2 3×3 convolutions down, residual blocks, two upsampling steps
and a 9×9 convolution back to RGB, with instance normalisation (Ulyanov et al.) and
reflection padding. Three deliberate differences:

* narrower: 16/32/64 channels instead of 32/64/128 (5 residual blocks, as the paper), about
  ¼ of the multiply-adds, so a network trains on one CPU core in half an hour and weighs
  ~1.7 MB; the price is less fine detail in the strokes;
* upsampling by nearest-neighbour resize + 3×3 convolution instead of transposed
  convolutions, which avoids their checkerboard artefacts (Odena et al., 2016);
* the output goes through a sigmoid, so it is always inside 0..1.

Networks are ``.safetensors`` files whose metadata record the format, the architecture
(channels, residual blocks) and the style's name; ``load_fast_style_net`` refuses a file
whose metadata or tensor shapes do not match with a ``ModelFileError``. Weights are trained
by scripts/train_fast_style.py; the bundled ones live in ``embedded_style/``. See the "Fast
style" section of docs/style_transfer.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphflow import Choice, Float, Image, NodeContext, node, port_type
from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.handles import compute_device
from graphflow.runtime.models import ModelFileError, file_version

FAST_STYLE_MODEL_TYPE, FastStyleModel = port_type(
    "FAST_STYLE_MODEL",
    "A feed-forward style transfer network (one style)",
    color="#b07cc6",
    model=True,  # loaded weights: the Ray router keeps jobs using one style on one worker
)

STYLE_FOLDER = "style_models"
BUNDLED_PREFIX = "bundled/"
EMBEDDED_STYLE_DIR = Path(__file__).resolve().parent / "embedded_style"
FORMAT = "graphflow-fast-style"
FORMAT_VERSION = "1"
DEFAULT_CHANNELS = (16, 32, 64)
DEFAULT_RESIDUAL_BLOCKS = 5
MULTIPLE = 4  # two stride-2 steps: sides must divide by 4 for the output to match the input
MIN_SIDE = 8  # reflection padding needs sides > its width: 9×9 at full size, 3×3 at ¼


def _net_class():
    """The network class (defined lazily: torch is imported only when a node needs it)."""
    import torch
    from torch import nn

    def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
        """Reflection padding + convolution: no zero border for the network to paint over."""
        return nn.Sequential(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))

    def conv_norm_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(
            conv(cin, cout, kernel, stride), nn.InstanceNorm2d(cout, affine=True), nn.ReLU()
        )

    class ResidualBlock(nn.Module):
        """conv-IN-ReLU-conv-IN, added to the input (the paper's residual block)."""

        def __init__(self, channels: int):
            super().__init__()
            self.body = nn.Sequential(
                conv_norm_relu(channels, channels, 3),
                conv(channels, channels, 3),
                nn.InstanceNorm2d(channels, affine=True),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x)

    class Upsample(nn.Module):
        """Nearest-neighbour ×2, then conv-IN-ReLU."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.body = conv_norm_relu(cin, cout, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))

    class FastStyleNet(nn.Module):
        """Johnson et al.'s image transformation network: (B, 3, H, W) in 0..1 → same shape.

        H and W must be multiples of 4 (``stylise`` pads and crops for other sizes).
        """

        def __init__(
            self,
            channels: tuple[int, int, int] = DEFAULT_CHANNELS,
            residual_blocks: int = DEFAULT_RESIDUAL_BLOCKS,
        ):
            super().__init__()
            c1, c2, c3 = channels
            self.channels = tuple(channels)
            self.residual_blocks = residual_blocks
            self.down = nn.Sequential(
                conv_norm_relu(3, c1, 9), conv_norm_relu(c1, c2, 3, 2), conv_norm_relu(c2, c3, 3, 2)
            )
            self.residual = nn.Sequential(*(ResidualBlock(c3) for _ in range(residual_blocks)))
            self.up = nn.Sequential(Upsample(c3, c2), Upsample(c2, c1))
            self.out = conv(c1, 3, 9)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            """Stylise RGB images in 0..1 (the result is inside 0..1 too)."""
            x = self.up(self.residual(self.down(image)))
            return torch.sigmoid(self.out(x))

    return FastStyleNet


def new_fast_style_net(
    channels: tuple[int, int, int] = DEFAULT_CHANNELS,
    residual_blocks: int = DEFAULT_RESIDUAL_BLOCKS,
) -> Any:
    """An untrained network (for training, or as the shape to load a file into)."""
    return _net_class()(tuple(channels), residual_blocks)


def save_fast_style_net(
    net: Any, path: Path | str, style: str, extra: dict[str, str] | None = None
) -> None:
    """Write ``net`` as fp32 safetensors with its architecture and style name in the metadata.

    ``extra`` (strings) is added to the metadata: training details for the model card.
    """
    from safetensors.torch import save_file

    metadata = {
        **(extra or {}),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "channels": ",".join(str(c) for c in net.channels),
        "residual_blocks": str(net.residual_blocks),
        "style": style,
    }
    state = {key: value.detach().float().contiguous() for key, value in net.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def read_fast_style_metadata(path: Path | str) -> dict[str, str]:
    """The safetensors metadata of a fast style file (ModelFileError if it is not one)."""
    from safetensors import safe_open

    name = Path(path).name
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # not safetensors, truncated, unreadable
        raise ModelFileError(f"{name} is not a readable .safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise ModelFileError(
            f"{name} is not a graphflow fast style network (its metadata has no "
            f"format={FORMAT!r}; train one with scripts/train_fast_style.py)"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{name} has fast style format version {metadata.get('format_version')!r}; "
            f"this graphflow reads version {FORMAT_VERSION}"
        )
    return metadata


def load_fast_style_net(path: Path | str) -> Any:
    """The network stored in ``path``, on the CPU, in eval mode.

    Raises ModelFileError (never a bare traceback) when the file is not a fast style network,
    when its architecture metadata is malformed, or when a tensor is missing, unexpected or of
    the wrong shape for the architecture the metadata declare.
    """
    from safetensors.torch import load_file

    name = Path(path).name
    metadata = read_fast_style_metadata(path)
    try:
        channels = tuple(int(c) for c in metadata["channels"].split(","))
        blocks = int(metadata["residual_blocks"])
        if len(channels) != 3 or min(channels) < 1 or blocks < 0:
            raise ValueError
    except (KeyError, ValueError):
        raise ModelFileError(
            f"{name}: malformed architecture metadata (channels={metadata.get('channels')!r}, "
            f"residual_blocks={metadata.get('residual_blocks')!r})"
        ) from None
    net = new_fast_style_net(channels, blocks)
    expected = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    state = load_file(str(path))
    found = {key: tuple(value.shape) for key, value in state.items()}
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} tensor(s) missing (first: {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s) (first: {unexpected[0]})")
        if wrong:
            key = wrong[0]
            problems.append(
                f"{len(wrong)} tensor(s) of the wrong shape (first: {key} is "
                f"{list(found[key])}, expected {list(expected[key])})"
            )
        raise ModelFileError(
            f"{name} does not match the architecture its metadata declare (channels "
            f"{metadata['channels']}, {blocks} residual blocks): " + "; ".join(problems)
        )
    net.load_state_dict(state)
    net.requires_grad_(False)
    net.style = metadata["style"]
    return net.eval()


def stylise(net: Any, pixels: Any) -> Any:
    """Run ``net`` on (B, 3, H, W) RGB in 0..1 of any size: pad to a multiple of 4, crop back.

    Padding goes on the bottom and right (reflected; replicated for images under 8 pixels).
    """
    import torch

    height, width = pixels.shape[-2:]
    pad_h = max(MIN_SIDE, height + -height % MULTIPLE) - height
    pad_w = max(MIN_SIDE, width + -width % MULTIPLE) - width
    if pad_h or pad_w:
        # Reflection needs the padding to be smaller than the side; tiny images replicate.
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        pixels = torch.nn.functional.pad(pixels, (0, pad_w, 0, pad_h), mode=mode)
    return net(pixels)[..., :height, :width]


# --------------------------------------------------------------------------- nodes


def _bundled_styles() -> dict[str, Path]:
    """bundled/<style> → the networks shipped in embedded_style/, by name."""
    files = sorted(EMBEDDED_STYLE_DIR.glob("*.safetensors"), key=lambda p: p.stem)
    return {BUNDLED_PREFIX + path.stem: path for path in files}


STYLE_MODELS = ModelCatalog(STYLE_FOLDER, (".safetensors",))
STYLE_MODELS.bundle(_bundled_styles)


def list_fast_style_models() -> list[str]:
    """Networks in models/style_models (.safetensors), then the bundled ones."""
    return STYLE_MODELS.names()


def fast_style_model_path(name: str) -> Path:
    """The file of network ``name``: a models-folder file of that name wins over a bundled one."""
    return STYLE_MODELS.path(name)


@node(
    "image.load_fast_style_model",
    category="image/style",
    display_name="Load Fast Style Model",
)
def load_fast_style_model(
    model_name: Choice(list_fast_style_models),
    ctx: NodeContext = None,
) -> FastStyleModel:
    """Load a feed-forward style network (one style each) for Fast Style.

    Files come from models/style_models (.safetensors written by
    scripts/train_fast_style.py); the bundled/ entries ship with graphflow. The network stays
    in memory, so loading it again is free. A file that is not such a network is refused
    with a message saying why.
    """
    device = str(ctx.device)
    path = fast_style_model_path(model_name)
    return ctx.models.load(
        "fast_style_model", path, lambda: load_fast_style_net(path).to(device), device=device
    )


@load_fast_style_model.fingerprint
def _style_file_version(model_name: str, **_) -> tuple:
    return file_version(fast_style_model_path(model_name))


@node("image.fast_style", category="image/style", display_name="Fast Style")
def fast_style(
    style_model: FastStyleModel,
    image: Image,
    strength: Float(0.0, 1.0, step=0.05) = 1.0,
    ctx: NodeContext = None,
) -> Image:
    """Repaint images in the style a fast style network was trained for, in one pass.

    Milliseconds per image instead of the minutes of Style Transfer's optimisation, but each
    network knows a single style (train more with scripts/train_fast_style.py). The output has
    the input's size (any size: it is padded to a multiple of 4 and cropped back). strength
    blends the result with the original: 0 returns the input, 1 the fully stylised image.
    Grey images are styled as RGB; an alpha channel is kept as it is.
    """
    with style_model.on_device(compute_device(style_model, ctx)) as net:
        return _stylise_batch(net, image, strength, ctx)


def _stylise_batch(net: Any, image: Any, strength: float, ctx: NodeContext | None) -> Any:
    """Each image of the batch through ``net``, blended by ``strength`` (see fast_style)."""
    import torch

    device = next(net.parameters()).device
    batch = image.shape[0]
    results = []
    for index in range(batch):
        if ctx is not None:
            ctx.check_interrupt()
        item = image[index : index + 1]
        if strength == 0.0:
            results.append(item)
        else:
            pixels = item.to(device, torch.float32)
            rgb = pixels[..., :3].expand(*pixels.shape[:-1], 3)  # grey: one channel → three
            with torch.inference_mode():
                styled = stylise(net, rgb.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            styled = torch.lerp(rgb, styled, float(strength))
            if item.shape[-1] == 1:
                styled = styled.mean(-1, keepdim=True)
            elif item.shape[-1] == 4:
                styled = torch.cat([styled, pixels[..., 3:]], dim=-1)
            results.append(styled.to(image.device, image.dtype))
        if ctx is not None:
            ctx.progress(index + 1, batch)
    return torch.cat(results)


NODES = [load_fast_style_model, fast_style]
