"""The image pack's `graphflow` sub-commands: ``graphflow models import-ncnn``."""

from __future__ import annotations

import argparse


def _import_ncnn(args: argparse.Namespace) -> int:
    """Convert a Real-ESRGAN ncnn model (.param + .bin) to .safetensors."""
    from .ncnn_convert import main as import_ncnn  # torch loads only for this command

    argv = [args.param, args.bin]
    if args.out:
        argv += ["--out", args.out]
    if args.force:
        argv.append("--force")
    return import_ncnn(argv)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models import-ncnn`` to the graphflow command."""
    models = subparsers.add_parser("models", help="manage model files")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    convert = models_sub.add_parser(
        "import-ncnn", help="convert a Real-ESRGAN ncnn model (.param + .bin) to .safetensors"
    )
    convert.add_argument("param", help="the ncnn .param file (text)")
    convert.add_argument("bin", help="the ncnn .bin weights file")
    convert.add_argument(
        "--out",
        metavar="FILE.safetensors",
        help="where to write (default: MODELS/upscale_models/<param name>.safetensors)",
    )
    convert.add_argument("--force", action="store_true", help="overwrite an existing file")
    convert.add_argument(
        # graphflow's main() exports it as GRAPHFLOW_MODELS before the handler runs
        "--models-dir",
        metavar="DIR",
        help="models folder for the default --out (GRAPHFLOW_MODELS)",
    )
    convert.set_defaults(handler=_import_ncnn)
