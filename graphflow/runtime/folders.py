"""Where user files live: the input folder (images to load) and the output folder default."""

from __future__ import annotations

from pathlib import Path

from ..settings import Settings, current_settings

INPUT_ENV = "GRAPHFLOW_INPUT_DIR"  # read by graphflow.settings (the ``input_dir`` setting)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


def input_dir() -> Path:
    """The input folder of the current settings (``input_dir``; default ``./input``)."""
    return input_dir_of(current_settings())


def input_dir_of(settings: Settings) -> Path:
    """The input folder ``settings`` name (``./input`` when they leave it unset)."""
    return Path(settings.input_dir or "input")


def list_input_images() -> list[str]:
    """Image files in the input folder (recursively), as sorted relative names."""
    root = input_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def inside(root: Path, name: str) -> Path:
    """``root / name`` resolved, refusing anything that escapes ``root`` (``..``, links)."""
    base = root.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"{name!r} is outside {root}")
    return path
