"""ControlNet nodes and residuals: apply semantics, the samplers' active ranges, the k
sampler, the base model left untouched, and the resident ControlNet reused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_controlnet_matches_diffusers import HINTS, control_graph, control_hint

from gf_diffusion import control_apply, t2i_adapter
from gf_diffusion.controlnet import apply_controlnet, control_kind, with_control
from gf_diffusion.sigmas import ModelSigmas
from gf_diffusion.unet_call import StepInfo
from gf_diffusion.values import Conditioning, ConditioningEntry, ControlSpec
from graphflow import EventLog, Executor
from graphflow.events import NodeFinished
from graphflow.runtime.handles import ModelHandle
from support import link, make_workflow, registry_with

pytest_plugins = ("tiny_control",)


def _conditioning(count: int = 1) -> Conditioning:
    return Conditioning([ConditioningEntry(torch.zeros(1, 7, 32)) for _ in range(count)])


def test_apply_appends_one_spec_to_every_entry_of_both_and_copies():
    positive, negative = _conditioning(2), _conditioning(1)
    handle = ModelHandle.of(torch.nn.Linear(1, 1), "controlnet")
    pos, neg = apply_controlnet.function(positive, negative, handle, HINTS[0], 0.5, 0.1, 0.9)
    assert [len(e.controls) for e in pos.entries + neg.entries] == [1, 1, 1]
    spec = pos.entries[0].controls[0]
    assert all(e.controls[0] is spec for e in pos.entries + neg.entries)  # one spec, shared
    assert (spec.kind, spec.strength, spec.start, spec.end) == ("controlnet", 0.5, 0.1, 0.9)
    assert all(e.controls == () for e in positive.entries + negative.entries)  # inputs kept
    pos2, _ = apply_controlnet.function(pos, neg, handle, HINTS[1], 1.0, 0.0, 1.0)
    assert [s.hint is h for s, h in zip(pos2.entries[0].controls, HINTS, strict=True)] == [
        True,
        True,
    ]


def test_apply_refuses_a_start_after_the_end_and_a_non_image():
    handle = ModelHandle.of(torch.nn.Linear(1, 1), "controlnet")
    with pytest.raises(ValueError, match="start"):
        apply_controlnet.function(_conditioning(), _conditioning(), handle, HINTS[0], 1.0, 0.8, 0.2)
    with pytest.raises(ValueError, match="IMAGE"):
        apply_controlnet.function(_conditioning(), _conditioning(), handle, torch.zeros(3, 4), 1.0)


def test_an_adapter_handle_is_applied_as_a_t2i_adapter():
    from diffusers import T2IAdapter

    adapter = T2IAdapter(in_channels=3, channels=[8, 8], num_res_blocks=1, downscale_factor=2)
    assert control_kind(ModelHandle.of(adapter, "adapter")) == "t2i_adapter"
    assert control_kind(ModelHandle.of(torch.nn.Linear(1, 1), "net")) == "controlnet"


def test_native_active_range_is_diffusers_rule():
    spec = SimpleNamespace(start=0.25, end=0.75, strength=1.0)
    active = [control_apply.is_active(spec, StepInfo(step_index=i, step_count=4)) for i in range(4)]
    assert active == [False, True, True, False]  # i/n < start or (i+1)/n > end is off


def test_k_active_range_is_comfyuis_percent_to_sigma_rule():
    ms = ModelSigmas(torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2)
    spec = SimpleNamespace(start=0.2, end=0.6, strength=1.0)
    high = float(ms.sigma(0.8 * 999))
    low = float(ms.sigma(0.4 * 999))
    assert t2i_adapter.percent_to_sigma(ms, 0.2) == pytest.approx(high)
    on = [control_apply.is_active(spec, StepInfo(sigma=s, model_sigmas=ms)) for s in
          (high * 1.01, high * 0.99, low * 1.01, low * 0.99)]  # fmt: skip
    assert on == [False, True, True, False]
    assert not control_apply.is_active(SimpleNamespace(start=0, end=1, strength=0.0), None)


class _FakeNet(torch.nn.Module):
    """Records its inputs; returns residuals equal to the hint's mean + the row's latent."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(
            conditioning_embedding_out_channels=(4, 8),
            conditioning_channels=3,
            cross_attention_dim=32,
            addition_embed_type=None,
        )
        self.calls = []

    @property
    def dtype(self):
        return torch.float32

    def forward(self, sample, t, encoder_hidden_states, controlnet_cond, conditioning_scale,
                added_cond_kwargs, return_dict):  # fmt: skip
        self.calls.append((sample.shape[0], tuple(controlnet_cond.shape), conditioning_scale))
        base = sample[:, :1] * conditioning_scale
        return [base, base * 2], base.mean((2, 3), keepdim=True)


