"""Plugins on pluggy: the hook specifications and discovery.

A plugin is a module with ``@hookimpl`` functions. It is found either through the entry-point
group ``graphflow.plugins`` (how graphflow's own packs in ``plugins/`` are installed too) or in
a plugin folder (``GRAPHFLOW_PLUGIN_PATH`` / ``--plugin-dir``: a folder whose packages and
modules are imported by path). A plugin that fails to import or register is skipped and
reported; it never stops the others from loading.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import pluggy

from .node import NodeSpec
from .registry import Registry
from .types import PortType

PROJECT = "graphflow"
ENTRY_POINT_GROUP = "graphflow.plugins"
PLUGIN_PATH_ENV = "GRAPHFLOW_PLUGIN_PATH"  # the ``plugin_path`` setting

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Mark a plugin function as the implementation of a graphflow hook."""


class GraphflowHooks:
    """The hooks a plugin may implement (each one optional)."""

    @hookspec
    def graphflow_port_types(self) -> Sequence[PortType]:
        """Return the port types this plugin adds (registered before any node)."""

    @hookspec
    def graphflow_nodes(self) -> Sequence[NodeSpec]:
        """Return the node specs this plugin provides."""

    @hookspec
    def graphflow_cli_commands(self, subparsers) -> None:
        """Add sub-commands to ``graphflow`` (``subparsers`` is argparse's sub-parser action).

        Each added parser sets ``handler=function(args) -> exit code`` with ``set_defaults``.
        """

    @hookspec
    def graphflow_server_routes(self) -> Sequence[Callable[[object], None]]:
        """Return installers ``install(app) -> None`` that add routes to ``graphflow serve``.

        Each is called with the aiohttp application after graphflow's own routes and before
        the editor's static catch-all; the app-wide middlewares (origin and host checks,
        token, size limits) cover what it adds. Import aiohttp inside the installer, so
        loading the plugin stays cheap.
        """

    @hookspec
    def graphflow_workflow_importers(self) -> Sequence[object]:
        """Return :class:`graphflow.formats.WorkflowImporter` objects: other tools' workflow
        formats that ``graphflow run``, ``validate`` and ``convert`` read (tried in order)."""

    @hookspec
    def graphflow_workflow_exporters(self) -> Sequence[object]:
        """Return :class:`graphflow.formats.WorkflowExporter` objects: formats ``graphflow
        convert --to`` writes; one with a ``png_key`` also fills that chunk in saved PNGs."""


@dataclass
class PluginInfo:
    """A plugin that loaded: where it came from and what it registered."""

    name: str
    source: str
    nodes: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)


@dataclass
class PluginProblem:
    """A plugin that was skipped, and why (shown to the user, never raised)."""

    plugin: str
    source: str
    stage: str
    error: str
    detail: str = ""

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.source}) skipped: {self.stage} failed: {self.error}"


@dataclass
class LoadedPlugins:
    """The outcome of discovery: a filled registry, the plugins, and the skipped ones."""

    registry: Registry
    plugins: list[PluginInfo]
    problems: list[PluginProblem]
    manager: pluggy.PluginManager


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _import_from_folder(path: Path) -> ModuleType:
    """Import a package folder or a single .py file by path under its own name."""
    name = path.stem if path.is_file() else path.name
    existing = sys.modules.get(name)
    target = path if path.is_file() else path / "__init__.py"
    if existing is not None:
        if (
            getattr(existing, "__file__", None)
            and Path(existing.__file__).resolve() == target.resolve()
        ):
            return existing
        raise ImportError(
            f"a module named {name!r} is already imported from "
            f"{getattr(existing, '__file__', '?')}; rename the plugin folder"
        )
    if path.is_file():
        spec = importlib.util.spec_from_file_location(name, path)
    else:
        spec = importlib.util.spec_from_file_location(
            name, target, submodule_search_locations=[str(path)]
        )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _folder_candidates(folder: Path) -> list[Path]:
    found = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith((".", "_")):
            continue
        if (child.is_dir() and (child / "__init__.py").is_file()) or (
            child.is_file() and child.suffix == ".py"
        ):
            found.append(child)
    return found


