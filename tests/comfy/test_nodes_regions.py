"""ComfyUI's regional-prompt class types (gf_comfy/nodes_regions.py): ComfyUI's specs
(nodes.py), the fields each sets, and that combining and averaging keep them."""

from __future__ import annotations

import pytest
import torch

from gf_comfy.names import CLASSES
from gf_diffusion import regions
from gf_diffusion.k_denoiser import KDenoiser
from gf_diffusion.sigmas import ModelSigmas
from gf_diffusion.values import Conditioning, ConditioningEntry

COND = ("conditioning", "CONDITIONING", None, None, None)


def _spec(class_type: str) -> list[tuple]:
    spec = CLASSES[class_type].spec
    return [(i.name, i.type, None if i.required else i.default, i.min, i.max) for i in spec.inputs]


@pytest.mark.parametrize(
    ("class_type", "display_name", "category", "inputs", "step"),
    [
        (
            "ConditioningSetAreaPercentage",
            "Conditioning (Set Area with Percentage)",
            "conditioning",
            [
                COND,
                ("width", "FLOAT", 1.0, 0.0, 1.0),
                ("height", "FLOAT", 1.0, 0.0, 1.0),
                ("x", "FLOAT", 0.0, 0.0, 1.0),
                ("y", "FLOAT", 0.0, 0.0, 1.0),
                ("strength", "FLOAT", 1.0, 0.0, 10.0),
            ],
            {"width": 0.01, "strength": 0.01},
        ),
        (
            "ConditioningSetAreaStrength",
            None,
            "conditioning",
            [COND, ("strength", "FLOAT", 1.0, 0.0, 10.0)],
            {"strength": 0.01},
        ),
        (
            "ConditioningSetMask",
            "Conditioning (Set Mask)",
            "conditioning",
            [
                COND,
                ("mask", "MASK", None, None, None),
                ("strength", "FLOAT", 1.0, 0.0, 10.0),
                ("set_cond_area", "COMBO", "default", None, None),
            ],
            {"strength": 0.01},
        ),
        (
            "ConditioningSetTimestepRange",
            None,
            "advanced/conditioning",
            [COND, ("start", "FLOAT", 0.0, 0.0, 1.0), ("end", "FLOAT", 1.0, 0.0, 1.0)],
            {"start": 0.001, "end": 0.001},
        ),
    ],
)
def test_region_class_types_have_comfyuis_spec(class_type, display_name, category, inputs, step):
    entry = CLASSES[class_type]
    rows = _spec(class_type)
    if class_type == "ConditioningSetMask":  # a choice's type name is graphflow's own
        name, _, default, _, _ = rows[3]
        rows[3] = (name, "COMBO", default, None, None)
        choices = entry.spec.inputs_by_name["set_cond_area"].allowed_choices()
        assert choices == ["default", "mask bounds"]
    assert rows == inputs
    assert (entry.display_name, entry.category) == (display_name, category)
    assert [o.type for o in entry.spec.outputs] == ["CONDITIONING"]
    for name, value in step.items():
        assert entry.input(name).step == value


def _conditioning(*values) -> Conditioning:
    return Conditioning([ConditioningEntry(torch.full((1, 4, 8), float(v))) for v in values])


def test_area_percentage_stores_fractions_resolved_when_sampled():
    base = _conditioning(1.0, 2.0)
    out = CLASSES["ConditioningSetAreaPercentage"].spec.function(base, 0.5, 0.25, 0.5, 0.0, 2.0)
    assert [e.area for e in out.entries] == [("fractions", 0.25, 0.5, 0.0, 0.5)] * 2
    assert all(e.strength == 2.0 and not e.set_area_to_bounds for e in out.entries)
    assert base.entries[0].area is None  # a modified copy
    assert regions.resolve_area(out.entries[0].area, (64, 64)) == (16, 32, 0, 32)


def test_set_mask_strength_and_timestep_range_set_comfyuis_fields():
    base = _conditioning(1.0)
    mask = torch.ones(32, 32)
    masked = CLASSES["ConditioningSetMask"].spec.function(base, mask, 0.6, "mask bounds")
    entry = masked.entries[0]
    assert entry.mask.shape == (1, 32, 32) and entry.mask_strength == 0.6
    assert entry.set_area_to_bounds
    plain = CLASSES["ConditioningSetMask"].spec.function(base, mask, 1.0, "default").entries[0]
    assert not plain.set_area_to_bounds
    strong = CLASSES["ConditioningSetAreaStrength"].spec.function(masked, 3.0)
    assert strong.entries[0].strength == 3.0 and strong.entries[0].mask is entry.mask
    timed = CLASSES["ConditioningSetTimestepRange"].spec.function(strong, 0.25, 0.75).entries[0]
    assert timed.timestep_range == (0.25, 0.75) and timed.strength == 3.0


def test_combine_and_average_keep_the_region_fields():
    area = CLASSES["ConditioningSetAreaPercentage"].spec.function(
        _conditioning(1.0), 0.5, 1.0, 0.0, 0.0, 1.0
    )
    timed = CLASSES["ConditioningSetTimestepRange"].spec.function(area, 0.0, 0.5)
    combined = CLASSES["ConditioningCombine"].spec.function(timed, _conditioning(2.0))
    assert combined.entries[0].timestep_range == (0.0, 0.5)
    assert combined.entries[0].area == ("fractions", 1.0, 0.5, 0.0, 0.0)
    averaged = CLASSES["ConditioningAverage"].spec.function(timed, _conditioning(3.0), 0.5)
    entry = averaged.entries[0]  # ComfyUI's average keeps conditioning_to's options
    assert entry.area == ("fractions", 1.0, 0.5, 0.0, 0.0) and entry.timestep_range == (0.0, 0.5)
    assert float(entry.embeds.mean()) == pytest.approx(2.0)


class _ConstantUNet:
    from types import SimpleNamespace

    config = SimpleNamespace(addition_embed_type=None, in_channels=4)
    dtype = torch.float32

    def __call__(self, x, t, encoder_hidden_states, added_cond_kwargs, return_dict, **_):
        values = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return (values.expand_as(x).clone(),)


def test_a_percentage_area_guides_only_its_part_of_the_latent():
    ms = ModelSigmas.from_config({"beta_schedule": "scaled_linear"})
    left = CLASSES["ConditioningSetAreaPercentage"].spec.function(
        _conditioning(3.0), 0.5, 1.0, 0.0, 0.0, 1.0
    )
    positive = CLASSES["ConditioningCombine"].spec.function(_conditioning(1.0), left)
    x, sigma = torch.zeros(1, 4, 8, 32), 1.0
    eps = -KDenoiser(_ConstantUNet(), ms, positive, Conditioning(), 1.0)(x, sigma) / sigma
    assert eps[0, 0, 0, 0] == pytest.approx(2.0, abs=1e-5)  # (1 + 3) / 2 inside
    assert eps[0, 0, 0, 31] == pytest.approx(1.0, abs=1e-5)  # the whole prompt alone
