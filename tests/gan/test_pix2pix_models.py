"""pix2pix generators: the original release's key layouts, recognising and loading its files
(weights-only), and clear refusals for anything else."""

from __future__ import annotations

import pytest
import torch

from gf_gan.pix2pix_models import (
    GeneratorLayout,
    detect_layout,
    generator_from_state_dict,
    read_generator,
)
from gf_gan.pix2pix_networks import (
    PatchDiscriminator,
    ResnetGenerator,
    UnetGenerator,
    input_statistics,
)
from graphflow.runtime.models import ModelFileError

INNERMOST_256 = "model.model.1" + ".model.3" * 6 + ".model."  # the 8th level of unet_256

# Keys and shapes of the release's unet_256 (batch norm, ngf 64) as its networks.py nests
# them: a level's Sequential is ``model``, the next level is its entry 1 (3 at the top).
UNET_256_KEYS = {
    "model.model.0.weight": (64, 3, 4, 4),
    "model.model.1.model.1.weight": (128, 64, 4, 4),
    "model.model.1.model.2.weight": (128,),
    "model.model.1.model.2.running_var": (128,),
    "model.model.1.model.3.model.1.weight": (256, 128, 4, 4),
    "model.model.1.model.5.weight": (256, 64, 4, 4),
    "model.model.1.model.6.running_mean": (64,),
    INNERMOST_256 + "1.weight": (512, 512, 4, 4),
    INNERMOST_256 + "3.weight": (512, 512, 4, 4),
    INNERMOST_256 + "4.weight": (512,),
    "model.model.3.weight": (128, 3, 4, 4),
    "model.model.3.bias": (3,),
}
UNET_256_ABSENT = ("model.model.0.bias", "model.model.1.model.1.bias", INNERMOST_256 + "2.weight")

# The release's resnet_9blocks with instance norm (CycleGAN's default).
RESNET_9_KEYS = {
    "model.1.weight": (64, 3, 7, 7),
    "model.1.bias": (64,),
    "model.4.weight": (128, 64, 3, 3),
    "model.7.weight": (256, 128, 3, 3),
    "model.10.conv_block.1.weight": (256, 256, 3, 3),
    "model.10.conv_block.5.weight": (256, 256, 3, 3),
    "model.18.conv_block.5.bias": (256,),
    "model.19.weight": (256, 128, 3, 3),
    "model.22.weight": (128, 64, 3, 3),
    "model.26.weight": (3, 64, 7, 7),
    "model.26.bias": (3,),
}
RESNET_9_ABSENT = ("model.2.weight", "model.2.running_mean", "model.19.conv_block.1.weight")


def shapes(module: torch.nn.Module) -> dict[str, tuple]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and batch-norm statistic random (so a mix-up of tensors shows)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.normal_(0, 0.2)
    return module.eval()


def test_unet_256_has_the_release_keys_and_shapes():
    network = UnetGenerator(3, 3, num_downs=8, ngf=64, norm="batch")
    found = shapes(network)
    assert {key: found.get(key) for key in UNET_256_KEYS} == UNET_256_KEYS
    assert not [key for key in UNET_256_ABSENT if key in found]
    # outermost 3 (down weight, up weight and bias), 6 middle levels × 10 (two convolutions,
    # two norms of 4), innermost 6 (two convolutions, one norm)
    assert len([k for k in found if not k.endswith("num_batches_tracked")]) == 3 + 60 + 6
    parameters = sum(p.numel() for p in network.parameters())
    assert parameters == 54_413_955  # the release prints "Total number of parameters: 54.414 M"


def test_resnet_9blocks_has_the_release_keys_and_shapes():
    network = ResnetGenerator(3, 3, ngf=64, norm="instance", blocks=9)
    found = shapes(network)
    assert {key: found.get(key) for key in RESNET_9_KEYS} == RESNET_9_KEYS
    assert not [key for key in RESNET_9_ABSENT if key in found]
    assert sum(p.numel() for p in network.parameters()) == 11_378_179  # CycleGAN's 11.378 M


def test_batch_norm_resnet_has_norm_keys_and_no_conv_biases():
    found = shapes(ResnetGenerator(ngf=8, norm="batch"))
    assert found["model.2.running_mean"] == (8,) and "model.1.bias" not in found
    assert found["model.26.bias"] == (3,)  # the last convolution has no norm after it


def test_dropout_shifts_the_second_resnet_convolution():
    found = shapes(ResnetGenerator(ngf=8, dropout=True, blocks=2))
    assert "model.10.conv_block.6.weight" in found and "model.10.conv_block.5.weight" not in found


def test_patch_discriminator_gives_the_70_pixel_patch_grid():
    logits = PatchDiscriminator(6, ndf=8, layers=3)(torch.zeros(1, 6, 256, 256))
    assert logits.shape == (1, 1, 30, 30)


