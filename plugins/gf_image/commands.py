"""The image pack's `graphflow` sub-commands: ``graphflow models import-ncnn``."""

from __future__ import annotations

import argparse

from graphflow.cli_groups import command_group

from . import ncnn_convert  # light: torch loads only when a conversion runs


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models import-ncnn`` to the graphflow command."""
    models_sub = command_group(subparsers, "models", help="list, inspect and import model files")
    convert = models_sub.add_parser(
        "import-ncnn", help="convert a Real-ESRGAN ncnn model (.param + .bin) to .safetensors"
    )
    ncnn_convert.add_arguments(convert)
    convert.add_argument(
        # graphflow's main() makes it the models setting before the handler runs
        "--models-dir",
        metavar="DIR",
        help="models folder for the default --out (GRAPHFLOW_MODELS)",
    )
    convert.set_defaults(handler=ncnn_convert.convert_from_args)
