"""ComfyUI's catalogue and system routes: ``/object_info[/{class}]``, ``/system_stats``,
``/embeddings``, ``/models[/{folder}]``, ``/features`` (§2.1, §2.8, §2.9)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from aiohttp import web

from graphflow import __version__
from graphflow.runtime.models import PICKLE_SUFFIXES, SAFE_SUFFIXES, list_models
from graphflow.server.routes_common import json_response
from graphflow.server.state import STATE, ServerState

from .. import names
from .. import object_info as catalogue
from .feed import FEATURES
from .state import comfy_error

routes = web.RouteTableDef()

COMFYUI_VERSION = "0.3.64"
FRONTEND_VERSION = "1.27.10"
MODEL_FOLDERS = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models",
    "clip_vision", "style_models", "embeddings", "diffusers", "vae_approx", "controlnet",
    "gligen", "upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders",
)  # fmt: skip
MODEL_SUFFIXES = SAFE_SUFFIXES | PICKLE_SUFFIXES | {".gguf", ".sft", ".onnx", ".yaml", ".json"}


@routes.get("/object_info")
async def object_info(request: web.Request) -> web.Response:
    """Every class type in ComfyUI's grammar (key order, ``input_order``, combos as lists)."""
    state: ServerState = request.app[STATE]
    return json_response(catalogue.object_info(state.registry))


@routes.get("/object_info/{class_type}")
async def object_info_one(request: web.Request) -> web.Response:
    """``{class_type: info}``, or ``{}`` for an unknown class (200, as ComfyUI)."""
    state: ServerState = request.app[STATE]
    return json_response(
        catalogue.object_info_for(state.registry, request.match_info["class_type"])
    )


def _ram() -> tuple[int, int]:
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return (
            int(fields["MemTotal"].split()[0]) * 1024,
            int(fields["MemAvailable"].split()[0]) * 1024,
        )
    except (OSError, KeyError, ValueError):
        return 0, 0


def _devices() -> list[dict]:
    torch = sys.modules.get("torch")  # never import torch for a health check
    if torch is not None and torch.cuda.is_available():
        out = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            out.append({
                "name": f"cuda:{index} {torch.cuda.get_device_name(index)}", "type": "cuda",
                "index": index, "vram_total": total, "vram_free": free,
                "torch_vram_total": torch.cuda.memory_reserved(index),
                "torch_vram_free": torch.cuda.memory_reserved(index)
                - torch.cuda.memory_allocated(index),
            })  # fmt: skip
        return out
    total, free = _ram()
    return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": total, "vram_free": free,
             "torch_vram_total": total, "torch_vram_free": free}]  # fmt: skip


@routes.get("/system_stats")
async def system_stats(request: web.Request) -> web.Response:
    """ComfyUI's system block (every field, values from this machine) and devices."""
    total, free = _ram()
    torch = sys.modules.get("torch")
    system = {
        "os": os.name,
        "ram_total": total,
        "ram_free": free,
        "comfyui_version": COMFYUI_VERSION,
        "required_frontend_version": FRONTEND_VERSION,
        "installed_templates_version": "",
        "required_templates_version": "",
        "python_version": sys.version,
        "pytorch_version": getattr(torch, "__version__", "") if torch is not None else "",
        "embedded_python": False,
        "argv": list(sys.argv),
        "graphflow_version": __version__,
        "platform": platform.platform(),
    }
    return json_response({"system": system, "devices": _devices()})


LOADER_COMBOS = {
    "checkpoints": ("CheckpointLoaderSimple", "ckpt_name"),
    "loras": ("LoraLoader", "lora_name"),
    "vae": ("VAELoader", "vae_name"),
    "upscale_models": ("UpscaleModelLoader", "model_name"),
}
"""Folders whose loader offers more than the files (graphflow-tiny, diffusers folders...)."""


def _names(folder: str) -> list[str]:
    """The folder's model files, and what its loader's combo offers besides (so a client
    that picks a name from ``/models/checkpoints`` finds the embedded graphflow-tiny)."""
    found = list_models(folder, MODEL_SUFFIXES)
    combo = LOADER_COMBOS.get(folder)
    entry = names.CLASSES.get(combo[0]) if combo else None
    if entry is not None:
        offered = entry.spec.inputs_by_name[combo[1]].allowed_choices() or []
        found += [name for name in offered if name not in found]
    return found


@routes.get("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    """Embedding names without their extension."""
    return json_response(sorted({str(Path(n).with_suffix("")) for n in _names("embeddings")}))


@routes.get("/models")
async def model_folders(request: web.Request) -> web.Response:
    """ComfyUI's model folder names."""
    return json_response(list(MODEL_FOLDERS))


@routes.get("/models/{folder}")
async def models_in(request: web.Request) -> web.Response:
    """File names (relative, ``/``-separated) in one model folder; 404 for an unknown one."""
    folder = request.match_info["folder"]
    if folder not in MODEL_FOLDERS:
        raise comfy_error(404, "unknown_folder", f"no model folder {folder!r}")
    return json_response(_names(folder))


@routes.get("/features")
async def features(request: web.Request) -> web.Response:
    """What this server supports (ComfyUI's feature flags)."""
    state: ServerState = request.app[STATE]
    return json_response({**FEATURES, "max_upload_size": state.config.max_upload_bytes})
