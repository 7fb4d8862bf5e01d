"""Files: view outputs and inputs, upload images, and the editor's saved workflows."""

from __future__ import annotations

import asyncio
import io
import mimetypes
import warnings
from pathlib import Path
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import ErrorCode, WorkflowFormatError
from ..workflow import save_workflow, workflow_from_dict
from .files import (
    FOLDER_TYPES,
    UnsafePath,
    folder_inside,
    resolve_file,
    sanitise_upload_name,
    unique_name,
    workflow_file,
    write_atomically,
)
from .routes_common import JSON_TYPE, ApiError, json_response, read_json
from .state import STATE, ServerState

routes = web.RouteTableDef()

IMAGE_FORMATS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tiff",
}
UPLOAD_TYPES = ("input", "temp")
# Files served by /api/view may be anything a node wrote (even HTML or SVG); this policy keeps
# them inert when opened directly, so an output file cannot run script in the API's origin.
VIEW_CSP = (
    "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; sandbox"
)


def _path_error(error: UnsafePath) -> ApiError:
    return ApiError(error.status, error.code, str(error))


@routes.get("/api/view")
async def view(request: web.Request) -> web.StreamResponse:
    """A file from the output, input or temp folder (``?filename=&type=&subfolder=``)."""
    state: ServerState = request.app[STATE]
    kind = request.query.get("type", "output")
    if kind not in FOLDER_TYPES:
        raise ApiError(400, "invalid_parameter", f"type must be one of {', '.join(FOLDER_TYPES)}")
    filename = request.query.get("filename", "")
    subfolder = request.query.get("subfolder", "")
    try:
        path = resolve_file(state.folders[kind], subfolder, filename)
    except UnsafePath as error:
        raise _path_error(error) from None
    except FileNotFoundError:
        raise ApiError(404, "file_not_found", f"no file {filename!r} in {kind}") from None
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.name)}",
            "Content-Security-Policy": VIEW_CSP,
            "Cache-Control": "no-cache",
        },
    )


def inspect_image(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) of an image that fully decodes; ValueError otherwise."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                fmt, (width, height) = image.format, image.size
                if fmt not in IMAGE_FORMATS:
                    raise ValueError(
                        f"{fmt} images are not accepted ({', '.join(IMAGE_FORMATS)} are)"
                    )
                if width * height > max_pixels:
                    raise ValueError(f"{width}×{height} is over the {max_pixels} pixel limit")
                image.load()  # decode every pixel: truncated or corrupt files fail here
        except ValueError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError("the image has too many pixels") from None
        except Exception as error:
            raise ValueError(f"not a readable image ({type(error).__name__})") from None
    return fmt, width, height


async def _read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = await part.read_chunk(1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "upload_too_large", f"{what} is over the {limit} byte limit")
        chunks.append(chunk)


