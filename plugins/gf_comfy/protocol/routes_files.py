"""ComfyUI's file routes: ``/view`` and ``/upload/image``, ``/upload/mask`` (§2.6, §2.7).

Paths go through graphflow's checks (:mod:`graphflow.server.files`): every name component
checked, then the ``realpath`` must stay inside its folder, so a symbolic link inside
``output/`` pointing out of it is refused (ComfyUI's #12285). Uploads must decode as images
and respect the server's size limits.
"""

from __future__ import annotations

import asyncio
import io
import json
import mimetypes
from pathlib import Path
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from graphflow.server.files import (
    FOLDER_TYPES,
    UnsafePath,
    check_relative,
    folder_inside,
    resolve_file,
    sanitise_upload_name,
    unique_name,
    write_atomically,
)
from graphflow.server.routes_common import json_response
from graphflow.server.routes_files import IMAGE_FORMATS, VIEW_CSP, inspect_image
from graphflow.server.state import STATE, ServerState

from .state import comfy_error

routes = web.RouteTableDef()

INERT_TYPES = ("text/html", "text/javascript", "application/javascript", "text/css")


def _folder_and_name(filename: str, kind: str) -> tuple[str, str]:
    for suffix in FOLDER_TYPES:
        if filename.endswith(f" [{suffix}]"):
            return filename[: -len(suffix) - 3], suffix
    return filename, kind


def _reencode(path: Path, preview: str, channel: str) -> tuple[bytes, str]:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if channel == "a":
            alpha = image.getchannel("A") if "A" in image.getbands() else None
            if alpha is None:
                alpha = Image.new("L", image.size, 255)
            out, fmt, quality = alpha, "png", None
        elif channel == "rgb":
            out, fmt, quality = image.convert("RGB"), "png", None
        else:
            out, fmt, quality = image, "png", None
        if preview:
            fmt, _, q = preview.partition(";")
            fmt = "webp" if fmt == "webp" or "a" in channel else "jpeg"
            quality = int(q) if q.isdigit() else 90
            if fmt == "jpeg":
                out = out.convert("RGB")
        buffer = io.BytesIO()
        out.save(buffer, format=fmt.upper(), **({"quality": quality} if quality else {}))
    return buffer.getvalue(), f"image/{fmt}"


@routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    """A file of output/, input/ or temp/: ``filename`` (may end in `` [output]``...),
    ``type``, ``subfolder``, ``preview`` (``webp;90``), ``channel`` (``rgb``, ``a``)."""
    state: ServerState = request.app[STATE]
    raw = request.query.get("filename", "")
    if not raw:
        raise comfy_error(404, "file_not_found", "no filename given")
    filename, kind = _folder_and_name(raw, request.query.get("type") or "output")
    if kind not in FOLDER_TYPES:
        raise comfy_error(
            400, "invalid_parameter", f"type must be one of {', '.join(FOLDER_TYPES)}"
        )
    if filename.startswith("/") or ".." in filename:
        raise comfy_error(400, "invalid_path", "filename may not contain '..' or start with '/'")
    subfolder = request.query.get("subfolder", "")
    try:
        if subfolder:
            check_relative(subfolder, "subfolder")
    except UnsafePath as error:
        raise comfy_error(403, "forbidden_path", str(error)) from None
    try:
        path = resolve_file(state.folders[kind], subfolder, filename)
    except UnsafePath as error:
        raise comfy_error(error.status, error.code, str(error)) from None
    except FileNotFoundError:
        raise comfy_error(404, "file_not_found", f"no file {filename!r} in {kind}") from None
    headers = {
        "Content-Disposition": f'filename="{quote(path.name)}"',
        "Content-Security-Policy": VIEW_CSP,
        "Cache-Control": "no-cache",
    }
    preview = request.query.get("preview", "")
    channel = request.query.get("channel", "rgba")
    if preview or channel in ("rgb", "a"):
        try:
            data, content_type = await asyncio.get_running_loop().run_in_executor(
                None, _reencode, path, preview, channel
            )
        except Exception as error:  # not an image: the file as it is would not help either
            raise comfy_error(
                400, "invalid_image", f"cannot re-encode {path.name}: {error}"
            ) from None
        return web.Response(body=data, content_type=content_type, headers=headers)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type in INERT_TYPES:
        content_type = "application/octet-stream"
    return web.FileResponse(path, headers={**headers, "Content-Type": content_type})


