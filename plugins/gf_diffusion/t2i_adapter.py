"""T2I-Adapters: their residuals for a UNet call, and the native loader node.

A T2I-Adapter (diffusers ``T2IAdapter``) turns a hint image into one feature map per UNet
level; the UNet adds them inside its down blocks (``down_intrablock_additional_residuals``).
Unlike a ControlNet it does not see the noisy latent or the timestep, so its features are
computed once per hint and image size (as diffusers' adapter pipelines do before their
loop) and kept, scaled by the control's strength on every step it is active for.

``control_apply.residuals`` (the one place both samplers take control residuals from) calls
:func:`adapter_residuals` for a :class:`~gf_diffusion.values.ControlSpec` whose kind is
"t2i_adapter"; several adapters on one prompt add up, which is what diffusers'
``MultiAdapter`` computes (its weights are the strengths). Files are read in
``t2i_adapter_files.py``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from graphflow import Boolean, Choice, NodeContext, node
from graphflow.runtime.models import ModelFileError, file_version

from .component_files import ComponentFolders
from .t2i_adapter_files import (  # noqa: F401  (re-exported for the ControlNet loader)
    AdapterFileError,
    adapter_layout,
    diffusers_state,
    is_adapter_state_dict,
    load_adapter_file,
    read_adapter,
)
from .types import ControlNet

# --- when a control is active ----------------------------------------------------------


def percent_to_sigma(model_sigmas: Any, percent: float) -> float:
    """ComfyUI's noise level for a fraction of the sampling run (0: above every sigma, 1:
    zero): the table's sigma at timestep (1 − percent)·(T − 1)."""
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    last = len(model_sigmas.sigmas) - 1
    return float(model_sigmas.sigma((1.0 - percent) * last))


def control_active(spec: Any, step: Any) -> bool:
    """Whether ``spec`` applies at ``step`` (a :class:`~gf_diffusion.unet_call.StepInfo`).

    Native sampler (``step_index``/``step_count``): diffusers' rule, off while
    i/n < start or (i+1)/n > end. Sigma-space sampler (``sigma``/``model_sigmas``): ComfyUI's,
    off while sigma > sigma(start) or sigma < sigma(end). No step information: always on.
    """
    if step is None:
        return True
    if step.step_index is not None and step.step_count:
        i, n = step.step_index, step.step_count
        return not (i / n < spec.start or (i + 1) / n > spec.end)
    if step.sigma is not None and step.model_sigmas is not None:
        sigma = float(step.sigma)
        high = percent_to_sigma(step.model_sigmas, spec.start)
        low = percent_to_sigma(step.model_sigmas, spec.end)
        return not (sigma > high or sigma < low)
    return True


# --- the hint the adapter sees ---------------------------------------------------------


def pixels_per_latent(adapter: Any) -> int:
    """Image pixels per latent pixel the adapter's features line up with: its unshuffle
    factor (its first features are at latent size), half of it for SDXL's (whose first
    features meet the UNet after its first downsampling)."""
    factor = int(adapter.downscale_factor)
    return factor // 2 if adapter.config.adapter_type == "full_adapter_xl" else factor


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def hint_tensor(hint: Any, size: tuple[int, int], channels: int, comfy: bool) -> Any:
    """The hint IMAGE (B, H, W, 3) as the adapter's input (B, channels, h, w) at ``size``.

    Same size: unchanged. Otherwise the native sampler stretches it (bilinear, antialiased,
    as diffusers resizes a hint to the requested size), the sigma-space sampler crops it to
    the target's aspect and resizes nearest-exact (ComfyUI). One channel: luminance
    (Rec. 601, what PIL's "L" gives a diffusers user) natively, ComfyUI's channel mean in
    the sigma-space sampler.
    """
    import torch

    image = hint.movedim(-1, 1).float()
    if image.shape[-2:] != tuple(size):
        if comfy:
            image = _center_crop(image, size)
            image = torch.nn.functional.interpolate(image, size=size, mode="nearest-exact")
        else:
            image = torch.nn.functional.interpolate(
                image, size=size, mode="bilinear", align_corners=False, antialias=True
            )
    if channels == 1 and image.shape[1] != 1:
        if comfy:
            image = image.mean(dim=1, keepdim=True)
        else:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype)
            image = (image[:, :3] * weights.view(1, 3, 1, 1).to(image.device)).sum(1, True)
    elif channels == 3 and image.shape[1] == 1:
        image = image.expand(-1, 3, -1, -1)
    return image