@routes.post("/api/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    """Store an uploaded image (multipart field ``image``; optional ``type``, ``subfolder``,
    ``overwrite``); returns the stored ``name``."""
    state: ServerState = request.app[STATE]
    limit = state.config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + (1 << 16):
        raise ApiError(413, "upload_too_large", f"uploads are limited to {limit} bytes")
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "wrong_content_type", "expected a multipart/form-data upload")
    fields: dict[str, str] = {}
    data: bytes | None = None
    client_name = ""
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "invalid_upload", "nested multipart bodies are not accepted")
            if part.name == "image":
                client_name = part.filename or "upload"
                data = await _read_part(part, limit, "the image")
            elif part.name in ("type", "subfolder", "overwrite"):
                raw = await _read_part(part, 1024, f"field {part.name}")
                fields[part.name] = raw.decode("utf-8", "replace").strip()
            else:
                await _read_part(part, 1024, f"field {part.name}")
    except ApiError:
        raise
    except (ValueError, AssertionError, UnicodeError, HttpProcessingError) as error:
        raise ApiError(400, "invalid_upload", f"malformed multipart body: {error}") from None
    if data is None:
        raise ApiError(400, "invalid_upload", "the form needs an 'image' file field")
    kind = fields.get("type") or "input"
    if kind not in UPLOAD_TYPES:
        raise ApiError(400, "invalid_parameter", f"type must be one of {', '.join(UPLOAD_TYPES)}")
    loop = asyncio.get_running_loop()
    try:
        fmt, width, height = await loop.run_in_executor(
            None, inspect_image, data, state.config.max_upload_pixels
        )
    except ValueError as error:
        raise ApiError(400, "invalid_image", str(error)) from None
    subfolder = fields.get("subfolder", "")
    try:
        folder = folder_inside(state.folders[kind], subfolder)
    except UnsafePath as error:
        raise _path_error(error) from None
    name = sanitise_upload_name(client_name, IMAGE_FORMATS[fmt])
    if fields.get("overwrite", "").lower() not in ("1", "true", "yes"):
        name, stored = unique_name(folder, name, data)
    else:
        stored = False
    if not stored:
        await loop.run_in_executor(None, write_atomically, folder / name, data)
    return json_response(
        {
            "name": name,
            "subfolder": subfolder,
            "type": kind,
            "format": fmt.lower(),
            "width": width,
            "height": height,
        }
    )


def _workflow_path(state: ServerState, name: str) -> Path:
    try:
        return workflow_file(state.folders["workflows"], name)
    except UnsafePath as error:
        raise _path_error(error) from None


@routes.get("/api/workflows")
async def list_workflows(request: web.Request) -> web.Response:
    """Saved workflows: name, size and modification time."""
    state: ServerState = request.app[STATE]
    items = []
    for path in sorted(state.folders["workflows"].glob("*.json")):
        if path.name.startswith(".") or not path.is_file():
            continue
        stat = path.stat()
        items.append({"name": path.stem, "size": stat.st_size, "modified": stat.st_mtime})
    return json_response({"workflows": items})


@routes.get("/api/workflows/{name}")
async def get_workflow(request: web.Request) -> web.Response:
    """A saved workflow document."""
    state: ServerState = request.app[STATE]
    path = _workflow_path(state, request.match_info["name"])
    if not path.is_file():
        raise ApiError(404, "workflow_not_found", f"no saved workflow {path.stem!r}")
    return web.Response(text=path.read_text(encoding="utf-8"), content_type=JSON_TYPE)


@routes.put("/api/workflows/{name}")
async def put_workflow(request: web.Request) -> web.Response:
    """Save a workflow document (checked as a document, not validated as a graph: the editor
    saves work in progress). 201 when new, 200 when replaced."""
    state: ServerState = request.app[STATE]
    path = _workflow_path(state, request.match_info["name"])
    body = await read_json(request, state.config.max_body_bytes)
    nodes = body.get("nodes") if isinstance(body, dict) else None
    if isinstance(nodes, (dict, list)) and len(nodes) > state.config.max_nodes:
        raise ApiError(413, "workflow_too_large", f"at most {state.config.max_nodes} nodes")
    try:
        workflow = workflow_from_dict(body)
    except WorkflowFormatError as error:
        raise ApiError(400, ErrorCode.INVALID_DOCUMENT, str(error)) from None
    except RecursionError:
        raise ApiError(
            400, ErrorCode.INVALID_DOCUMENT, "the document is nested too deeply"
        ) from None
    created = not path.exists()
    save_workflow(workflow, path)
    return json_response({"name": path.stem, "created": created}, status=201 if created else 200)


@routes.delete("/api/workflows/{name}")
async def delete_workflow(request: web.Request) -> web.Response:
    """Delete a saved workflow."""
    state: ServerState = request.app[STATE]
    path = _workflow_path(state, request.match_info["name"])
    try:
        path.unlink()
    except FileNotFoundError:
        raise ApiError(404, "workflow_not_found", f"no saved workflow {path.stem!r}") from None
    return json_response({"deleted": path.stem})
