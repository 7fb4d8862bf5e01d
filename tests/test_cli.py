"""The graphflow command: every expected problem is one clear line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from graphflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
HELLO = str(ROOT / "workflows" / "hello.json")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_summary_and_output_values(capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", HELLO, "--output", str(tmp_path), "--quiet")
    assert code == 0, err
    assert "done: 6 executed, 0 cached" in out
    assert "show text: image size: larger than 512×512" in out


def test_set_overrides_an_input(capsys):
    code, out, _ = run_cli(
        capsys, "run", HELLO, "--quiet", "--set", "width.value=256", "--set", "height.value=100"
    )
    assert code == 0
    assert "at most 512×512" in out


def test_run_json_output(capsys):
    code, out, _ = run_cli(capsys, "run", HELLO, "--json", "--outputs", "show")
    data = json.loads(out)
    assert code == 0 and data["status"] == "finished"
    assert data["ui"]["show"] == {"text": ["image size: larger than 512×512"]}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "missing.json"], "error: workflow file not found: missing.json"),
        (["run", HELLO, "--set", "ghost.value=1"], "no node 'ghost' in this workflow"),
        (["run", HELLO, "--set", "novalue"], "--set expects NODE.INPUT=VALUE"),
    ],
)
def test_bad_command_input_is_one_line_and_exit_2(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_invalid_json_file_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "graphflow/1", "nodes": {')
    code, _, err = run_cli(capsys, "run", str(bad))
    assert code == 2
    assert err.strip() == (
        f"error: {bad}: invalid JSON at line 1, column 37: "
        "Expecting property name enclosed in double quotes"
    )


def test_validate_lists_every_error_and_exits_1(capsys, tmp_path):
    path = tmp_path / "w.json"
    path.write_text(
        json.dumps(
            {
                "format": "graphflow/1",
                "nodes": {
                    "a": {"type": "core.add", "inputs": {"a": "x"}},
                    "b": {"type": "core.nope"},
                    "c": {"type": "core.show", "inputs": {"value": {"link": ["zz", "int"]}}},
                },
            }
        )
    )
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0] == f"{path}: 3 problems"
    assert "invalid_literal: [node 'a', input 'a']" in err
    assert "unknown_node_type: [node 'b']" in err
    assert "link_missing_node: [node 'c', input 'value']" in err


def test_validate_unknown_input_in_set_is_reported(capsys):
    code, _, err = run_cli(capsys, "validate", HELLO, "--set", "width.size=3")
    assert code == 1
    assert "unknown_input: [node 'width', input 'size']" in err


def test_validate_ok(capsys):
    code, out, _ = run_cli(capsys, "validate", HELLO)
    assert code == 0 and "valid (6 nodes; outputs: show)" in out


def test_failed_run_names_the_node(capsys, tmp_path):
    path = tmp_path / "div.json"
    path.write_text(
        json.dumps(
            {
                "format": "graphflow/1",
                "nodes": {
                    "d": {"type": "core.divide", "inputs": {"a": 1, "b": 0}},
                    "s": {"type": "core.show", "inputs": {"value": {"link": ["d", "float"]}}},
                },
            }
        )
    )
    code, _, err = run_cli(capsys, "run", str(path), "--quiet")
    assert code == 1
    assert err.strip() == "error: node 'd' failed: ZeroDivisionError: cannot divide 1.0 by zero"


def test_nodes_lists_and_json(capsys):
    code, out, _ = run_cli(capsys, "nodes")
    assert code == 0 and "core.switch" in out
    code, out, _ = run_cli(capsys, "nodes", "--json")
    data = json.loads(out)
    assert data["nodes"]["core.add"]["plugin"] == "core"
    assert data["nodes"]["core.switch"]["inputs"][1]["lazy"] is True
    assert any(t["name"] == "IMAGE" for t in data["types"])


def test_plugins_lists_loaded_and_skipped(capsys, tmp_path):
    (tmp_path / "broken_cli_plugin.py").write_text("raise ImportError('nope')\n")
    code, out, _ = run_cli(capsys, "plugins", "--plugin-dir", str(tmp_path))
    assert code == 0
    assert "core" in out
    assert "SKIPPED broken_cli_plugin" in out and "ImportError: nope" in out


def test_console_script_is_installed_and_runs():
    exe = Path(sys.executable).with_name("graphflow")
    done = subprocess.run([str(exe), "run", HELLO, "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "done: 6 executed" in done.stdout


def test_ctrl_c_interrupts_the_run_cleanly(tmp_path):
    """SIGINT during a long node stops the run at the next step with exit 1, no traceback."""
    import signal
    import time

    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "slow_cli_pack.py").write_text(
        "import time\n"
        "from graphflow import Int, NodeContext, hookimpl, node\n"
        "@node('slow.wait', output=True)\n"
        "def wait(steps: Int = 600, ctx: NodeContext = None) -> None:\n"
        "    '''Sleep in steps.'''\n"
        "    print('started', flush=True)\n"
        "    for i in range(steps):\n"
        "        time.sleep(0.05)\n"
        "        ctx.progress(i + 1, steps)\n"
        "@hookimpl\n"
        "def graphflow_nodes():\n"
        "    return [wait]\n"
    )
    workflow = tmp_path / "slow.json"
    workflow.write_text('{"format": "graphflow/1", "nodes": {"w": {"type": "slow.wait"}}}')
    exe = Path(sys.executable).with_name("graphflow")
    proc = subprocess.Popen(
        [str(exe), "run", str(workflow), "--plugin-dir", str(plugin), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "interrupted" in err and "Traceback" not in err


def test_plugins_can_add_subcommands_and_a_broken_one_is_only_a_warning(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "greeter_cli_pack.py").write_text(
        "from graphflow import hookimpl\n"
        "@hookimpl\n"
        "def graphflow_cli_commands(subparsers):\n"
        "    hello = subparsers.add_parser('hello', help='say hello')\n"
        "    hello.add_argument('name')\n"
        "    hello.set_defaults(handler=lambda args: print(f'hello {args.name}') or 0)\n"
    )
    (tmp_path / "broken_cli_pack.py").write_text(
        "from graphflow import hookimpl\n"
        "@hookimpl\n"
        "def graphflow_cli_commands(subparsers):\n"
        "    raise RuntimeError('no commands today')\n"
    )
    monkeypatch.setenv("GRAPHFLOW_PLUGIN_PATH", str(tmp_path))
    code, out, err = run_cli(capsys, "hello", "world")
    assert code == 0 and out.strip() == "hello world"
    assert "plugin 'broken_cli_pack' could not add its commands: no commands today" in err
