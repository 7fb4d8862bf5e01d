"""Generator files users bring to models/gan: DCGAN layouts read weights-only, sizes read off
the tensors, and clear refusals for everything else."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from gf_gan import dcgan_files
from gf_gan.gan_models import DCGANGenerator, GeneratorShape
from graphflow.runtime.models import ModelFileError


def tutorial_generator(nz: int, ngf: int, nc: int, layers: int, extra_in: int = 0) -> nn.Module:
    """A DCGAN generator written as the PyTorch tutorial does (``main.N``), random weights
    and batch-norm statistics, a dropout after the first block (indices skip one)."""
    widths = [ngf * 2 ** (layers - 2 - i) for i in range(layers - 1)] + [nc]
    modules, channels = [], nz + extra_in
    for index, width in enumerate(widths):
        stride, padding = (1, 0) if index == 0 else (2, 1)
        modules.append(nn.ConvTranspose2d(channels, width, 4, stride, padding, bias=False))
        if index < len(widths) - 1:
            modules += [nn.BatchNorm2d(width), nn.ReLU(True)]
            if index == 0:
                modules.append(nn.Dropout(0.2))
        channels = width
    modules.append(nn.Tanh())
    torch.manual_seed(0)
    network = nn.Sequential(*modules)
    for module in network:
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return network.eval()


class Wrapped(nn.Module):
    """What ``torch.save(generator.state_dict())`` sees for a generator with ``self.main``."""

    def __init__(self, main: nn.Module):
        super().__init__()
        self.main = main


@pytest.fixture
def models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "gan"
    folder.mkdir()
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    return folder


def test_a_tutorial_state_dict_in_safetensors_loads_with_its_sizes_read_off(models_folder):
    reference = Wrapped(tutorial_generator(nz=16, ngf=8, nc=3, layers=4))
    save_file(reference.state_dict(), str(models_folder / "mine.safetensors"))
    assert "mine.safetensors" in dcgan_files.list_gan_models()
    ours = dcgan_files.load_generator("mine.safetensors")
    assert ours.shape == GeneratorShape(nz=16, ngf=8, nc=3, image_size=32)
    z = torch.randn(3, 16)
    with torch.no_grad():
        assert (ours(z) - reference.main(z[:, :, None, None])).abs().max() < 1e-5


def test_a_pickled_training_checkpoint_needs_the_opt_in_then_loads_weights_only(models_folder):
    reference = Wrapped(tutorial_generator(nz=10, ngf=4, nc=1, layers=3))
    checkpoint = {"epoch": 5, "netG_state_dict": reference.state_dict(), "netD_state_dict": {}}
    torch.save(checkpoint, models_folder / "run.pt")
    with pytest.raises(ModelFileError, match="pickle"):
        dcgan_files.load_generator("run.pt")
    ours = dcgan_files.load_generator("run.pt", allow_pickle=True)
    assert ours.shape == GeneratorShape(nz=10, ngf=4, nc=1, image_size=16)
    z = torch.randn(2, 10)
    with torch.no_grad():
        assert (ours(z) - reference.main(z[:, :, None, None])).abs().max() < 1e-5


def test_a_dataparallel_prefix_is_read_through(models_folder):
    state = {
        f"module.{k}": v for k, v in Wrapped(tutorial_generator(8, 4, 3, 3)).state_dict().items()
    }
    save_file(state, str(models_folder / "parallel.safetensors"))
    assert dcgan_files.load_generator("parallel.safetensors").shape.nz == 8


def test_safetensors_metadata_classes_make_a_conditional_generator(models_folder):
    reference = tutorial_generator(nz=12, ngf=4, nc=3, layers=3, extra_in=3)
    save_file(reference.state_dict(), str(models_folder / "c.safetensors"), {"classes": "a, b,c"})
    ours = dcgan_files.load_generator("c.safetensors")
    assert ours.nz == 12 and ours.classes == ("a", "b", "c")
    z, labels = torch.randn(3, 12), torch.tensor([2, 0, 1])
    onehot = nn.functional.one_hot(labels, 3).float()
    with torch.no_grad():
        expected = reference(torch.cat([z, onehot], 1)[:, :, None, None])
        assert (ours(z, labels) - expected).abs().max() < 1e-5


def test_our_own_modules_state_dict_loads_back(models_folder):
    module = DCGANGenerator(nz=20, ngf=4, nc=3, image_size=64, classes=("x", "y"))
    save_file(module.state_dict(), str(models_folder / "own.safetensors"), {"classes": "x,y"})
    again = dcgan_files.load_generator("own.safetensors")
    assert again.shape == module.shape
    assert all(torch.equal(again.state_dict()[k], v) for k, v in module.state_dict().items())


def test_an_unknown_layout_is_refused_naming_the_keys_seen(models_folder):
    state = {"mapping.fc0.weight": torch.zeros(512, 512), "synthesis.b4.const": torch.zeros(4)}
    save_file(state, str(models_folder / "stylegan.safetensors"))
    with pytest.raises(ModelFileError, match=r"layout graphflow knows.*'mapping.fc0.weight'"):
        dcgan_files.load_generator("stylegan.safetensors")


def test_a_sequential_with_3x3_kernels_is_refused_with_the_reason(models_folder):
    state = {
        "main.0.weight": torch.zeros(16, 8, 3, 3),
        "main.1.weight": torch.ones(8),
        "main.1.bias": torch.zeros(8),
        "main.1.running_mean": torch.zeros(8),
        "main.1.running_var": torch.ones(8),
        "main.3.weight": torch.zeros(8, 3, 3, 3),
    }
    save_file(state, str(models_folder / "k3.safetensors"))
    with pytest.raises(ModelFileError, match=r"kernels \[\(3, 3\), \(3, 3\)\].*'main.0.weight'"):
        dcgan_files.load_generator("k3.safetensors")


def test_widths_that_do_not_halve_are_refused(models_folder):
    state = tutorial_generator(nz=8, ngf=4, nc=3, layers=3).state_dict()  # 8 → 8 → 4 → 3
    state["4.weight"] = torch.zeros(8, 6, 4, 4)  # 8 → 8 → 6 → 3: 8 is not twice 6
    state["7.weight"] = torch.zeros(6, 3, 4, 4)
    for key in ("weight", "bias", "running_mean", "running_var"):
        state[f"5.{key}"] = torch.ones(6)
    save_file(state, str(models_folder / "wide.safetensors"))
    with pytest.raises(ModelFileError, match="not DCGAN's halving"):
        dcgan_files.load_generator("wide.safetensors")


def test_a_checkpoint_without_a_generator_lists_its_keys(models_folder):
    torch.save({"epoch": 3, "netD_state_dict": {"x": 1}}, models_folder / "disc.pt")
    with pytest.raises(ModelFileError, match=r"no generator state dict.*'epoch'"):
        dcgan_files.load_generator("disc.pt", allow_pickle=True)


class Payload:
    """Something only a full unpickler would rebuild (runs code on load)."""


def test_a_pickled_object_is_refused_without_running_it(models_folder):
    (models_folder / "model.pt").write_bytes(pickle.dumps({"generator": Payload()}, protocol=2))
    with pytest.raises(ModelFileError, match="never runs code from a pickle"):
        dcgan_files.load_generator("model.pt", allow_pickle=True)


def test_a_missing_file_is_named_and_only_user_pickles_need_the_opt_in(models_folder):
    with pytest.raises(ModelFileError, match=r"no model 'nothing\.safetensors'"):
        dcgan_files.load_generator("nothing.safetensors")
    assert dcgan_files.check_gan_pickle_rule(dcgan_files.FACES, False) is None
    assert "pickle" in dcgan_files.check_gan_pickle_rule("run.pt", False)


def test_generator_shape_refuses_sizes_dcgan_cannot_make():
    with pytest.raises(ValueError, match="power of two"):
        GeneratorShape(image_size=96)
    assert GeneratorShape(ngf=64, image_size=128).widths() == [1024, 512, 256, 128, 64, 3]
