"""Every model folder and what is in it: ``graphflow models list`` and the dropdown labels.

A folder is listed from all its search folders (``models/<folder>``, each ``extra_models``
root, the ``model_paths`` entries: :func:`graphflow.runtime.models.model_search_dirs`), plus
the models a pack bundles (the embedded graphflow-tiny among the checkpoints). What each
file is comes from :func:`model_info.inspect_model` (headers only), cached by file version
(:func:`graphflow.runtime.models.file_version`), so a listing or ``/api/nodes`` reads a file
once until it changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from graphflow.runtime.catalog import ModelCatalog
from graphflow.runtime.models import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    ModelFileError,
    check_pickle_rule,
    file_version,
    model_search_dirs,
    models_dir,
)
from graphflow.settings import current_settings

from .model_info import inspect_model

# The folders graphflow's packs read, with what goes in each (docs/models.md).
KNOWN_FOLDERS = {
    "checkpoints": "Stable Diffusion checkpoints: single files and diffusers folders",
    "diffusion_models": "UNets / diffusion models without VAE and text encoder",
    "vae": "VAEs",
    "text_encoders": "text encoders",
    "loras": "LoRA and LyCORIS (LoCon, LoHa, LoKr) files",
    "embeddings": "textual-inversion embeddings",
    "controlnet": "ControlNet models",
    "t2i_adapter": "T2I-Adapter models",
    "preprocessors": "control-image preprocessor model folders (depth, pose)",
    "gan": "GAN generators (DCGAN-style state dicts)",
    "pix2pix": "pix2pix generators (unet_256 / resnet_9blocks state dicts)",
    "segmentation": "segmentation models (SegFormer / DETR folders, DeepLabV3 state dicts)",
    "clip_models": "transformers CLIP folders (image-text scoring)",
    "upscale_models": "super-resolution (upscale) models",
    "style_models": "fast style-transfer networks",
    "configs": "diffusers config folders for single-file checkpoints",
}
# Folders whose files detect.KINDS does not describe: no "belongs in" advice for them.
UNDETECTED = {"style_models", "configs", "preprocessors", "gan", "pix2pix", "segmentation"}
UNDETECTED |= {"clip_models"}
MODEL_SUFFIXES = tuple(sorted(SAFE_SUFFIXES | PICKLE_SUFFIXES))
CACHE_SIZE = 1024


def _is_diffusers_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def catalog(folder: str) -> ModelCatalog:
    """The catalog a folder is listed through (the loaders' own for checkpoints and LoRAs)."""
    from .embeddings import EMBEDDING_SUFFIXES
    from .loader import CHECKPOINTS
    from .lora import LORAS

    if folder == "checkpoints":
        return CHECKPOINTS
    if folder == "loras":
        return LORAS
    if folder == "embeddings":
        return ModelCatalog(folder, EMBEDDING_SUFFIXES)
    if folder == "configs":
        return ModelCatalog(folder, (), is_model_folder=_is_diffusers_folder)
    return ModelCatalog(folder, MODEL_SUFFIXES, is_model_folder=_is_diffusers_folder)


def model_folders() -> list[str]:
    """The known folders, then any other sub-folder of a models root or ``model_paths`` key."""
    settings = current_settings()
    found = list(KNOWN_FOLDERS)
    for root in (models_dir(), *map(Path, settings.extra_models)):
        if root.is_dir():
            extra = (p.name for p in sorted(root.iterdir()) if p.is_dir())
            found += [n for n in extra if n not in found and not n.startswith(".")]
    found += [n for n in settings.model_paths if n not in found]
    return found


class _InfoCache:
    """:func:`inspect_model` answers by (path, file version, pickle opt-in), least recent out."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self.lock = threading.Lock()
        self.entries: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self.reads = 0

    def get(self, path: Path, allow_pickle: bool) -> dict[str, Any]:
        """What the file is, or ``{"error": message, "label": ...}`` when it cannot be read."""
        allowed = check_pickle_rule(path.name, allow_pickle) is None
        try:
            key = (str(path), file_version(path), allowed)
        except OSError as error:  # gone or unreadable since it was listed: not cached
            return {"error": str(error), "label": "not a readable model file"}
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        try:
            info = inspect_model(path, allow_pickle=allowed, read_values=False)
        except (ModelFileError, OSError, ValueError) as error:
            info = {"error": str(error), "label": _error_label(path, allowed)}
        with self.lock:
            self.reads += 1
            self.entries[key] = info
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return info


INFO = _InfoCache()


def _error_label(path: Path, pickle_allowed: bool) -> str:
    if path.suffix.lower() in PICKLE_SUFFIXES and not pickle_allowed:
        return "pickle file (not read without allow_pickle)"
    return "not a readable model file"


def describe_entry(folder: str, name: str, path: Path, allow_pickle: bool = False) -> dict:
    """One listed model: name, path, size, label, kind, dtype, parameters, and
    ``belongs_in`` when its detected kind lives in another folder."""
    info = INFO.get(path, allow_pickle)
    entry: dict[str, Any] = {
        "name": name,
        "path": str(path),
        "size": info.get("size", _size(path)),
        "label": info["label"],
        "kind": info.get("kind"),
        "dtype": info.get("dtype"),
        "parameters": info.get("parameters"),
    }
    for key in ("details", "error"):
        if info.get(key):
            entry[key] = info[key]
    home = info.get("folder")
    if home and home != folder and folder in KNOWN_FOLDERS and folder not in UNDETECTED:
        entry["belongs_in"] = home
    return entry


def _size(path: Path) -> int:
    return file_version(path)[1]


def list_folder(folder: str, allow_pickle: bool = False) -> dict[str, Any]:
    """A folder's search folders and every model in it (bundled ones marked ``bundled``)."""
    listing = catalog(folder)
    bundled = listing.bundled()
    models = []
    for name in listing.names():
        path = listing.path(name)
        entry = describe_entry(folder, name, path, allow_pickle)
        if name in bundled and path == bundled[name]:
            entry["bundled"] = True
        models.append(entry)
    return {
        "folder": folder,
        "description": KNOWN_FOLDERS.get(folder, ""),
        "search": [str(d) for d in model_search_dirs(folder)],
        "models": models,
    }


def list_models_folders(folder: str | None = None, allow_pickle: bool = False) -> list[dict]:
    """:func:`list_folder` of one folder, or of every folder (:func:`model_folders`)."""
    return [list_folder(name, allow_pickle) for name in ([folder] if folder else model_folders())]


def choice_label(path: Path) -> str | None:
    """The label beside a file in a dropdown: headers only, cached by file version; pickle
    files are never opened for a label (whatever the opt-in)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return "pickle file"
    return INFO.get(path, allow_pickle=False)["label"]