def _center_crop(image: Any, size: tuple[int, int]) -> Any:
    height, width = image.shape[-2:]
    old, new = width / height, size[1] / size[0]
    x = round((width - width * new / old) / 2) if old > new else 0
    y = round((height - height * old / new) / 2) if old < new else 0
    return image[:, :, y : height - y, x : width - x]


# --- the features, computed once -------------------------------------------------------

CACHE_SIZE = 8
_CACHE: OrderedDict[tuple, tuple[Any, list[Any]]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every kept adapter output (their tensors stay on the device until then)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _prepared_hint(spec: Any, size, crop, channels: int, comfy: bool, factor: int) -> Any:
    """The adapter's input: the hint sized to the whole image, then cut to ``crop`` (and
    brought to a size the adapter's unshuffle divides)."""
    import torch

    image = hint_tensor(spec.hint, size, channels, comfy)
    if crop is not None:
        y0, y1, x0, x1 = crop
        image = image[..., y0:y1, x0:x1]
        rounded = tuple(_round_up(s, factor) for s in image.shape[-2:])
        if rounded != tuple(image.shape[-2:]):
            mode = "nearest-exact" if comfy else "bilinear"
            image = torch.nn.functional.interpolate(image, size=rounded, mode=mode)
    return image


def _features(spec: Any, size, crop, comfy: bool, device: Any) -> list[Any]:
    """The adapter's features for the whole hint batch (kept, least recent out)."""
    import torch

    key = (spec.model.identity, id(spec.hint), tuple(size), crop, comfy, str(device))
    with _CACHE_LOCK:
        kept = _CACHE.get(key)
        if kept is not None and kept[0] is spec.hint:
            _CACHE.move_to_end(key)
            return kept[1]
    with spec.model.on_device(device) as adapter, torch.no_grad():
        weight = next(adapter.parameters())
        channels, factor = int(adapter.config.in_channels), int(adapter.downscale_factor)
        image = _prepared_hint(spec, size, crop, channels, comfy, factor)
        features = list(adapter(image.to(device=weight.device, dtype=weight.dtype)))
    with _CACHE_LOCK:
        _CACHE[key] = (spec.hint, features)  # the hint is kept so its id stays its own
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return features


def _target(adapter: Any, image_size, area, latent_size) -> tuple[tuple, tuple | None]:
    """(pixel size the hint is resized to, pixel crop (y0, y1, x0, x1) of it or None)."""
    per = pixels_per_latent(adapter)
    factor = int(adapter.downscale_factor)
    if area is not None:
        if image_size is None:
            raise ValueError("a T2I-Adapter on an area crop needs the image size (StepInfo)")
        full = tuple(_round_up(int(s), factor) for s in image_size)
        h, w, y, x = (int(v) for v in area)
        return full, (y * per, (y + h) * per, x * per, (x + w) * per)
    if latent_size is not None:
        return tuple(_round_up(int(s) * per, factor) for s in latent_size), None
    if image_size is None:
        raise ValueError("a T2I-Adapter needs the image size (StepInfo.image_size)")
    return tuple(_round_up(int(s), factor) for s in image_size), None


def adapter_residuals(
    spec: Any,
    rows: int,
    image_size: tuple[int, int] | None,
    area: tuple[int, int, int, int] | None,
    device: Any,
    dtype: Any,
    step: Any,
    latent_size: tuple[int, int] | None = None,
) -> list[Any] | None:
    """``down_intrablock_additional_residuals`` of one T2I-Adapter control for ``rows``
    rows of a UNet call (one prompt's rows), or None when ``step`` is outside the
    control's start..end.

    ``spec``: a ControlSpec of kind "t2i_adapter"; ``image_size``: (H, W) of the whole
    image; ``area``: (h, w, y, x) in latent pixels when the call is for a crop (the hint is
    sized to the whole image, then cropped); ``latent_size``: (h, w) of the call's latent,
    when known (the hint is then sized to it exactly). The hint's batch is repeated over
    the rows (hint i for row i modulo its batch). A new list each call (the UNet pops it).
    """
    import torch

    if not control_active(spec, step):
        return None
    adapter = spec.model.unpatched
    size, crop = _target(adapter, image_size, area, latent_size if area is None else None)
    comfy = step is not None and step.sigma is not None
    features = _features(spec, size, crop, comfy, device)
    rows_of_hint = torch.arange(rows) % features[0].shape[0]
    out = []
    for feature in features:
        picked = feature if feature.shape[0] == rows else feature[rows_of_hint.to(feature.device)]
        out.append((picked * spec.strength).to(device=device, dtype=dtype))
    return out


def add_residuals(first: list[Any] | None, second: list[Any] | None) -> list[Any] | None:
    """Two adapters' residual lists summed level by level (None: the other one)."""
    if first is None or second is None:
        return first if second is None else second
    if len(first) != len(second):
        raise ValueError(
            f"T2I-Adapters with {len(first)} and {len(second)} levels cannot be combined "
            "on one prompt (use adapters made for the same model)"
        )
    return [a + b for a, b in zip(first, second, strict=True)]


# --- the loader node -------------------------------------------------------------------

# ComfyUI lists models/t2i_adapter inside its "controlnet" folder list; graphflow lists the
# adapter folder first and, from models/controlnet, only the files that are adapters.
ADAPTERS = ComponentFolders("t2i_adapter")
CONTROLNETS = ComponentFolders("controlnet")
_SEEN: dict[tuple, bool] = {}


def _is_adapter_path(path: Any) -> bool:
    """Whether a models/controlnet entry is a T2I-Adapter, from headers only (cached):
    a safetensors file's keys, a folder's config; a pickle file by its name."""
    import json

    from graphflow.runtime.models import PICKLE_SUFFIXES

    key = (str(path), file_version(path))
    if key not in _SEEN:
        if path.is_dir():
            config = path / "config.json"
            found = config.is_file() and '"T2IAdapter"' in config.read_text()
            _SEEN[key] = found and json.loads(config.read_text()).get("_class_name") == "T2IAdapter"
        elif path.suffix.lower() in PICKLE_SUFFIXES:
            _SEEN[key] = any(word in path.name.lower() for word in ("t2i", "adapter"))
        else:
            from . import detect

            try:
                _SEEN[key] = is_adapter_state_dict(detect.read_header(path, False).shapes)
            except (ModelFileError, OSError, ValueError):
                _SEEN[key] = False
    return _SEEN[key]


def list_adapters() -> list[str]:
    """T2I-Adapter files and folders: models/t2i_adapter, then the adapters among
    models/controlnet's files."""
    names = ADAPTERS.names()
    for name in CONTROLNETS.names():
        if name not in names and _is_adapter_path(CONTROLNETS.path(name)):
            names.append(name)
    return names


def adapter_path(name: str):
    """Where a listed adapter is (models/t2i_adapter first); ModelFileError if nowhere."""
    for catalog in ADAPTERS.catalogs:
        if catalog.in_models_folder(name):
            return catalog.path(name)
    for catalog in CONTROLNETS.catalogs:
        if catalog.in_models_folder(name):
            return catalog.path(name)
    return ADAPTERS.path(name)


def _adapter_label(name: str) -> str | None:
    from .component_files import cached_label

    def describe(path) -> str:
        from . import detect
        from .component_files import folder_config

        if path.is_dir():
            return f"T2I-Adapter, {folder_config(path).get('adapter_type', 'full_adapter')}"

        layout = adapter_layout(detect.read_header(path, False).shapes)
        return f"T2I-Adapter ({layout})" if layout else "not a T2I-Adapter"

    return cached_label(adapter_path(name), describe)


@node("diffusion.load_t2i_adapter", category="diffusion/loaders", display_name="Load T2I-Adapter")
def load_t2i_adapter(
    adapter_name: Choice(list_adapters, labels=_adapter_label),
    dtype: Choice(["auto", "fp32", "fp16", "bf16"]) = "auto",
    allow_pickle: Boolean = False,
    ctx: NodeContext = None,
) -> ControlNet:
    """Load a T2I-Adapter (TencentARC) from models/t2i_adapter or models/controlnet.

    SD 1.x full and light adapters and SDXL adapters, as original-layout files (what
    ComfyUI loads), diffusers-layout files or diffusers T2IAdapter folders. Apply it with
    Apply ControlNet: its hint image steers the sampler's UNet, computed once per image
    size. Pickle files (.pth) load only with allow_pickle, weights-only.
    """
    from .loader import _torch_dtype

    path = adapter_path(adapter_name)
    torch_dtype = _torch_dtype(dtype, ctx.device, None) if dtype != "auto" else None
    return load_adapter_file(path, torch_dtype, allow_pickle, ctx)


@load_t2i_adapter.check
def _adapter_loadable(adapter_name: str, allow_pickle: bool = False, **_) -> str | None:
    from graphflow.runtime.models import check_pickle_rule

    try:
        path = adapter_path(adapter_name)
    except ModelFileError as error:
        return f"adapter_name: {error}"
    refusal = check_pickle_rule(path.name, allow_pickle)
    return f"adapter_name: {refusal}" if refusal else None


@load_t2i_adapter.fingerprint
def _adapter_version(adapter_name: str, **_) -> tuple[int, int]:
    return file_version(adapter_path(adapter_name))


NODES = [load_t2i_adapter]
