"""The registry: node id → spec (and the port types), remembering which plugin gave what."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from .errors import DuplicateNodeError
from .node import NodeSpec
from .types import TypeRegistry

if TYPE_CHECKING:
    from .formats import WorkflowExporter, WorkflowImporter


class Registry:
    """Every node spec and port type known to this process."""

    def __init__(self, types: TypeRegistry | None = None):
        self.types = types if types is not None else TypeRegistry()
        self._nodes: dict[str, NodeSpec] = {}
        self._owners: dict[str, str] = {}
        self.route_installers: list[tuple[str, Callable[[object], None]]] = []
        """(plugin, ``install(app)``) pairs that add routes to ``graphflow serve``."""
        self.importers: list[WorkflowImporter] = []
        """Foreign workflow formats that can be read (see graphflow.formats), tried in order."""
        self.exporters: list[WorkflowExporter] = []
        """Formats workflows can be written in (``convert --to``, extra PNG chunks)."""

    def register(self, spec: NodeSpec, plugin: str = "?") -> None:
        """Add a node spec; a second spec with the same id is refused, naming both plugins."""
        if not isinstance(spec, NodeSpec):
            raise TypeError(f"plugin {plugin!r} registered {spec!r}, which is not a NodeSpec")
        if spec.id in self._nodes:
            raise DuplicateNodeError(
                f"node id {spec.id!r} from plugin {plugin!r} is already registered by plugin "
                f"{self._owners[spec.id]!r}"
            )
        self._nodes[spec.id] = spec
        self._owners[spec.id] = plugin

    def register_all(self, specs: Iterable[NodeSpec], plugin: str = "?") -> None:
        """Register several specs; nothing is added if any of them is refused."""
        specs = list(specs)
        seen: set[str] = set()
        for spec in specs:
            if not isinstance(spec, NodeSpec):
                raise TypeError(f"plugin {plugin!r} registered {spec!r}, which is not a NodeSpec")
            if spec.id in self._nodes or spec.id in seen:
                owner = self._owners.get(spec.id, plugin)
                raise DuplicateNodeError(
                    f"node id {spec.id!r} from plugin {plugin!r} is already registered by "
                    f"plugin {owner!r}"
                )
            seen.add(spec.id)
        for spec in specs:
            self.register(spec, plugin)

    def add_route_installer(self, install: Callable[[object], None], plugin: str = "?") -> None:
        """Keep a plugin's server-route installer (see the ``graphflow_server_routes`` hook)."""
        if not callable(install):
            raise TypeError(f"plugin {plugin!r} gave {install!r} as a route installer")
        self.route_installers.append((plugin, install))

    def add_importer(self, importer: WorkflowImporter, plugin: str = "?") -> None:
        """Add a workflow importer; a second one with the same name is refused."""
        from .formats import WorkflowImporter

        if not isinstance(importer, WorkflowImporter):
            raise TypeError(f"plugin {plugin!r} gave {importer!r} as a workflow importer")
        if any(known.name == importer.name for known in self.importers):
            raise DuplicateNodeError(f"workflow importer {importer.name!r} is registered twice")
        self.importers.append(importer)

    def add_exporter(self, exporter: WorkflowExporter, plugin: str = "?") -> None:
        """Add a workflow exporter; a second one with the same name is refused."""
        from .formats import GRAPHFLOW, WorkflowExporter

        if not isinstance(exporter, WorkflowExporter):
            raise TypeError(f"plugin {plugin!r} gave {exporter!r} as a workflow exporter")
        if exporter.name == GRAPHFLOW or any(e.name == exporter.name for e in self.exporters):
            raise DuplicateNodeError(f"workflow exporter {exporter.name!r} is registered twice")
        self.exporters.append(exporter)

    def get(self, node_id: str) -> NodeSpec | None:
        """The spec for ``node_id``, or None."""
        return self._nodes.get(node_id)

    def __getitem__(self, node_id: str) -> NodeSpec:
        return self._nodes[node_id]

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._nodes

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def owner(self, node_id: str) -> str:
        """The name of the plugin that registered ``node_id``."""
        return self._owners[node_id]

    def to_dict(self) -> dict:
        """All specs and types, JSON-ready (what ``/api/nodes`` and ``nodes --json`` show)."""
        nodes = {}
        for spec in self._nodes.values():
            data = spec.to_dict()
            data["plugin"] = self._owners[spec.id]
            nodes[spec.id] = data
        return {"types": [t.to_dict() for t in self.types], "nodes": nodes}
