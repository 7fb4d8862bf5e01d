"""models/controlnet files: every layout loads the folder's weights; what cannot be read
from the weights is refused with a clear message; labels; T2I-Adapters go to their loader."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_control import SD_CONFIG, tiny_controlnet, to_original_layout

from gf_diffusion import controlnet_files as files
from gf_diffusion.controlnet import load_controlnet
from graphflow.runtime.models import ModelFileError

pytest_plugins = ("tiny_control",)


def _weights(path):
    return files.read_controlnet(path, torch.float32, False).state_dict()


@pytest.mark.parametrize("family", ["tiny-cn", "tiny-xl-cn"])
def test_single_files_of_both_layouts_hold_the_folder_weights(control_models, family):
    from diffusers import ControlNetModel

    folder = control_models / "controlnet" / family
    reference = ControlNetModel.from_pretrained(folder, local_files_only=True).state_dict()
    for suffix in ("", "-original", "-bare"):
        state = _weights(control_models / "controlnet" / f"{family}{suffix}.safetensors")
        assert set(state) == set(reference), suffix
        assert all(torch.equal(state[k], reference[k]) for k in reference), suffix


def test_an_sd_file_needs_no_config_its_architecture_is_read_from_the_shapes(control_models):
    from diffusers import ControlNetModel

    path = control_models / "controlnet" / "tiny-cn-original.safetensors"
    assert not files.config_beside(path).exists()
    derived = files.derive_config(files.controlnet_state(path, False))
    folder = ControlNetModel.load_config(control_models / "controlnet" / "tiny-cn")
    for key in ("block_out_channels", "down_block_types", "conditioning_embedding_out_channels"):
        assert list(derived[key]) == list(folder[key])
    assert derived["cross_attention_dim"] == 32 and derived["attention_head_dim"] == 8


def test_released_sizes_are_read_without_a_config():
    """SD 1.5's ControlNet shapes (meta tensors): heads 8, 4 hint widths, 12 zero convs."""
    from diffusers import ControlNetModel

    with torch.device("meta"):
        net = ControlNetModel()  # diffusers' defaults are SD 1.5's ControlNet
    config = files.derive_config(to_original_layout_state(net))
    assert config["block_out_channels"] == [320, 640, 1280, 1280]
    assert config["conditioning_embedding_out_channels"] == [16, 32, 96, 256]
    assert config["layers_per_block"] == 2 and config["attention_head_dim"] == 8
    assert config["down_block_types"] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]


def to_original_layout_state(net):
    """A meta ControlNet's state through the original layout and back to diffusers keys."""
    config = {**net.config, "conditioning_embedding_out_channels": (16, 32, 96, 256)}
    original = to_original_layout(net.state_dict(), config)
    assert "control_model.input_hint_block.14.weight" in original  # the released numbering
    return files.to_diffusers_keys(original)


def test_an_sdxl_file_of_unreleased_sizes_asks_for_a_config_beside_it(control_models, tmp_path):
    source = control_models / "controlnet" / "tiny-xl-cn-original.safetensors"
    lonely = tmp_path / "alone.safetensors"
    lonely.write_bytes(source.read_bytes())
    with pytest.raises(ModelFileError, match=r"alone\.config\.json"):
        files.read_controlnet(lonely, torch.float32, False)


def test_a_wrong_config_beside_is_reported_not_half_loaded(tmp_path):
    from safetensors.torch import save_file

    net = tiny_controlnet(SD_CONFIG)
    path = tmp_path / "odd.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    wrong = {**net.config, "layers_per_block": 2}
    files.config_beside(path).write_text(json.dumps(dict(wrong)))
    with pytest.raises(ModelFileError, match="missing"):
        files.read_controlnet(path, torch.float32, False)


def test_checks_refuse_pickles_other_files_and_an_empty_folder(control_models, tmp_path):
    folder = control_models / "controlnet"
    (folder / "old.pth").write_bytes(b"not read")
    try:
        message = load_controlnet.check_function(control_net_name="old.pth")
        assert message.startswith("control_net_name:") and "pickle" in message.lower()
    finally:
        (folder / "old.pth").unlink()
    assert load_controlnet.check_function(control_net_name="tiny-cn.safetensors") is None
    message = load_controlnet.check_function(control_net_name="missing.safetensors")
    assert message.startswith("control_net_name:")


def test_labels_name_the_family(control_models):
    assert files.controlnet_label("tiny-cn-original.safetensors") == "ControlNet, SD 1.x/2.x"
    assert files.controlnet_label("tiny-xl-cn.safetensors") == "ControlNet, SDXL"
    assert files.controlnet_label("tiny-cn") == "diffusers ControlNet"
    assert "tiny-cn" in files.list_controlnets()


def test_a_t2i_adapter_in_models_controlnet_loads_as_an_adapter(control_models):
    from diffusers import T2IAdapter

    from gf_diffusion.controlnet import control_kind, load_controlnet_handle
    from graphflow.runtime.models import ModelManager

    folder = control_models / "controlnet" / "tiny-adapter"
    T2IAdapter(
        in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=2
    ).save_pretrained(folder)
    try:
        assert files.is_adapter_path(folder, False)
        ctx = type("Ctx", (), {"device": "cpu", "dtype": torch.float32, "models": ModelManager()})()
        handle = load_controlnet_handle(ctx, "tiny-adapter")
        assert control_kind(handle) == "t2i_adapter"
    finally:
        import shutil

        shutil.rmtree(folder)