def test_residuals_run_once_per_spec_on_its_rows_zeros_elsewhere():
    net = _FakeNet()
    spec = ControlSpec(ModelHandle.of(net, "fake"), "controlnet", HINTS[0], 0.5)
    plain = ConditioningEntry(torch.zeros(1, 7, 32))
    controlled = with_control(Conditioning([plain]), spec).entries[0]
    entries = [plain, controlled, controlled]  # e.g. uncond + two prompts, batch 2
    model_in = torch.randn(6, 4, 8, 8)
    states = torch.zeros(6, 7, 32)
    out = control_apply.residuals(model_in, 10, states, None, entries, 2, StepInfo(0, 4))
    assert net.calls == [(4, (4, 3, 16, 16), 0.5)]  # rows 2..5 only, hint at 2× the latent
    down = out["down_block_additional_residuals"]
    assert torch.equal(down[0][:2], torch.zeros(2, 1, 8, 8))
    assert torch.allclose(down[0][2:], model_in[2:, :1] * 0.5)
    assert out["mid_block_additional_residual"].shape == (6, 1, 1, 1)
    zero = ControlSpec(ModelHandle.of(net, "fake"), "controlnet", HINTS[0], 0.0)
    entry = with_control(Conditioning([plain]), zero).entries[0]
    assert control_apply.residuals(model_in[:2], 10, states[:2], None, [entry], 2, None) == {}


def test_two_specs_add_up_and_an_area_crop_takes_its_part_of_the_hint():
    net = _FakeNet()
    hint = torch.rand(1, 32, 32, 3)
    first = ControlSpec(ModelHandle.of(net, "fake"), "controlnet", hint, 1.0)
    second = ControlSpec(ModelHandle.of(net, "fake"), "controlnet", hint, 2.0)
    entry = ConditioningEntry(torch.zeros(1, 7, 32), controls=(first, second))
    model_in = torch.randn(1, 4, 4, 4)
    step = StepInfo(step_index=0, step_count=1, area=(4, 4, 8, 0), image_size=(32, 32))
    out = control_apply.residuals(model_in, 10, torch.zeros(1, 7, 32), None, [entry], 1, step)
    assert torch.allclose(out["down_block_additional_residuals"][0], model_in[:, :1] * 3.0)
    with spec_net(first) as module:
        crop = control_apply._hint_pixels(first, module, (4, 4), step)
    assert torch.equal(crop, hint.movedim(-1, 1)[:, :, 16:24, 0:8])  # y 8..12, x 0..4 latent


def spec_net(spec):
    return spec.model.on_device("cpu")


# --- in graphs ---------------------------------------------------------------------------


@pytest.fixture
def executor(control_models):
    return Executor(registry_with(control_hint))


def k_graph(controls) -> dict:
    nodes = control_graph(controls)
    sample = nodes["sample"][1]
    nodes["sample"] = (
        "diffusion.k_sampler",
        {
            **{k: sample[k] for k in ("model", "positive", "negative", "latent", "seed", "steps")},
            "sampler": "euler",
            "scheduler": "normal",
            "cfg": 7.0,
        },
    )
    return nodes


def _image(executor, nodes):
    result = executor.run(make_workflow(nodes), outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"]


def test_k_sampler_with_a_controlnet_differs_and_strength_0_equals_without(executor):
    plain = _image(executor, k_graph([]))
    controlled = _image(executor, k_graph([("tiny-cn", 0, 1.0, 0.0, 1.0)]))
    zero = _image(executor, k_graph([("tiny-cn", 0, 0.0, 0.0, 1.0)]))
    late = _image(executor, k_graph([("tiny-cn", 0, 1.0, 0.5, 1.0)]))
    assert (controlled - plain).abs().max() > 1e-2
    assert torch.equal(zero, plain)
    assert (late - plain).abs().max() > 1e-4 and (late - controlled).abs().max() > 1e-4


def test_base_model_untouched_and_only_strength_changed_reuses_the_controlnet(executor):
    nodes = control_graph([("tiny-cn", 0, 1.0, 0.0, 1.0)])
    nodes["show_model"] = ("core.show", {"value": link("ckpt", "model")})
    result = executor.run(make_workflow(nodes), outputs=["decode", "ckpt", "cn0"])
    assert result.ok, result.error
    unet = result.outputs["ckpt"]["model"].unpatched
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    loads = executor.models.loads
    log = EventLog()
    executor.observers.append(log)
    nodes["apply0"][1]["strength"] = 0.5
    again = executor.run(make_workflow(nodes), outputs=["decode", "cn0"])
    assert again.ok, again.error
    assert executor.models.loads == loads  # no reload
    assert "cn0" not in log.nodes(NodeFinished) and "apply0" in log.nodes(NodeFinished)
    assert again.outputs["cn0"]["control_net"] is result.outputs["cn0"]["control_net"]
    after = unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_t2i_adapter_control_gives_intrablock_residuals_on_its_rows_only():
    from diffusers import T2IAdapter

    torch.manual_seed(0)
    adapter = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=2)
    spec = ControlSpec(ModelHandle.of(adapter.eval(), "adapter"), "t2i_adapter", HINTS[0], 0.5)
    plain = ConditioningEntry(torch.zeros(1, 7, 32))
    controlled = ConditioningEntry(torch.zeros(1, 7, 32), controls=(spec,))
    model_in = torch.randn(2, 4, 16, 16)
    step = StepInfo(step_index=0, step_count=4, image_size=(32, 32))
    out = control_apply.residuals(
        model_in, 10, torch.zeros(2, 7, 32), None, [plain, controlled], 1, step
    )
    features = out["down_intrablock_additional_residuals"]
    assert [tuple(f.shape[:2]) for f in features] == [(2, 32), (2, 64)]
    assert all(torch.equal(f[0], torch.zeros_like(f[0])) for f in features)
    assert all(f[1].abs().max() > 0 for f in features)
    late = StepInfo(step_index=3, step_count=4, image_size=(32, 32))
    spec.end = 0.5
    assert control_apply.residuals(model_in, 10, None, None, [plain, controlled], 1, late) == {}
