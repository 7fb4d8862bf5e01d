"""The model manager: local model files, safe loading rules, and resident models.

Models come from the models folder only (``GRAPHFLOW_MODELS`` or ``--models-dir``, default
``./models``), with one subfolder per kind (``checkpoints/``, ``upscale_models/``...). Nothing
is ever downloaded. Pickle-based files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are refused
unless the user opts in, and are then read with ``torch.load(weights_only=True)``.

A loaded model stays resident, keyed by (kind, file, file version, options), so loading the
same checkpoint twice returns the same objects. When the resident models would exceed the
memory budget, the least recently used ones are moved to the CPU, then dropped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import GraphflowError
from ..settings import current_settings

log = logging.getLogger("graphflow.models")

MODELS_ENV = "GRAPHFLOW_MODELS"  # read by graphflow.settings (the ``models`` setting)
ALLOW_PICKLE_ENV = "GRAPHFLOW_ALLOW_PICKLE"  # the ``allow_pickle`` setting
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
SAFE_SUFFIXES = frozenset({".safetensors"})


class ModelFileError(GraphflowError):
    """A model file is missing, outside the models folder, or refused by the loading rules."""


def models_dir() -> Path:
    """The models folder of the current settings (``models``: ``GRAPHFLOW_MODELS``, else
    ``./models``)."""
    return Path(current_settings().models)


def pickle_allowed() -> bool:
    """True when the user opted in to pickle-based model files (the ``allow_pickle``
    setting, ``GRAPHFLOW_ALLOW_PICKLE``)."""
    return current_settings().allow_pickle


def list_models(
    folder: str, suffixes: Iterable[str], *, diffusers_folders: bool = False
) -> list[str]:
    """Names (relative to ``models/<folder>``) of files with the given suffixes, sorted.

    With ``diffusers_folders``, sub-folders holding a ``model_index.json`` are listed too.
    """
    root = models_dir() / folder
    if not root.is_dir():
        return []
    wanted = {s.lower() for s in suffixes}
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        if diffusers_folders and "model_index.json" in filenames and here != root:
            found.append(here.relative_to(root).as_posix())
            dirnames[:] = []  # a diffusers folder's own files are not separate models
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if Path(name).suffix.lower() in wanted:
                found.append((here / name).relative_to(root).as_posix())
    return sorted(found)


def resolve_model_path(folder: str, name: str) -> Path:
    """The absolute path of ``models/<folder>/<name>``; refuses names escaping the folder."""
    root = (models_dir() / folder).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ModelFileError(f"{name!r} is outside the {folder} models folder")
    if not path.exists():
        available = (
            ", ".join(list_models(folder, SAFE_SUFFIXES | PICKLE_SUFFIXES, diffusers_folders=True))
            or "none"
        )
        raise ModelFileError(f"no model {name!r} in {root} (available: {available})")
    return path


def check_pickle_rule(name: str, allow: bool) -> str | None:
    """A refusal message for a pickle-based file without opt-in, else None."""
    if Path(name).suffix.lower() in PICKLE_SUFFIXES and not (allow or pickle_allowed()):
        return (
            f"{name} is a pickle file, which can run arbitrary code when loaded; convert it to "
            f".safetensors, or opt in (allow_pickle=true or {ALLOW_PICKLE_ENV}=1) to load it "
            "with torch.load(weights_only=True)"
        )
    return None


def load_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """Read a weights file to a CPU state dict (safetensors, or opted-in weights-only pickle)."""
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    refusal = check_pickle_rule(path.name, allow_pickle)
    if refusal:
        raise ModelFileError(refusal)
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True)
    return data.get("state_dict", data) if isinstance(data, dict) else data


def file_version(path: Path) -> tuple[int, int]:
    """(mtime ns, size) of a file, or the newest of a folder's files: changes when it changes."""
    if path.is_file():
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size
    newest = total = 0
    for file in path.rglob("*"):
        if file.is_file():
            stat = file.stat()
            newest = max(newest, stat.st_mtime_ns)
            total += stat.st_size
    return newest, total


def _modules(value: Any) -> list[Any]:
    """The torch modules in a loaded model (one module, or a dict/list/tuple of components)."""
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    return [item for item in items if callable(getattr(item, "parameters", None))]


def _module_bytes(value: Any) -> int:
    return sum(
        p.numel() * p.element_size() for module in _modules(value) for p in module.parameters()
    )


def _move(value: Any, device: str) -> None:
    for module in _modules(value):
        module.to(device)


class ModelManager:
    """Loads models once and keeps them resident within a byte budget (LRU offload)."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes if max_bytes is not None else current_settings().model_bytes
        self._resident: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0

    def load(
        self, kind: str, path: str | Path, loader: Callable[[], Any] | None = None, **options: Any
    ) -> Any:
        """The resident model for (kind, path, options), loading it with ``loader`` if needed.

        ``loader`` is called with no arguments and returns the model (or a dict/tuple of
        components). The key includes the file's version, so an edited file is reloaded.
        """
        if loader is None:
            raise GraphflowError(f"no loader given for {kind} {path}")
        path = Path(path)
        key = (kind, str(path.resolve()), file_version(path), tuple(sorted(options.items())))
        with self._lock:
            if key in self._resident:
                self._resident.move_to_end(key)
                return self._resident[key][0]
            value = loader()
            self.loads += 1
            size = _module_bytes(value)
            self._resident[key] = (value, size)
            self._make_room(protect=key)
            return value

    def resident_bytes(self) -> int:
        """Bytes of parameters held by resident models."""
        with self._lock:
            return sum(size for _, size in self._resident.values())

    def _make_room(self, protect: tuple) -> None:
        total = self.resident_bytes()
        for key in list(self._resident):
            if total <= self.max_bytes:
                break
            if key == protect:
                continue
            value, size = self._resident.pop(key)
            log.info("unloading %s %s to stay within the model memory budget", key[0], key[1])
            _move(value, "cpu")
            total -= size

    def free(self) -> int:
        """Forget every resident model; returns how many were dropped."""
        with self._lock:
            count = len(self._resident)
            self._resident.clear()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        return count

    def stats(self) -> dict:
        """Resident model count and bytes, budget and total loads."""
        return {
            "resident": len(self._resident),
            "bytes": self.resident_bytes(),
            "max_bytes": self.max_bytes,
            "loads": self.loads,
        }
