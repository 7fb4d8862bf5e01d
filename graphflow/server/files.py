"""Safe paths for ``/api/view``, uploads, saved workflows and static files.

A name from a request is checked component by component (no ``..``, no absolute path, no
drive, no backslash, no NUL, no hidden file), then the joined path is resolved — symlinks
included — and must still lie inside its root. Percent-encoded tricks (``%2e%2e/``) arrive
here already decoded, so they meet the same checks. Upload names are not trusted at all:
they are reduced to a plain safe name with the extension of the image format detected.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path
from urllib.parse import unquote

FOLDER_TYPES = ("output", "input", "temp")
"""The folders ``/api/view`` serves from (``?type=``)."""

_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._ ()-]+")
_WORKFLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.()-]{0,99}$")
MAX_NAME = 255


class UnsafePath(ValueError):
    """A path from a request that is malformed (``status`` 400) or escapes its root (403)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.code = "invalid_path" if status == 400 else "forbidden_path"


def _check_component(part: str, what: str) -> None:
    if part in ("", ".", ".."):
        raise UnsafePath(f"{what} may not contain empty, '.' or '..' parts")
    if "\x00" in part or "\\" in part:
        raise UnsafePath(f"{what} may not contain NUL or backslash characters")
    if part.startswith("."):
        raise UnsafePath(f"{what} may not name hidden files or folders")
    if len(part) > MAX_NAME:
        raise UnsafePath(f"{what} part is longer than {MAX_NAME} characters")
    if len(part) >= 2 and part[1] == ":":
        raise UnsafePath(f"{what} may not name a drive")


def check_relative(path: str, what: str, *, allow_nested: bool = True) -> list[str]:
    """The components of a relative path from a request, each one checked."""
    if path.startswith(("/", "\\")) or os.path.isabs(path):
        raise UnsafePath(f"{what} must be relative, not {path!r}")
    parts = path.split("/") if allow_nested else [path]
    if not allow_nested and "/" in path:
        raise UnsafePath(f"{what} must be a plain name without '/'")
    for part in parts:
        _check_component(part, what)
    return parts


def contained(root: Path, candidate: Path, *, must_exist: bool = True) -> Path:
    """``candidate`` with symlinks resolved, if it lies inside ``root``; else UnsafePath(403)."""
    real_root = root.resolve()
    try:
        real = candidate.resolve(strict=must_exist)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError) as error:  # symlink loops and the like
        raise UnsafePath(f"cannot resolve the path: {error}", status=403) from None
    if real != real_root and not real.is_relative_to(real_root):
        raise UnsafePath("the path leads outside its folder", status=403)
    return real


def resolve_file(root: Path, subfolder: str, filename: str) -> Path:
    """An existing regular file ``root/subfolder/filename`` that really lies inside ``root``.

    Raises UnsafePath (400/403) for a bad or escaping name, FileNotFoundError when absent.
    """
    if not filename:
        raise UnsafePath("filename is required")
    check_relative(filename, "filename", allow_nested=False)
    parts = check_relative(subfolder, "subfolder") if subfolder else []
    real = contained(root, root.joinpath(*parts, filename))
    if not real.is_file():
        raise FileNotFoundError(filename)
    return real


def folder_inside(root: Path, subfolder: str) -> Path:
    """``root/subfolder`` (created if needed), checked to lie inside ``root``."""
    parts = check_relative(subfolder, "subfolder") if subfolder else []
    target = root.joinpath(*parts)
    contained(root, target, must_exist=False)  # a symlinked parent may not lead out
    target.mkdir(parents=True, exist_ok=True)
    return contained(root, target)


def sanitise_upload_name(name: str, extension: str) -> str:
    """A safe file name from a client's name: plain characters, no path, the given extension."""
    # Some clients percent-encode the multipart filename (aiohttp does); browsers do not.
    name = unicodedata.normalize("NFKC", unquote(name)).replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = _SAFE_CHARS.sub("_", stem).strip(" ._")[:100] or "upload"
    return f"{stem}{extension}"


def unique_name(
    folder: Path, name: str, content: bytes, numbered: str = "{stem}_{n}{dot}{ext}"
) -> tuple[str, bool]:
    """A name in ``folder`` for ``content``: ``name`` itself if free or holding the same
    bytes, else ``numbered`` with n = 1, 2... (``stem_1.ext``, ``stem_2.ext``...; ComfyUI's
    uploads use ``"{stem} ({n}){dot}{ext}"``); returns (name, already stored)."""
    stem, dot, ext = name.rpartition(".")
    candidate = name
    for counter in range(1, 10_000):
        path = folder / candidate
        if not path.exists():
            return candidate, False
        if path.is_file() and path.stat().st_size == len(content) and path.read_bytes() == content:
            return candidate, True
        candidate = numbered.format(stem=stem, n=counter, dot=dot, ext=ext)
    raise UnsafePath("too many files with this name")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, so no reader ever sees
    a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def workflow_file(folder: Path, name: str) -> Path:
    """The file of a saved workflow called ``name`` (``.json`` optional), checked."""
    if name.endswith(".json"):
        name = name[: -len(".json")]
    if not _WORKFLOW_NAME.match(name) or ".." in name:
        raise UnsafePath(
            "workflow names are 1-100 letters, digits, spaces and _.()- "
            "starting with a letter or digit"
        )
    return contained(folder, folder / f"{name}.json", must_exist=False)
