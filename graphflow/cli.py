"""The ``graphflow`` command: run, validate, convert, serve, list nodes and plugins, the schema.

Plugins may add sub-commands (hook ``graphflow_cli_commands``).

Bad input never ends in a Python traceback: every expected problem is one clear line (or
one line per validation error) on stderr and a non-zero exit code (1: the workflow is
invalid or its run failed; 2: the command itself could not be carried out).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import __version__
from .cancel import CancelToken
from .cli_cache import add_cache_commands
from .errors import GraphflowError, RunStatus, ValidationFailed
from .executor import Executor, RunResult
from .formats import GRAPHFLOW, export_workflow, exporter_names, read_workflow_file
from .plugins import LoadedPlugins, load_plugins
from .progress import ConsoleProgress
from .server import add_backend_arguments, add_serve_arguments, run_serve
from .settings import LoadedSettings, load_settings, use_settings
from .workflow import Workflow, workflow_json_schema

EXIT_INVALID = 1
EXIT_USAGE = 2


class CommandError(GraphflowError):
    """A problem with the command line itself (shown as one line, exit 2)."""


def _load_plugins(args: argparse.Namespace) -> LoadedPlugins:
    loaded = load_plugins(args.plugin_dir)
    for problem in loaded.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return loaded


def _read(args: argparse.Namespace, loaded: LoadedPlugins) -> Workflow:
    """Read the workflow file in any known format; say in one line what a foreign one was
    read as (on stderr, so ``--json`` output stays clean)."""
    workflow, label = read_workflow_file(args.workflow, loaded.registry)
    if not label.startswith("graphflow/"):
        print(f"read as {label}", file=sys.stderr)
    return workflow


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """Split ``NODE.INPUT=VALUE``; VALUE is JSON when it parses as JSON, else plain text."""
    target, sep, raw = text.partition("=")
    node_id, dot, name = target.rpartition(".")
    if not sep or not dot or not node_id or not name:
        raise CommandError(f"--set expects NODE.INPUT=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or a number or nesting JSON cannot hold
        value = raw
    return node_id, name, value


def _apply_sets(workflow: Workflow, assignments: Sequence[str]) -> None:
    for text in assignments:
        node_id, name, value = parse_assignment(text)
        try:
            workflow.set_input(node_id, name, value)
        except GraphflowError as error:
            raise CommandError(f"--set {text}: {error}") from None


def _print_validation(path: str, error: ValidationFailed) -> None:
    if error.read_as:  # a foreign document its importer refused: say what it was read as
        print(f"read as {error.read_as}", file=sys.stderr)
    count = len(error.errors)
    print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
    for item in error.errors:
        print(f"  - {item}", file=sys.stderr)


# Display data shown one entry per line; any other list (e.g. tokens) goes on one line.
_ONE_PER_LINE = {"images", "text", "warnings"}


def _summarise(result: RunResult) -> list[str]:
    lines = []
    for node_id, ui in result.ui.items():
        for key, items in ui.items():
            if isinstance(items, list) and key not in _ONE_PER_LINE:
                lines.append(f"  {node_id} {key}: {' '.join(str(i) for i in items)}")
                continue
            for item in items if isinstance(items, list) else [items]:
                shown = item.get("path", item) if isinstance(item, dict) else item
                lines.append(f"  {node_id} {key}: {shown}")
    return lines


@contextmanager
def _ctrl_c_interrupts(cancel: CancelToken) -> Iterator[None]:
    """First Ctrl+C cancels the run's token, so it stops cleanly at the next node or step
    (locally or on a Ray actor); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        print("\ninterrupting... (Ctrl+C again to abort)", file=sys.stderr)
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_on_ray(
    args: argparse.Namespace,
    loaded: LoadedPlugins,
    workflow: Workflow,
    outputs,
    progress,
    cancel: CancelToken,
) -> RunResult:
    """Run on a Ray actor (``--backend ray``); cancelling ``cancel`` reaches the remote run."""
    from .distributed.remote_run import run_on_ray

    return run_on_ray(
        workflow,
        outputs,
        registry=loaded.registry,
        output_dir=args.output,
        plugin_dirs=args.plugin_dir,
        address=args.ray_address,
        gpus=args.gpus_per_worker,
        observers=[progress],
        cancel=cancel,
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Run a workflow with a progress bar and print what it produced."""
    loaded = _load_plugins(args)
    try:
        workflow = _read(args, loaded)
    except ValidationFailed as error:  # an imported workflow that cannot be mapped
        _print_validation(args.workflow, error)
        return EXIT_INVALID
    _apply_sets(workflow, args.set or [])
    executor = Executor(loaded.registry, output_dir=args.output)
    outputs = args.outputs.split(",") if args.outputs else None
    progress = ConsoleProgress(disable=args.quiet or args.json)
    cancel = CancelToken()  # this run's: Ctrl+C cancels it
    try:
        with _ctrl_c_interrupts(cancel):
            if getattr(args, "backend", "local") == "ray":
                result = _run_on_ray(args, loaded, workflow, outputs, progress, cancel)
            else:
                result = executor.run(workflow, outputs, observers=[progress], cancel=cancel)
    except ValidationFailed as error:
        _print_validation(args.workflow, error)
        return EXIT_INVALID
    finally:
        progress.close()
    if args.json:
        print(
            json.dumps(
                {
                    "status": result.status,
                    "executed": result.executed,
                    "cached": result.cached,
                    "seconds": round(result.seconds, 4),
                    "ui": result.ui,
                    "error": result.error.to_dict() if result.error else None,
                },
                indent=2,
                default=repr,
            )
        )
        return 0 if result.ok else EXIT_INVALID
    if result.status == RunStatus.FAILED:
        err = result.error
        print(
            f"error: node {err.node!r} failed: {err.exception_type}: {err.message}", file=sys.stderr
        )
        return EXIT_INVALID
    if result.status == RunStatus.INTERRUPTED:
        print("interrupted", file=sys.stderr)
        return EXIT_INVALID
    print(
        f"done: {len(result.executed)} executed, {len(result.cached)} cached, "
        f"{result.seconds:.2f} s"
    )
    for line in _summarise(result):
        print(line)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a workflow and list every problem."""
    loaded = _load_plugins(args)
    executor = Executor(loaded.registry)
    try:
        workflow = _read(args, loaded)
        _apply_sets(workflow, args.set or [])
        validated = executor.validate(workflow)
    except ValidationFailed as error:
        _print_validation(args.workflow, error)
        return EXIT_INVALID
    outputs = ", ".join(validated.output_nodes)
    print(f"{args.workflow}: valid ({len(validated.order)} nodes; outputs: {outputs})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a workflow (any readable format, PNGs too) to graphflow/1 or an exporter's."""
    loaded = _load_plugins(args)
    known = exporter_names(loaded.registry)
    if args.to not in known:
        raise CommandError(f"--to {args.to!r} is not a known format (known: {', '.join(known)})")
    try:
        workflow = _read(args, loaded)
    except ValidationFailed as error:
        _print_validation(args.workflow, error)
        return EXIT_INVALID
    text = export_workflow(workflow, args.to, loaded.registry)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    target = Path(args.out)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as error:
        raise CommandError(f"cannot write {target}: {error.strerror}") from None
    print(f"wrote {target} ({args.to}, {len(workflow.nodes)} nodes)")
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    """List the registered nodes."""
    registry = _load_plugins(args).registry
    if args.json:
        print(json.dumps(registry.to_dict(), indent=2, default=repr))
        return 0
    for spec in sorted(registry, key=lambda s: (s.category, s.id)):
        summary = spec.description.splitlines()[0]
        print(f"{spec.id:<28} {spec.version:<8} {spec.category:<22} {summary}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """List loaded plugins and the ones that were skipped."""
    loaded = load_plugins(args.plugin_dir)
    for info in loaded.plugins:
        extra = f", {len(info.types)} types" if info.types else ""
        print(f"{info.name:<20} {len(info.nodes)} nodes{extra}  ({info.source})")
    for problem in loaded.problems:
        print(f"SKIPPED {problem.plugin:<12} {problem.stage}: {problem.error}  ({problem.source})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the workflow format."""
    print(json.dumps(workflow_json_schema(), indent=2))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print every setting's effective value and where it came from."""
    loaded: LoadedSettings = args.loaded_settings
    rows = loaded.sources()
    if args.json:
        shown = {
            row.name: {"value": _shown_value(row.name, row.value), "origin": row.origin}
            for row in rows
        }
        print(json.dumps(shown, indent=2, default=str))
        return 0
    where = loaded.config_file or "none (./graphflow.toml, $GRAPHFLOW_CONFIG or --config)"
    print(f"config file: {where}")
    width = max(len(row.name) for row in rows)
    for row in rows:
        value = _shown_value(row.name, row.value)
        print(f"{row.name:<{width}}  {value!s:<28} {row.origin}")
    return 0


def _shown_value(name: str, value: Any) -> Any:
    """Secrets are never printed, only whether they are set."""
    if name == "auth_token" and value:
        return "(set, hidden)"
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP API, websocket and editor server until Ctrl+C."""
    return run_serve(args)


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands that installed plugins add (e.g. ``models import-ncnn``)."""
    loaded = load_plugins()
    for impl in loaded.manager.hook.graphflow_cli_commands.get_hookimpls():
        try:
            impl.function(subparsers=sub)
        except Exception as error:  # one plugin's bug must not take the CLI down
            print(
                f"warning: plugin {impl.plugin_name!r} could not add its commands: {error}",
                file=sys.stderr,
            )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(prog="graphflow", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"graphflow {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--plugin-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also load plugins from this folder (repeatable; GRAPHFLOW_PLUGIN_PATH too)",
    )
    common.add_argument(
        "--models-dir",
        metavar="DIR",
        help="models folder with checkpoints/, upscale_models/... (GRAPHFLOW_MODELS; ./models)",
    )
    common.add_argument(
        "--device", metavar="DEVICE", help="cpu, cuda, cuda:1, mps (GRAPHFLOW_DEVICE; auto)"
    )
    common.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (GRAPHFLOW_CONFIG; default ./graphflow.toml if present)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run a workflow file")
    run.add_argument("workflow")
    run.add_argument(
        "--set",
        action="append",
        metavar="NODE.INPUT=VALUE",
        help="override an input (value parsed as JSON, else text)",
    )
    run.add_argument(
        "--output",
        default="output",
        metavar="DIR",
        help="folder output nodes write to (default: ./output)",
    )
    run.add_argument(
        "--outputs",
        metavar="ID[,ID...]",
        help="run only these nodes and what they need (default: all output nodes)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    add_backend_arguments(run)
    run.set_defaults(handler=cmd_run)

    validate = sub.add_parser("validate", parents=[common], help="check a workflow file")
    validate.add_argument("workflow")
    validate.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE")
    validate.set_defaults(handler=cmd_validate)

    convert = sub.add_parser(
        "convert",
        parents=[common],
        help="convert a workflow between formats (graphflow/1, ComfyUI API and UI, PNGs)",
    )
    convert.add_argument("workflow", metavar="IN")
    convert.add_argument("out", metavar="OUT", help="file to write ('-': standard output)")
    convert.add_argument(
        "--to",
        default=GRAPHFLOW,
        metavar="FORMAT",
        help="graphflow (default) or a plugin's format, e.g. comfy-api, comfy-ui",
    )
    convert.set_defaults(handler=cmd_convert)

    nodes = sub.add_parser("nodes", parents=[common], help="list available nodes")
    nodes.add_argument("--json", action="store_true", help="full specs as JSON")
    nodes.set_defaults(handler=cmd_nodes)

    plugins = sub.add_parser("plugins", parents=[common], help="list plugins")
    plugins.set_defaults(handler=cmd_plugins)

    schema = sub.add_parser("schema", help="print the workflow JSON Schema")
    schema.set_defaults(handler=cmd_schema)

    config = sub.add_parser(
        "config", parents=[common], help="print the effective settings and their origins"
    )
    config.add_argument("--json", action="store_true", help="as JSON")
    config.set_defaults(handler=cmd_config)

    serve = sub.add_parser(
        "serve", parents=[common], help="run the API server (queue, websocket, editor)"
    )
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)
    add_cache_commands(sub, common)
    _add_plugin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphflow`` console script."""
    try:
        args = build_parser().parse_args(argv)
        # Flags > environment > config file > defaults; in force for the whole command
        # (validation reads file choices, nodes read ctx.settings) and never exported.
        args.loaded_settings = load_settings(
            {
                "models": getattr(args, "models_dir", None),
                "device": getattr(args, "device", None),
            },
            config_file=getattr(args, "config", None),
        )
        with use_settings(args.loaded_settings.settings):
            return args.handler(args)
    except GraphflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