LAYOUTS = [
    GeneratorLayout("unet", 3, 3, ngf=8, depth=8, norm="batch"),
    GeneratorLayout("unet", 1, 3, ngf=4, depth=7, norm="instance"),
    GeneratorLayout("unet", 3, 1, ngf=16, depth=5, norm="batch"),
    GeneratorLayout("resnet", 3, 3, ngf=8, depth=9, norm="instance"),
    GeneratorLayout("resnet", 3, 3, ngf=8, depth=6, norm="batch", dropout=True),
    GeneratorLayout("resnet", 1, 3, ngf=4, depth=3, norm="batch", padding="zero"),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.describe())
def test_the_layout_is_read_back_from_the_keys(layout):
    assert detect_layout(layout.build().state_dict()) == layout


def test_release_names_and_sizes():
    unet, resnet = LAYOUTS[0], LAYOUTS[3]
    assert (unet.name, unet.native_size, unet.size_step) == ("unet_256", 256, 256)
    assert (resnet.name, resnet.native_size, resnet.size_step) == ("resnet_9blocks", 256, 4)


@pytest.mark.parametrize(
    ("network", "side"),
    [(UnetGenerator(3, 3, 8, ngf=4), 256), (ResnetGenerator(ngf=4, norm="instance"), 64)],
    ids=["unet_256", "resnet_9blocks"],
)
def test_pth_and_safetensors_files_load_to_the_same_outputs(tmp_path, network, side):
    from safetensors.torch import save_file

    network = randomised(network)
    torch.save(network.state_dict(), tmp_path / "latest_net_G.pth")
    state = {k: v.contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(tmp_path / "latest_net_G.safetensors"))
    image = torch.rand(1, 3, side, side) * 2 - 1
    with torch.no_grad():
        expected = network(image)
        for name in ("latest_net_G.pth", "latest_net_G.safetensors"):
            loaded, layout = read_generator(tmp_path / name, allow_pickle=True)
            assert layout.ngf == 4
            assert torch.equal(loaded(image), expected), name


def test_a_pth_file_needs_the_pickle_opt_in(tmp_path):
    torch.save(UnetGenerator(3, 3, 5, ngf=4).state_dict(), tmp_path / "g.pth")
    with pytest.raises(ModelFileError, match=r"g\.pth is a pickle file"):
        read_generator(tmp_path / "g.pth", allow_pickle=False)


def test_a_pickle_with_code_is_refused_not_run(tmp_path):
    torch.save(
        {"model.model.0.weight": torch.zeros(1), "extra": GeneratorLayout}, tmp_path / "g.pth"
    )
    with pytest.raises(ModelFileError, match=r"g\.pth is not a plain weights file"):
        read_generator(tmp_path / "g.pth", allow_pickle=True)


def test_data_parallel_prefixes_and_old_instance_norm_statistics_are_tolerated():
    network = randomised(ResnetGenerator(ngf=4, norm="instance", blocks=2))
    state = {f"module.{k}": v for k, v in network.state_dict().items()}
    state["module.model.2.running_mean"] = torch.zeros(4)  # what releases before 0.4 saved
    state["module.model.2.running_var"] = torch.ones(4)
    loaded, layout = generator_from_state_dict(state)
    assert layout.name == "resnet_2blocks"
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(image), network(image))


def test_an_unknown_layout_is_refused_with_what_was_expected():
    state = {"conv_first.weight": torch.zeros(8, 3, 3, 3), "body.0.weight": torch.zeros(8)}
    with pytest.raises(ModelFileError) as caught:
        detect_layout(state)
    message = str(caught.value)
    assert "not a pix2pix generator of the original PyTorch release" in message
    assert "model.10.conv_block.1.weight" in message and "conv_first.weight" in message


def test_weights_that_do_not_fit_the_detected_layout_are_refused(tmp_path):
    from safetensors.torch import save_file

    state = UnetGenerator(3, 3, 5, ngf=4).state_dict()
    del state["model.model.1.model.5.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "cut.safetensors"))
    with pytest.raises(
        ModelFileError, match=r"cut\.safetensors: looks like a unet_32 .* do not fit"
    ):
        read_generator(tmp_path / "cut.safetensors")


def test_input_statistics_normalise_each_batch_by_itself_and_keep_the_averages():
    network = randomised(UnetGenerator(3, 3, 5, ngf=4))
    before = {k: v.clone() for k, v in network.state_dict().items()}
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), input_statistics():
        alone = network(images[:1])
        assert not torch.allclose(alone, network(images[:1] * 0.5 + 0.2))
    with torch.no_grad():
        assert not torch.allclose(alone, network(images[:1]))  # running averages differ
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
