"""The model manager: local model files, safe loading rules, and resident models.

Models come from the models folder only (``GRAPHFLOW_MODELS`` or ``--models-dir``, default
``./models``), with one subfolder per kind (``checkpoints/``, ``upscale_models/``...). Nothing
is ever downloaded. Pickle-based files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are refused
unless the user opts in, and are then read with ``torch.load(weights_only=True)``.

A loaded model stays resident, keyed by (kind, file, file version, options), so loading the
same checkpoint twice returns the same :class:`~graphflow.runtime.handles.ModelHandle`. Each
module of it (a checkpoint's UNet, VAE, text encoders) is a resident part; when the parts
would exceed the memory budget, the least recently used ones that no node is computing with
are moved to the CPU and forgotten. A handle that still holds a forgotten part brings it back
(counted again, moved to the device asked for) when a node takes it with ``on_device``, and
loading a forgotten model that some handle still holds returns that handle (never a second
copy of its weights).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import GraphflowError
from ..settings import current_settings
from .handles import ModelHandle, ResidentPart, build_handle

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


def model_search_dirs(folder: str) -> list[Path]:
    """Where models of one kind are looked for, in order: ``models/<folder>``, then
    ``<root>/<folder>`` for each ``extra_models`` root, then the ``model_paths`` entries for
    ``folder`` (settings; e.g. an A1111 ``models/Stable-diffusion`` for checkpoints)."""
    settings = current_settings()
    dirs = [Path(settings.models) / folder]
    dirs += [Path(root) / folder for root in settings.extra_models]
    dirs += [Path(extra) for extra in settings.model_paths.get(folder, ())]
    return dirs


def checked_model_name(folder: str, name: str) -> str:
    """``name`` if, read as text, it stays inside a models folder; else ModelFileError.

    Absolute paths, drive letters, ``..`` parts and NUL bytes are refused before any file
    system look-up; symbolic links inside the folder are then followed wherever they point
    (the folder's owner put them there).
    """
    text = name.replace("\\", "/")
    parts = PurePosixPath(text).parts
    if (
        not text
        or "\x00" in text
        or text.startswith("/")
        or (len(text) > 1 and text[1] == ":")
        or ".." in parts
    ):
        raise ModelFileError(f"{name!r} is outside the {folder} models folder")
    return text


def _walk_following_links(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Like os.walk (top-down: the caller may prune ``dirnames``), through symbolic links.

    A folder reached again below itself (a link loop) is not entered again; two links to one
    folder from different places are both walked, since each is a name the owner chose.
    """
    stack: list[tuple[Path, frozenset[str]]] = [(root, frozenset())]
    while stack:
        here, ancestors = stack.pop()
        real = os.path.realpath(here)
        if real in ancestors:
            continue
        try:
            entries = sorted(os.scandir(here), key=lambda entry: entry.name)
        except OSError:
            continue
        dirnames, filenames = [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            (dirnames if is_dir else filenames).append(entry.name)
        yield here, dirnames, filenames
        chain = ancestors | {real}
        stack.extend((here / name, chain) for name in reversed(dirnames))


def _list_one(
    root: Path, wanted: set[str], is_model_folder: Callable[[Path], bool] | None
) -> list[str]:
    found: list[str] = []
    for here, dirnames, filenames in _walk_following_links(root):
        if is_model_folder is not None and here != root and is_model_folder(here):
            found.append(here.relative_to(root).as_posix())
            dirnames[:] = []  # a model folder's own files are not separate models
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if Path(name).suffix.lower() not in wanted:
                continue
            path = here / name
            if not path.exists():  # a dangling symbolic link
                log.warning(
                    "%s is a symbolic link to %s, which does not exist",
                    path,
                    os.readlink(path) if path.is_symlink() else "?",
                )
                continue
            found.append(path.relative_to(root).as_posix())
    return found


def list_models(
    folder: str,
    suffixes: Iterable[str],
    *,
    is_model_folder: Callable[[Path], bool] | None = None,
    diffusers_folders: bool = False,
) -> list[str]:
    """Names (relative to ``models/<folder>``) of files with the given suffixes, sorted.

    Every search folder of the kind is listed (:func:`model_search_dirs`; a name found in
    an earlier one hides the same name in a later one), following symbolic links to files
    and folders wherever they point; a dangling link is left out with a warning in the log,
    and a link loop is visited once. ``is_model_folder(path)`` (supplied by the pack that
    knows the format) says whether a sub-folder is one model: it is then listed as a name and
    not searched for files. ``diffusers_folders`` is deprecated: the diffusion pack's
    ``is_diffusers_folder`` replaces it.
    """
    if diffusers_folders:
        warnings.warn(
            "list_models(diffusers_folders=True) is deprecated; pass "
            "is_model_folder=gf_diffusion.loader.is_diffusers_folder",
            DeprecationWarning,
            stacklevel=2,
        )
        is_model_folder = is_model_folder or (lambda path: (path / "model_index.json").is_file())
    wanted = {s.lower() for s in suffixes}
    found: set[str] = set()
    for root in model_search_dirs(folder):
        if root.is_dir():
            found.update(_list_one(root, wanted, is_model_folder))
    return sorted(found)


def find_model(folder: str, name: str) -> Path | None:
    """Where model ``name`` of kind ``folder`` is (the first search folder that has it), or
    None. The name is checked as text first (:func:`checked_model_name`); links are followed.
    Raises ModelFileError for a name that escapes, or one that is a dangling link."""
    text = checked_model_name(folder, name)
    for root in model_search_dirs(folder):
        path = root / text
        if path.exists():
            return path.absolute()
        if path.is_symlink():
            raise ModelFileError(
                f"{name!r} in {root} is a symbolic link to {os.readlink(path)}, which does "
                "not exist (a disk not mounted, or a file moved?)"
            )
    return None


def resolve_model_path(
    folder: str,
    name: str,
    *,
    suffixes: Iterable[str] = SAFE_SUFFIXES | PICKLE_SUFFIXES,
    is_model_folder: Callable[[Path], bool] | None = None,
) -> Path:
    """The path of model ``name`` in ``models/<folder>`` (or another search folder of that
    kind); refuses names escaping the folder and says what is available when it is missing.

    ``suffixes`` and ``is_model_folder`` describe what the "available" list of a missing
    name's error shows (as for :func:`list_models`).
    """
    path = find_model(folder, name)
    if path is None:
        listed = list_models(folder, suffixes, is_model_folder=is_model_folder)
        where = ", ".join(str(d) for d in model_search_dirs(folder))
        raise ModelFileError(
            f"no model {name!r} in {where} (available: {', '.join(listed) or 'none'})"
        )
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


class _Resident:
    """One loaded model: its key, its handle and its parts (the manager's record)."""

    __slots__ = ("__weakref__", "handle", "key", "parts")

    def __init__(self, key: tuple, handle: ModelHandle, parts: list[ResidentPart]):
        self.key = key
        self.handle = handle
        self.parts = parts


class ModelManager:
    """Loads models once and keeps their modules resident within a byte budget (LRU offload).

    ``load`` returns a :class:`~graphflow.runtime.handles.ModelHandle`; nodes take modules with
    ``handle.on_device(device)``, which comes back here (:meth:`admit`) so a part dropped by
    the budget is counted again and others make room. Parts being computed with are never
    offloaded.
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes if max_bytes is not None else current_settings().model_bytes
        self._resident: OrderedDict[tuple, _Resident] = OrderedDict()
        # counted parts by id(part), LRU first: a model reloaded after free() has parts with
        # the same keys as the old one's, which handles may still hold and bring back
        self._parts: OrderedDict[int, ResidentPart] = OrderedDict()
        # models the budget dropped that a handle still holds (weakly): loading one again
        # returns that handle rather than a second copy of the weights
        self._forgotten: weakref.WeakValueDictionary[tuple, _Resident] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.RLock()
        self.lock = self._lock  # what handles synchronise their takes on
        self.loads = 0

    def load(
        self, kind: str, path: str | Path, loader: Callable[[], Any] | None = None, **options: Any
    ) -> ModelHandle:
        """The resident model's handle for (kind, path, options), loading it if needed.

        ``loader`` is called with no arguments and returns the model: a torch module, a
        :class:`~graphflow.runtime.handles.ModelPart`, or a dict of components (modules become
        component handles, other entries the handle's ``extras``). The key includes the
        file's version, so an edited file is reloaded.
        """
        if loader is None:
            raise GraphflowError(f"no loader given for {kind} {path}")
        path = Path(path)
        key = (kind, str(path.resolve()), file_version(path), tuple(sorted(options.items())))
        with self._lock:
            record = self._resident.get(key) or self._forgotten.get(key)
            if record is not None:
                if key in self._resident:
                    self._resident.move_to_end(key)
                for part in record.parts:
                    if id(part) in self._parts:
                        self._parts.move_to_end(id(part))
                return record.handle
            value = loader()
            self.loads += 1
            handle, parts = build_handle(key, value, f"{kind} {path.name}", self)
            record = _Resident(key, handle, parts)
            self._resident[key] = record
            for part in parts:
                part.owner = record
                self._parts[id(part)] = part
            self._make_room(protect={id(part) for part in parts})
            return handle

    def part_for(self, key: Any, module: Any, label: str) -> ResidentPart:
        """A new part for ``module`` of a model being loaded (its handle's residency)."""
        return ResidentPart(key, module, label, self._lock)

    def admit(self, part: ResidentPart, device: Any) -> None:
        """Count ``part`` as resident (again), make room for it, and move it to ``device``.

        Called by handles taking a module, with :attr:`lock` held.
        """
        with self._lock:
            if id(part) not in self._parts:
                self._parts[id(part)] = part
                record = part.owner
                if record is not None and record.key not in self._resident:
                    self._resident[record.key] = record
            self._parts.move_to_end(id(part))
            self._make_room(protect={id(part)})
            part.move(device)

    def resident_bytes(self) -> int:
        """Bytes of parameters held by resident model parts."""
        with self._lock:
            return sum(part.nbytes for part in self._parts.values())

    def resident_labels(self) -> list[str]:
        """Labels of the parts counted as resident (``checkpoint tiny-sd/unet``), LRU first."""
        with self._lock:
            return [part.label for part in self._parts.values()]

    def _make_room(self, protect: set) -> None:
        total = self.resident_bytes()
        for key, part in list(self._parts.items()):
            if total <= self.max_bytes:
                break
            if key in protect or part.takers:
                continue
            del self._parts[key]
            log.info("unloading %s to stay within the model memory budget", part.label)
            part.move("cpu")
            total -= part.nbytes
            record = part.owner
            if (
                record is not None
                and self._resident.get(record.key) is record
                and not any(id(p) in self._parts for p in record.parts)
            ):
                del self._resident[record.key]
                self._forgotten[record.key] = record

    def free(self) -> int:
        """Forget every resident model; returns how many were dropped."""
        with self._lock:
            count = len(self._resident)
            self._resident.clear()
            self._parts.clear()
            self._forgotten.clear()
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
