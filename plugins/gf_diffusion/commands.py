"""The diffusion pack's ``graphflow`` sub-commands: ``graphflow models list`` and
``graphflow models inspect``.

Both read file headers only (``model_info``, ``model_listing``); nothing is loaded and no
model file is opened for writing. Problems are one-line :class:`ModelFileError` messages
(graphflow's ``main()`` prints them and exits 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from graphflow.cli_groups import command_group
from graphflow.runtime.models import ModelFileError, checked_model_name, find_model

from .model_info import inspect_model
from .model_listing import catalog, list_models_folders


def _common(parser: argparse.ArgumentParser) -> None:
    # graphflow's main() reads these two before the handler runs (settings in force).
    parser.add_argument("--models-dir", metavar="DIR", help="models folder (GRAPHFLOW_MODELS)")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (GRAPHFLOW_CONFIG)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read .ckpt/.pt/.pth/.bin files (weights-only torch.load)",
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models list`` and ``models inspect`` to the graphflow command."""
    group = command_group(subparsers, "models", help="list, inspect and import model files")
    listing = group.add_parser(
        "list", help="every model folder and its files, with the detected family of each"
    )
    listing.add_argument(
        "--folder", metavar="NAME", help="only this folder (checkpoints, loras...)"
    )
    _common(listing)
    listing.set_defaults(handler=cmd_list)
    inspect = group.add_parser(
        "inspect", help="what a model file is (family, dtype, parameters, LoRA rank...)"
    )
    inspect.add_argument(
        "file",
        help="a path, FOLDER/NAME in the models folders (loras/x.safetensors) or a checkpoint",
    )
    _common(inspect)
    inspect.set_defaults(handler=cmd_inspect)


# -- list ------------------------------------------------------------------------------------


def human_size(size: int | None) -> str:
    """``12.3 MB`` style (decimal units, as file managers show them)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def format_listing(folders: list[dict[str, Any]]) -> str:
    """The text form of a listing: one block per folder, one line per model."""
    lines: list[str] = []
    for folder in folders:
        lines.append(f"{folder['folder']}/  ({', '.join(folder['search'])})")
        if not folder["models"]:
            lines.append("  (empty)")
        width = max((len(m["name"]) for m in folder["models"]), default=0)
        label_width = max((len(m["label"]) for m in folder["models"]), default=0)
        dtype_width = max((len(m.get("dtype") or "-") for m in folder["models"]), default=0)
        for model in folder["models"]:
            extra = []
            if model.get("bundled"):
                extra.append("bundled")
            if model.get("belongs_in"):
                extra.append(f"belongs in {model['belongs_in']}/")
            note = f"  [{'; '.join(extra)}]" if extra else ""
            lines.append(
                f"  {model['name']:<{width}}  {model['label']:<{label_width}}  "
                f"{model.get('dtype') or '-':<{dtype_width}}  {human_size(model.get('size')):>8}"
                f"{note}"
            )
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    """Print every model folder (or ``--folder``) with the detected family of each file."""
    if args.folder:
        checked_model_name("models", args.folder)
    folders = list_models_folders(args.folder, allow_pickle=args.allow_pickle)
    if args.json:
        print(json.dumps({"folders": folders}, indent=2))
    else:
        print(format_listing(folders))
    return 0


# -- inspect ---------------------------------------------------------------------------------


def resolve_target(text: str) -> Path:
    """The file ``inspect`` means: a path that exists, else ``FOLDER/NAME`` in the models
    folders, else a checkpoint name (the embedded graphflow-tiny among them)."""
    path = Path(text).expanduser()
    if path.exists():
        return path
    folder, _, name = text.replace("\\", "/").partition("/")
    if name:
        found = find_model(folder, name)
        if found is not None:
            return found
    checkpoints = catalog("checkpoints")
    if text in checkpoints.names():
        return checkpoints.path(text)
    raise ModelFileError(
        f"no model file {text!r}: give a path, FOLDER/NAME in the models folders "
        "(e.g. loras/detail.safetensors) or a checkpoint name"
    )


def _count(value: int | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def _detail_lines(kind: str | None, details: dict[str, Any]) -> list[str]:
    if kind == "lora":
        targets = ", ".join(f"{k} {v} layers" for k, v in details["targets"].items())
        lines = [
            f"format:      {details['format']} (keys: {details.get('key_style', '?')})",
            f"base model:  {details.get('base') or 'unknown'}",
            f"rank(s):     {', '.join(map(str, details['ranks'])) or '-'}",
            f"targets:     {targets or '-'}",
        ]
        if details.get("alphas"):
            lines.append(f"alpha(s):    {', '.join(f'{a:g}' for a in details['alphas'])}")
        return lines
    if kind == "embedding":
        encoders = ", ".join(
            f"{name} ({e['vectors']} x {e['width']})" for name, e in details["encoders"].items()
        )
        return [
            f"vectors:     {details['vectors']}",
            f"encoders:    {encoders or '-'}",
            f"base model:  {details.get('base') or 'unknown'}",
        ]
    lines = []
    if "contains" in details:
        parts = ", ".join(f"{k} {_count(v)}" for k, v in details["contains"].items())
        lines.append(f"contains:    {parts}")
        lines.append(f"text enc.:   {', '.join(details['text_encoders']) or 'none'}")
        lines.append(
            f"loads:       {'yes, with ' + details['config'] if details['loads'] else 'no'}"
        )
        if details.get("note"):
            lines.append(f"note:        {details['note']}")
    if "components" in details:
        lines.append(f"pipeline:    {details.get('pipeline')}")
        for name, part in details["components"].items():
            size = f", {_count(part['parameters'])} params" if "parameters" in part else ""
            weights = f" ({part['weights']})" if part.get("weights") else ""
            lines.append(f"  {name:<14} {part.get('class')}{size}{weights}")
    return lines


def format_inspection(info: dict[str, Any]) -> str:
    """The text form of :func:`model_info.inspect_model`'s answer."""
    lines = [
        f"file:        {info['path']}",
        f"what:        {info['label']}",
        f"kind:        {info.get('kind') or 'unknown'}"
        + (f" (models/{info['folder']}/)" if info.get("folder") else ""),
        f"file format: {info.get('file_format')}",
        f"dtype:       {info.get('dtype') or '?'}",
        f"parameters:  {_count(info.get('parameters'))} ({info.get('parameters')})",
        f"size:        {human_size(info.get('size'))}",
    ]
    lines += _detail_lines(info.get("kind"), info.get("details") or {})
    for key, value in (info.get("metadata") or {}).items():
        lines.append(f"meta {key}: {value[:120]}")
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what one model file is, without loading it."""
    info = inspect_model(resolve_target(args.file), allow_pickle=args.allow_pickle)
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0
