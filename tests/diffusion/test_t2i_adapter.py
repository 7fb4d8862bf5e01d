"""T2I-Adapters: file layouts, clear refusals, residuals per UNet call, the loader node."""

from __future__ import annotations

import pytest
import torch
from diffusers import MultiAdapter
from safetensors.torch import save_file
from tiny_adapter import original_layout, tiny_adapter

from gf_diffusion import t2i_adapter as t2i
from gf_diffusion.sigmas import ModelSigmas
from gf_diffusion.t2i_adapter_files import AdapterFileError, read_adapter
from gf_diffusion.unet_call import StepInfo
from gf_diffusion.values import ControlSpec
from graphflow.runtime.handles import ModelHandle
from graphflow.runtime.models import ModelFileError


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _save(state: dict, path):
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


CONFIG = ("in_channels", "channels", "num_res_blocks", "downscale_factor", "adapter_type")
KINDS = {
    "sd1 full": ("full_adapter", {}),
    "sd1 full, grey hint": ("full_adapter", {"in_channels": 1}),
    "light": ("light_adapter", {}),
    "sdxl": ("full_adapter_xl", {"downscale_factor": 16}),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_original_and_diffusers_layouts_load_identical_weights(tmp_path, name):
    kind, config = KINDS[name]
    adapter = tiny_adapter(kind, **config)
    original = read_adapter(_save(original_layout(adapter), tmp_path / "original.safetensors"))
    diffusers_file = read_adapter(_save(adapter.state_dict(), tmp_path / "diffusers.safetensors"))
    adapter.save_pretrained(tmp_path / "folder")
    folder = read_adapter(tmp_path / "folder")
    for loaded in (original, diffusers_file, folder):
        assert {k: loaded.config[k] for k in CONFIG} == {k: adapter.config[k] for k in CONFIG}
        assert _same_weights(loaded, adapter)


def test_adapter_prefix_and_training_checkpoint_entry(tmp_path):
    adapter = tiny_adapter()
    prefixed = {"adapter." + k: v for k, v in original_layout(adapter).items()}
    assert _same_weights(read_adapter(_save(prefixed, tmp_path / "p.safetensors")), adapter)
    torch.save({"adapter": original_layout(adapter)}, tmp_path / "train.pth")
    assert _same_weights(read_adapter(tmp_path / "train.pth", allow_pickle=True), adapter)
    with pytest.raises(ModelFileError, match="pickle"):
        read_adapter(tmp_path / "train.pth")


def test_dtype_is_applied(tmp_path):
    path = _save(tiny_adapter().state_dict(), tmp_path / "a.safetensors")
    assert next(read_adapter(path, torch.float16).parameters()).dtype == torch.float16


BAD = {
    "controlnet": ({"controlnet_cond_embedding.conv_in.weight": torch.zeros(1)}, "ControlNet"),
    "style model": ({"style_embedding": torch.zeros(1, 2, 3)}, "style"),
    "unrelated": ({"encoder.conv_in.weight": torch.zeros(1)}, "not a T2I-Adapter"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_files_that_are_no_adapter_are_named(tmp_path, name):
    state, message = BAD[name]
    path = _save(state, tmp_path / "bad.safetensors")
    with pytest.raises(AdapterFileError, match=message):
        read_adapter(path)
    assert not t2i.is_adapter_state_dict(state)


def test_broken_and_unsupported_adapters_are_refused(tmp_path):
    state = original_layout(tiny_adapter())
    missing = {k: v for k, v in state.items() if k != "body.3.block1.weight"}
    with pytest.raises(AdapterFileError, match="body"):
        read_adapter(_save(missing, tmp_path / "missing.safetensors"))
    skip = {**state, "body.0.skep.weight": torch.zeros(32, 32, 1, 1)}
    with pytest.raises(AdapterFileError, match="skip"):
        read_adapter(_save(skip, tmp_path / "skep.safetensors"))
    odd = {**state, "conv_in.weight": torch.zeros(32, 7, 3, 3)}
    with pytest.raises(AdapterFileError, match="7 channels"):
        read_adapter(_save(odd, tmp_path / "odd.safetensors"))


def test_layouts_are_recognised_from_keys():
    adapter = tiny_adapter()
    assert t2i.adapter_layout(original_layout(adapter)) == "original-full"
    assert t2i.adapter_layout(adapter.state_dict()) == "diffusers-full"
    light = tiny_adapter("light_adapter")
    assert t2i.adapter_layout(original_layout(light)) == "original-light"
    assert t2i.adapter_layout(light.state_dict()) == "diffusers-light"
    assert t2i.is_adapter_state_dict({"adapter." + k for k in original_layout(adapter)})


# --- residuals -------------------------------------------------------------------------


def _spec(adapter, hint, **options):
    return ControlSpec(ModelHandle.of(adapter), "t2i_adapter", hint, **options)


def _hint(size=32, batch=1, seed=0):
    return torch.rand(batch, size, size, 3, generator=torch.Generator().manual_seed(seed))


NATIVE = StepInfo(step_index=0, step_count=4, image_size=(32, 32))


def _run(spec, rows=1, step=NATIVE, area=None, **extra):
    return t2i.adapter_residuals(
        spec, rows, step.image_size, area, "cpu", torch.float32, step, **extra
    )


def test_residuals_are_the_adapter_features_times_strength():
    adapter, hint = tiny_adapter(), _hint()
    ours = _run(_spec(adapter, hint, strength=0.7), rows=2)
    with torch.no_grad():
        theirs = adapter(hint.permute(0, 3, 1, 2))
    assert [r.shape for r in ours] == [(2, 32, 16, 16), (2, 64, 8, 8)]
    for mine, reference in zip(ours, theirs, strict=True):
        assert torch.equal(mine, (reference * 0.7).repeat(2, 1, 1, 1))


def test_adapter_runs_once_per_hint_and_size():
    adapter, hint = tiny_adapter(), _hint()
    calls = []
    adapter.register_forward_hook(lambda *_: calls.append(1))
    spec = _spec(adapter, hint)
    first = _run(spec)
    for i in range(1, 4):
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                first, _run(spec, step=StepInfo(i, 4, image_size=(32, 32))), strict=True
            )
        )
    assert len(calls) == 1
    _run(spec, step=StepInfo(0, 4, image_size=(64, 64)))
    assert len(calls) == 2
    assert _run(spec) is not _run(spec)  # a fresh list: the UNet pops from it


def test_native_start_end_follow_diffusers_step_rule():
    spec = _spec(tiny_adapter(), _hint(), start=0.2, end=0.6)
    active = [i for i in range(10) if _run(spec, step=StepInfo(i, 10, image_size=(32, 32)))]
    assert active == [2, 3, 4, 5]  # off while i/n < 0.2 or (i+1)/n > 0.6


def test_sigma_start_end_follow_comfyui_percent_rule():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    ms = ModelSigmas(betas)
    spec = _spec(tiny_adapter(), _hint(), start=0.25, end=0.75)
    high = float(ms.sigma(0.75 * 999))
    low = float(ms.sigma(0.25 * 999))

    def applies(sigma):
        return _run(spec, step=StepInfo(sigma=sigma, model_sigmas=ms, image_size=(32, 32)))

    assert applies(high * 0.999) and applies(low * 1.001)
    assert applies(high * 1.001) is None and applies(low * 0.999) is None
    everywhere = _spec(tiny_adapter(), _hint())
    top = ms.sigma_max
    assert _run(everywhere, step=StepInfo(sigma=top, model_sigmas=ms, image_size=(32, 32)))


def test_grey_adapters_see_luminance_natively_and_the_channel_mean_in_comfy_mode():
    adapter, hint = tiny_adapter(in_channels=1), _hint()
    native = _run(_spec(adapter, hint))
    grey = (hint * torch.tensor([0.299, 0.587, 0.114])).sum(-1)[:, None]
    with torch.no_grad():
        assert torch.allclose(native[0], adapter(grey)[0], atol=1e-6)
        ms = ModelSigmas(torch.linspace(1e-4, 0.02, 1000))
        comfy = _run(
            _spec(adapter, hint), step=StepInfo(sigma=1.0, model_sigmas=ms, image_size=(32, 32))
        )
        assert torch.allclose(comfy[0], adapter(hint.mean(-1)[:, None])[0], atol=1e-6)


def test_hint_is_resized_to_the_image():
    adapter, hint = tiny_adapter(), _hint(size=48)
    ours = _run(_spec(adapter, hint))
    resized = torch.nn.functional.interpolate(
        hint.permute(0, 3, 1, 2), size=(32, 32), mode="bilinear", antialias=True
    )
    with torch.no_grad():
        assert torch.allclose(ours[1], adapter(resized)[1], atol=1e-6)


def test_an_area_call_gets_the_adapter_of_its_part_of_the_hint():
    adapter, hint = tiny_adapter(), _hint()
    ours = _run(_spec(adapter, hint), area=(8, 4, 8, 12))  # h, w, y, x in latent pixels
    part = hint.permute(0, 3, 1, 2)[:, :, 16:32, 24:32]  # 2 image pixels per latent pixel
    with torch.no_grad():
        theirs = adapter(part)
    assert [r.shape[-2:] for r in ours] == [(8, 4), (4, 2)]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_hint_batch_repeats_over_rows():
    adapter, hint = tiny_adapter(), _hint(batch=2)
    ours = _run(_spec(adapter, hint), rows=4)
    assert torch.equal(ours[0][2], ours[0][0]) and torch.equal(ours[0][3], ours[0][1])
    assert not torch.equal(ours[0][0], ours[0][1])


def test_two_adapters_add_up_as_diffusers_multi_adapter():
    first, second = tiny_adapter(seed=1), tiny_adapter(seed=2)
    h1, h2 = _hint(seed=1), _hint(seed=2)
    ours = t2i.add_residuals(
        _run(_spec(first, h1, strength=0.6)), _run(_spec(second, h2, strength=0.4))
    )
    with torch.no_grad():
        theirs = MultiAdapter([first, second])(
            [h1.permute(0, 3, 1, 2), h2.permute(0, 3, 1, 2)], [0.6, 0.4]
        )
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs, strict=True))