async def _read_form(request: web.Request, limit: int) -> tuple[dict[str, str], bytes | None, str]:
    if not request.content_type.startswith("multipart/"):
        raise comfy_error(400, "wrong_content_type", "expected a multipart/form-data upload")
    fields: dict[str, str] = {}
    data: bytes | None = None
    name = ""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise comfy_error(400, "invalid_upload", "nested multipart bodies are not accepted")
            cap = limit if part.name == "image" else 64 * 1024
            chunks, size = [], 0
            while chunk := await part.read_chunk(1 << 16):
                size += len(chunk)
                if size > cap:
                    raise comfy_error(413, "upload_too_large", f"{part.name} is over {cap} bytes")
                chunks.append(chunk)
            if part.name == "image":
                data, name = b"".join(chunks), part.filename or "upload"
            elif part.name:
                fields[part.name] = b"".join(chunks).decode("utf-8", "replace").strip()
    except (ValueError, AssertionError, UnicodeError, HttpProcessingError) as error:
        raise comfy_error(400, "invalid_upload", f"malformed multipart body: {error}") from None
    return fields, data, name


def _dedupe(folder: Path, name: str, data: bytes, overwrite: bool) -> tuple[str, bool]:
    """ComfyUI's naming: same bytes → same name; else ``stem (1).ext``...; (name, stored)."""
    if overwrite:
        return name, False
    try:
        return unique_name(folder, name, data, numbered="{stem} ({n}){dot}{ext}")
    except UnsafePath:
        raise comfy_error(400, "invalid_upload", "too many files with this name") from None


async def _store(request: web.Request, mask: bool) -> web.Response:
    state: ServerState = request.app[STATE]
    limit = state.config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + (1 << 16):
        raise comfy_error(413, "upload_too_large", f"uploads are limited to {limit} bytes")
    fields, data, client_name = await _read_form(request, limit)
    if data is None:
        raise comfy_error(400, "invalid_upload", "the form needs an 'image' file field")
    kind = fields.get("type") or "input"
    if kind not in FOLDER_TYPES:
        raise comfy_error(
            400, "invalid_parameter", f"type must be one of {', '.join(FOLDER_TYPES)}"
        )
    loop = asyncio.get_running_loop()
    try:
        fmt, _, _ = await loop.run_in_executor(
            None, inspect_image, data, state.config.max_upload_pixels
        )
    except ValueError as error:
        raise comfy_error(400, "invalid_image", str(error)) from None
    subfolder = fields.get("subfolder", "")
    try:
        folder = folder_inside(state.folders[kind], subfolder)
        if mask:
            data = await loop.run_in_executor(None, _masked, state, fields, data)
            fmt = "PNG"
    except UnsafePath as error:
        raise comfy_error(400, error.code, str(error)) from None
    name = sanitise_upload_name(client_name, IMAGE_FORMATS[fmt])
    overwrite = fields.get("overwrite", "").lower() in ("1", "true")
    name, stored = _dedupe(folder, name, data, overwrite)
    if not stored:
        await loop.run_in_executor(None, write_atomically, folder / name, data)
    return json_response({"name": name, "subfolder": subfolder, "type": kind})


def _masked(state: ServerState, fields: dict[str, str], upload: bytes) -> bytes:
    """A copy of ``original_ref`` with the upload's alpha as its alpha (PNG bytes)."""
    from PIL import Image

    try:
        ref = json.loads(fields.get("original_ref") or "")
        if not isinstance(ref, dict):
            raise ValueError
    except ValueError:
        raise UnsafePath("original_ref must be a JSON object {filename, subfolder, type}") from None
    kind = ref.get("type") or "input"
    if kind not in FOLDER_TYPES:
        raise UnsafePath(f"original_ref type must be one of {', '.join(FOLDER_TYPES)}")
    try:
        original = resolve_file(
            state.folders[kind], str(ref.get("subfolder") or ""), str(ref.get("filename") or "")
        )
    except FileNotFoundError:
        raise UnsafePath("original_ref names no existing file") from None
    with Image.open(original) as base, Image.open(io.BytesIO(upload)) as mask_image:
        result = base.convert("RGBA")
        mask_image = mask_image.convert("RGBA").resize(result.size)
        result.putalpha(mask_image.getchannel("A"))
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
    return buffer.getvalue()


@routes.post("/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    """Store an image (``image``, ``type``, ``subfolder``, ``overwrite``): ``{name, subfolder,
    type}``; identical bytes keep their name, others become ``name (1).png``."""
    return await _store(request, mask=False)


@routes.post("/upload/mask")
async def upload_mask(request: web.Request) -> web.Response:
    """Like ``/upload/image``, plus ``original_ref``: stores the original with the upload's
    alpha channel."""
    return await _store(request, mask=True)
