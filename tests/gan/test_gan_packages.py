"""The packaged GAN generators: our module reproduces each package's own generator, and the
Sample / Interpolation nodes' seeds, truncation, labels and interpolation ends."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from gf_gan import dcgan_files, gan_nodes
from graphflow import Executor
from graphflow.errors import ValidationFailed
from graphflow.runtime.models import ModelManager
from support import link, make_workflow, registry_with

ROOT = Path(__file__).resolve().parents[2]

FACES_MISSING = dcgan_files.package_folder("gan_face_generate") is None
EYES_MISSING = dcgan_files.package_folder("omniart_eye_generator") is None
needs_faces = pytest.mark.skipif(FACES_MISSING, reason="gan-face-generate is not installed")
needs_eyes = pytest.mark.skipif(EYES_MISSING, reason="omniart-eye-generator is not installed")


def package_submodule(package: str, submodule: str):
    """A package's submodule run from its file, without the package's __init__."""
    path = dcgan_files.package_folder(package) / f"{submodule}.py"
    spec = importlib.util.spec_from_file_location(f"_reference_{package}_{submodule}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def handle_for(name: str):
    """A model handle of packaged generator ``name`` (as Load GAN Generator returns it)."""
    path = dcgan_files.gan_model_path(name)
    return ModelManager().load("gan_generator", path, lambda: dcgan_files.load_generator(name))


@pytest.fixture(scope="module")
def faces():
    return handle_for(dcgan_files.FACES)


@pytest.fixture(scope="module")
def eyes():
    return handle_for(dcgan_files.EYES)


def latents(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 100, generator=torch.Generator().manual_seed(seed))


# -- equality with the packages' own generators ---------------------------------------------


@needs_faces
def test_faces_match_gan_face_generates_own_generator():
    models = package_submodule("gan_face_generate", "models")
    reference = models.Generator(0, 3, 100, 64)
    path = dcgan_files.package_folder("gan_face_generate") / "weights.tar"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    reference.load_state_dict(checkpoint["netG_state_dict"])
    ours = dcgan_files.load_generator(dcgan_files.FACES)
    z = latents(4)
    with torch.no_grad():
        expected = reference.eval()(z[:, :, None, None])
        assert (ours(z) - expected).abs().max() < 1e-5
    assert ours.shape.image_size == 64 and ours.nz == 100 and ours.classes == ()


@needs_eyes
def test_eyes_match_omniart_eye_generators_own_generator():
    generator = package_submodule("omniart_eye_generator", "generator")
    reference = generator.Generator()
    path = dcgan_files.package_folder("omniart_eye_generator") / "generator_model_state.pth"
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ours = dcgan_files.load_generator(dcgan_files.EYES)
    z, labels = latents(4), torch.tensor([0, 3, 5, 7])
    onehot = torch.nn.functional.one_hot(labels, 8).float()
    with torch.no_grad():
        expected = reference.eval()(z[:, :, None, None], onehot)
        assert (ours(z, labels) - expected).abs().max() < 1e-5
    assert ours.shape.image_size == 128 and ours.classes == dcgan_files.EYE_COLOURS


@needs_eyes
def test_the_eye_package_is_never_imported():
    dcgan_files.load_generator(dcgan_files.EYES)
    assert "omniart_eye_generator" not in sys.modules  # its __init__ loads onto CUDA


@needs_eyes
def test_eye_colours_are_the_packages_classes_in_its_order():
    source = (dcgan_files.package_folder("omniart_eye_generator") / "eye_generator.py").read_text()
    assert f"classes = {dcgan_files.EYE_COLOURS!r}" in source


# -- seeds, batches, truncation ---------------------------------------------------------------


@needs_faces
def test_image_i_of_a_batch_is_the_sample_of_seed_plus_i(faces):
    batch = gan_nodes.sample_gan(faces, seed=7, batch_size=4)
    single = gan_nodes.sample_gan(faces, seed=9, batch_size=1)
    assert batch.shape == (4, 64, 64, 3) and batch.min() >= 0 and batch.max() <= 1
    assert (batch[2] - single[0]).abs().max() < 1e-5
    assert torch.equal(single, gan_nodes.sample_gan(faces, seed=9))
    assert (batch[0] - batch[1]).abs().mean() > 0.05  # different seeds, different faces


def test_scale_truncation_multiplies_the_latent_by_psi():
    full = gan_nodes.truncated_latent(5, 100)
    assert torch.equal(gan_nodes.truncated_latent(5, 100, 0.5, "scale"), full * 0.5)
    assert torch.equal(gan_nodes.truncated_latent(5, 100, 1.0, "resample"), full)


def test_resample_truncation_redraws_only_components_outside_two_psi():
    full = gan_nodes.truncated_latent(5, 2000)
    cut = gan_nodes.truncated_latent(5, 2000, 0.5, "resample")
    assert cut.abs().max() <= 1.0
    inside = full.abs() <= 1.0
    assert torch.equal(cut[inside], full[inside])
    assert not torch.equal(cut[~inside], full[~inside].clamp(-1, 1))  # redrawn, not clamped


@needs_faces
def test_truncation_makes_faces_less_varied(faces):
    def spread(truncation: float, mode: str) -> float:
        images = gan_nodes.sample_gan(faces, 0, 16, truncation, mode)
        return images.std(dim=0).mean().item()

    full = spread(1.0, "scale")
    assert spread(0.5, "scale") < 0.8 * full
    assert spread(0.5, "resample") < 0.9 * full


# -- class labels ---------------------------------------------------------------------------


@needs_eyes
def test_an_empty_label_cycles_through_the_eye_colours(eyes):
    cycled = gan_nodes.sample_gan(eyes, seed=3, batch_size=9)
    assert cycled.shape == (9, 128, 128, 3)
    for index, colour in ((1, "blue"), (7, "red"), (8, "amber")):
        alone = gan_nodes.sample_gan(eyes, seed=3 + index, label=colour)
        assert (cycled[index] - alone[0]).abs().max() < 1e-5


@needs_eyes
def test_a_label_is_a_colour_name_or_its_index(eyes):
    blue = gan_nodes.sample_gan(eyes, seed=3, label="Blue")
    assert torch.equal(blue, gan_nodes.sample_gan(eyes, seed=3, label="1"))
    red = gan_nodes.sample_gan(eyes, seed=3, label="red")
    assert (blue - red).abs().mean() > 0.02


@needs_eyes
def test_an_unknown_colour_names_the_generators_classes(eyes):
    with pytest.raises(gan_nodes.GanInputError, match="amber, blue, brown"):
        gan_nodes.sample_gan(eyes, label="violet")


@needs_faces
def test_an_unconditional_generator_refuses_a_label(faces):
    with pytest.raises(gan_nodes.GanInputError, match="not class-conditional"):
        gan_nodes.sample_gan(faces, label="blue")


# -- interpolation --------------------------------------------------------------------------


@needs_faces
@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_interpolation_ends_are_the_samples_of_the_two_seeds(faces, mode):
    walk = gan_nodes.gan_interpolate(faces, seed_a=4, seed_b=11, steps=5, mode=mode)
    assert walk.shape == (5, 64, 64, 3)
    assert (walk[0] - gan_nodes.sample_gan(faces, seed=4)[0]).abs().max() < 1e-5
    assert (walk[-1] - gan_nodes.sample_gan(faces, seed=11)[0]).abs().max() < 1e-5
    assert (walk[2] - walk[0]).abs().mean() > 0.02 and (walk[2] - walk[-1]).abs().mean() > 0.02


@needs_eyes
def test_truncated_interpolation_of_one_colour_ends_at_its_samples(eyes):
    walk = gan_nodes.gan_interpolate(eyes, 1, 2, 3, "slerp", 0.7, "resample", "green")
    end = gan_nodes.sample_gan(eyes, 2, 1, 0.7, "resample", "green")
    assert (walk[-1] - end[0]).abs().max() < 1e-5


def test_slerp_keeps_the_length_of_equal_length_latents_and_lerp_shortens_them():
    a, b = latents(2, seed=1)
    b = b * (a.norm() / b.norm())
    middle_slerp = gan_nodes.interpolated_latents(a, b, 3, "slerp")[1]
    middle_lerp = gan_nodes.interpolated_latents(a, b, 3, "lerp")[1]
    assert middle_slerp.norm().item() == pytest.approx(a.norm().item(), rel=1e-5)
    assert torch.allclose(middle_lerp, (a + b) / 2)
    assert middle_lerp.norm() < 0.85 * a.norm()


# -- the nodes in a workflow ------------------------------------------------------------------


@needs_faces
def test_load_and_sample_run_as_a_workflow_and_load_once():
    registry = registry_with(*gan_nodes.NODES)
    generator = {"model_name": dcgan_files.FACES}
    workflow = make_workflow(
        {
            "gen": ("gan.load_generator", generator),
            "faces": ("gan.sample", {"gan_model": link("gen", "gan_model"), "batch_size": 2}),
            "walk": ("gan.interpolate", {"gan_model": link("gen", "gan_model"), "steps": 3}),
            "show": ("image.preview", {"images": link("faces", "image")}),
            "show_walk": ("image.preview", {"images": link("walk", "image")}),
        }
    )
    manager = ModelManager()
    result = Executor(registry, models=manager).run(workflow, outputs=["faces", "walk"])
    assert result.ok, result.error
    assert manager.loads == 1
    faces, walk = result.outputs["faces"]["image"], result.outputs["walk"]["image"]
    assert faces.shape == (2, 64, 64, 3) and walk.shape == (3, 64, 64, 3)
    assert (faces[0] - walk[0]).abs().max() < 1e-5  # both start at seed 0


def test_without_packages_or_files_validation_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(dcgan_files.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    assert dcgan_files.list_gan_models() == [dcgan_files.NO_GENERATOR]
    registry = registry_with(*gan_nodes.NODES)
    workflow = make_workflow(
        {
            "gen": ("gan.load_generator", {"model_name": dcgan_files.NO_GENERATOR}),
            "faces": ("gan.sample", {"gan_model": link("gen", "gan_model")}),
            "show": ("image.preview", {"images": link("faces", "image")}),
        }
    )
    with pytest.raises(ValidationFailed, match="pip install gan-face-generate"):
        Executor(registry, models=ModelManager()).run(workflow)


@needs_faces
@pytest.mark.slow
def test_the_faces_workflow_saves_the_grid_the_strips_and_the_truncation_rows(tmp_path):
    from graphflow import load_plugins, load_workflow

    workflow = load_workflow(ROOT / "workflows" / "gan_faces.json")
    outputs = ["faces", "walk_slerp", "psi_100", "scale_070"]
    result = Executor(load_plugins().registry, output_dir=tmp_path).run(
        workflow, outputs=[*outputs, "save_faces", "save_walk", "save_truncation"]
    )
    assert result.ok, result.error
    faces, walk = result.outputs["faces"]["image"], result.outputs["walk_slerp"]["image"]
    assert faces.shape == (24, 64, 64, 3)
    assert (walk[-1] - faces[5]).abs().max() < 1e-5  # the strip ends at seed 5
    untruncated, scaled = result.outputs["psi_100"]["image"], result.outputs["scale_070"]["image"]
    assert scaled.std(dim=0).mean() < untruncated.std(dim=0).mean()
    saved = sorted(path.name.split("_000")[0] for path in tmp_path.rglob("*.png"))
    assert saved == ["gan_faces", "gan_faces_interpolation", "gan_faces_truncation"]


@needs_eyes
@pytest.mark.slow
def test_the_eyes_workflow_saves_eyes_per_colour_and_a_blue_strip(tmp_path):
    from graphflow import load_plugins, load_workflow

    workflow = load_workflow(ROOT / "workflows" / "gan_eyes.json")
    result = Executor(load_plugins().registry, output_dir=tmp_path).run(
        workflow, outputs=["eyes", "walk", "save_eyes", "save_walk"]
    )
    assert result.ok, result.error
    assert result.outputs["eyes"]["image"].shape == (16, 128, 128, 3)
    assert result.outputs["walk"]["image"].shape == (8, 128, 128, 3)
    saved = sorted(path.name.split("_000")[0] for path in tmp_path.rglob("*.png"))
    assert saved == ["gan_eyes", "gan_eyes_interpolation"]
