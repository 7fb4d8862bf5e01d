"""No import circle in graphflow/server: the routes and the state never import the app."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

SERVER = Path(__file__).parents[2] / "graphflow" / "server"
PACKAGE = "graphflow.server"


def _imported_server_modules(path: Path) -> set[str]:
    """The graphflow.server submodules a file imports (anywhere in it, lazily or not)."""
    found: set[str] = set()
    submodules = {p.stem for p in SERVER.glob("*.py")} - {"__init__"}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = f"{PACKAGE}.{node.module}" if node.module else PACKAGE
            elif node.level == 0 and node.module:
                base = node.module
            else:
                continue  # ..something: outside the server package
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(PACKAGE + ".") and name.split(".")[2] in submodules:
                found.add(name.split(".")[2])
    return found


def test_the_server_modules_import_each_other_without_a_circle():
    graph = nx.DiGraph()
    for path in SERVER.glob("*.py"):
        if path.stem == "__init__":  # the package's lazy names point everywhere, by design
            continue
        graph.add_node(path.stem)
        for target in _imported_server_modules(path) - {path.stem}:
            graph.add_edge(path.stem, target)
    assert "app" in graph and graph.in_degree("app") == 0, list(graph.predecessors("app"))
    assert nx.is_directed_acyclic_graph(graph), nx.find_cycle(graph)


@pytest.mark.parametrize("module", ["routes_prompt", "routes_files", "routes_system", "state"])
def test_a_routes_module_imports_first_in_a_fresh_process_without_the_app(module):
    script = (
        "import importlib, sys\n"
        f"importlib.import_module('graphflow.server.{module}')\n"
        "print('graphflow.server.app' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