def plugin_folders(extra: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """The plugin folders to scan: ``extra`` first, then the ``plugin_path`` setting's."""
    from .settings import current_settings

    return [Path(p) for p in extra] + current_settings().plugin_folders


def load_plugins(
    plugin_dirs: Iterable[str | os.PathLike] = (),
    *,
    use_entry_points: bool = True,
    modules: Iterable[tuple[str, object]] = (),
) -> LoadedPlugins:
    """Discover plugins and fill a fresh :class:`Registry`.

    ``plugin_dirs`` are scanned after the installed entry points; ``modules`` registers
    already-imported plugin objects as ``(name, module)`` pairs (for tests and embedding).
    """
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(GraphflowHooks)
    problems: list[PluginProblem] = []
    sources: dict[str, str] = {}

    def add(name: str, source: str, plugin: object) -> None:
        if manager.has_plugin(name):
            if manager.get_plugin(name) is plugin:
                return
            problems.append(
                PluginProblem(name, source, "import", f"another plugin is already named {name!r}")
            )
            return
        try:
            manager.register(plugin, name=name)
        except Exception as error:  # pluggy validation errors: bad hook signatures
            problems.append(PluginProblem(name, source, "import", _describe(error)))
            return
        sources[name] = source

    if use_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            source = f"entry point {ep.value}"
            try:
                plugin = ep.load()
            except Exception as error:
                problems.append(
                    PluginProblem(
                        ep.name, source, "import", _describe(error), traceback.format_exc()
                    )
                )
                continue
            add(ep.name, source, plugin)

    for folder in plugin_folders(plugin_dirs):
        if not folder.is_dir():
            problems.append(
                PluginProblem(str(folder), "plugin folder", "import", "folder does not exist")
            )
            continue
        for candidate in _folder_candidates(folder):
            source = f"folder {candidate}"
            try:
                plugin = _import_from_folder(candidate)
            except Exception as error:
                problems.append(
                    PluginProblem(
                        candidate.stem, source, "import", _describe(error), traceback.format_exc()
                    )
                )
                continue
            add(candidate.stem, source, plugin)

    for name, plugin in modules:
        add(name, "given module", plugin)

    registry = Registry()
    infos = {name: PluginInfo(name, source) for name, source in sources.items()}
    failed: set[str] = set()
    for impl in manager.hook.graphflow_port_types.get_hookimpls():
        try:
            for port_type in impl.function() or ():
                registry.types.register(port_type, owner=impl.plugin_name)
                infos[impl.plugin_name].types.append(port_type.name)
        except Exception as error:
            failed.add(impl.plugin_name)
            problems.append(
                PluginProblem(
                    impl.plugin_name,
                    sources[impl.plugin_name],
                    "register types",
                    _describe(error),
                    traceback.format_exc(),
                )
            )
    # get_hookimpls() lists implementations in registration (discovery) order.
    for impl in manager.hook.graphflow_nodes.get_hookimpls():
        if impl.plugin_name in failed:
            continue
        try:
            specs = list(impl.function() or ())
            registry.register_all(specs, plugin=impl.plugin_name)
        except Exception as error:
            failed.add(impl.plugin_name)
            problems.append(
                PluginProblem(
                    impl.plugin_name,
                    sources[impl.plugin_name],
                    "register nodes",
                    _describe(error),
                    traceback.format_exc(),
                )
            )
            continue
        infos[impl.plugin_name].nodes.extend(spec.id for spec in specs)

    _collect(manager, registry, failed, sources, problems)
    for name in failed:
        manager.unregister(name=name)
    plugins = [info for name, info in infos.items() if name not in failed]
    return LoadedPlugins(registry, plugins, problems, manager)


def _collect(manager, registry: Registry, failed: set[str], sources, problems) -> None:
    """Workflow importers, exporters and server route installers of the plugins whose nodes
    registered; a plugin whose hook fails loses only what that hook gives (reported)."""
    hooks = (
        (manager.hook.graphflow_server_routes, registry.add_route_installer, "server routes"),
        (
            manager.hook.graphflow_workflow_importers,
            registry.add_importer,
            "workflow importers",
        ),
        (
            manager.hook.graphflow_workflow_exporters,
            registry.add_exporter,
            "workflow exporters",
        ),
    )
    for hook, add, what in hooks:
        for impl in hook.get_hookimpls():
            if impl.plugin_name in failed:
                continue
            try:
                for item in impl.function() or ():
                    add(item, plugin=impl.plugin_name)
            except Exception as error:
                problems.append(
                    PluginProblem(
                        impl.plugin_name,
                        sources[impl.plugin_name],
                        f"register {what}",
                        _describe(error),
                        traceback.format_exc(),
                    )
                )