# --- the loader node -------------------------------------------------------------------


def test_loader_node_lists_adapters_of_both_folders_and_loads_them(tmp_path, monkeypatch):
    from graphflow import Executor, load_plugins
    from support import make_workflow

    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    adapter = tiny_adapter()
    (tmp_path / "t2i_adapter").mkdir()
    (tmp_path / "controlnet").mkdir()
    _save(original_layout(adapter), tmp_path / "t2i_adapter" / "canny.safetensors")
    adapter.save_pretrained(tmp_path / "t2i_adapter" / "depth")
    _save(adapter.state_dict(), tmp_path / "controlnet" / "sketch.safetensors")
    cn = {"controlnet_cond_embedding.conv_in.weight": torch.zeros(1)}
    _save(cn, tmp_path / "controlnet" / "real-controlnet.safetensors")
    assert t2i.list_adapters() == ["canny.safetensors", "depth", "sketch.safetensors"]

    executor = Executor(load_plugins().registry)
    for name in t2i.list_adapters():
        workflow = make_workflow(
            {
                "load": ("diffusion.load_t2i_adapter", {"adapter_name": name}),
                "show": ("core.show", {"value": {"link": ["load", "control_net"]}}),
            }
        )
        result = executor.run(workflow, outputs=["load"])
        assert result.ok, result.error
        (handle,) = result.outputs["load"].values()
        assert _same_weights(handle.unpatched, adapter)

    # ComfyUI loads adapters through ControlNetLoader: an adapter in models/controlnet
    workflow = make_workflow(
        {
            "load": ("diffusion.load_controlnet", {"control_net_name": "sketch.safetensors"}),
            "show": ("core.show", {"value": {"link": ["load", "control_net"]}}),
        }
    )
    result = executor.run(workflow, outputs=["load"])
    assert result.ok, result.error
    assert _same_weights(result.outputs["load"]["control_net"].unpatched, adapter)
