"""Plugin discovery: entry points, plugin folders, broken plugins, duplicate node ids."""

from __future__ import annotations

import textwrap
import uuid

from graphflow import load_plugins

GOOD = """
from graphflow import Float, hookimpl, node

@node("{ns}.double")
def double(x: Float = 1.0) -> Float:
    \"\"\"Twice x.\"\"\"
    return 2 * x

@hookimpl
def graphflow_nodes():
    return [double]
"""


def write_plugin(folder, name, source, package=True):
    if package:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(textwrap.dedent(source))
    else:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.py").write_text(textwrap.dedent(source))


def unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_core_pack_is_found_through_its_entry_point():
    loaded = load_plugins()
    core = next(p for p in loaded.plugins if p.name == "core")
    assert core.source.startswith("entry point")
    assert {"core.int", "core.add", "core.switch", "core.show"} <= set(core.nodes)


def test_broken_plugin_is_skipped_and_good_one_loads(tmp_path):
    good, broken, bad_hook = unique("good"), unique("broken"), unique("badhook")
    write_plugin(tmp_path, good, GOOD.format(ns=good))
    write_plugin(tmp_path, broken, "import module_that_does_not_exist\n")
    write_plugin(
        tmp_path,
        bad_hook,
        """
        from graphflow import hookimpl

        @hookimpl
        def graphflow_nodes():
            raise RuntimeError("cannot reach my config")
        """,
        package=False,
    )
    loaded = load_plugins([tmp_path], use_entry_points=False)
    assert f"{good}.double" in loaded.registry
    problems = {p.plugin: p for p in loaded.problems}
    assert set(problems) == {broken, bad_hook}
    assert problems[broken].stage == "import"
    assert "module_that_does_not_exist" in problems[broken].error
    assert problems[bad_hook].stage == "register nodes"
    assert "cannot reach my config" in str(problems[bad_hook])
    assert [p.name for p in loaded.plugins] == [good]


def test_duplicate_node_id_is_refused_naming_both_plugins(tmp_path):
    first, second = unique("first"), unique("second")
    write_plugin(tmp_path, first, GOOD.format(ns="shared"))
    write_plugin(tmp_path, second, GOOD.format(ns="shared"))
    loaded = load_plugins([tmp_path], use_entry_points=False)
    (problem,) = loaded.problems
    assert problem.plugin == second
    assert first in problem.error and second in problem.error
    assert "shared.double" in problem.error
    assert loaded.registry.owner("shared.double") == first


def test_plugin_path_environment_variable_is_scanned(tmp_path, monkeypatch):
    name = unique("envplug")
    write_plugin(tmp_path, name, GOOD.format(ns=name))
    monkeypatch.setenv("GRAPHFLOW_PLUGIN_PATH", str(tmp_path))
    assert f"{name}.double" in load_plugins(use_entry_points=False).registry


def test_missing_plugin_folder_is_reported_not_raised(tmp_path):
    loaded = load_plugins([tmp_path / "nope"], use_entry_points=False)
    assert loaded.problems[0].error == "folder does not exist"


def test_plugin_returning_something_else_than_specs_is_skipped(tmp_path):
    name = unique("wrong")
    write_plugin(
        tmp_path,
        name,
        """
        from graphflow import hookimpl

        @hookimpl
        def graphflow_nodes():
            return ["not a node"]
        """,
    )
    loaded = load_plugins([tmp_path], use_entry_points=False)
    assert "not a NodeSpec" in loaded.problems[0].error


def test_plugin_with_bad_node_declaration_is_skipped_with_the_reason(tmp_path):
    name = unique("nodoc")
    write_plugin(
        tmp_path,
        name,
        """
        from graphflow import Float, hookimpl, node

        @node("nodoc.x")
        def x(a: Float) -> Float:
            return a

        @hookimpl
        def graphflow_nodes():
            return [x]
        """,
    )
    loaded = load_plugins([tmp_path], use_entry_points=False)
    assert "add a docstring" in loaded.problems[0].error


def test_plugin_port_types_can_be_linked(tmp_path):
    from graphflow import Executor
    from support import link, make_workflow

    name = unique("typed")
    write_plugin(
        tmp_path,
        name,
        f"""
        from graphflow import Any, hookimpl, node, port_type

        COLOR_TYPE, Color = port_type("COLOR_{name.upper()}", "An RGB colour")

        @node("{name}.red")
        def red() -> Color:
            \"\"\"Pure red.\"\"\"
            return (255, 0, 0)

        @node("{name}.show", output=True)
        def show(color: Color) -> None:
            \"\"\"Show a colour.\"\"\"
            return {{"rgb": list(color)}}

        @hookimpl
        def graphflow_port_types():
            return [COLOR_TYPE]

        @hookimpl
        def graphflow_nodes():
            return [red, show]
        """,
    )
    loaded = load_plugins([tmp_path], use_entry_points=False)
    assert loaded.problems == []
    output = f"color_{name}"
    workflow = make_workflow(
        {"r": (f"{name}.red", {}), "s": (f"{name}.show", {"color": link("r", output)})}
    )
    assert Executor(loaded.registry).run(workflow).ui["s"] == {"rgb": [255, 0, 0]}
