"""Project promises: CI runs the README's test command; every shipped node is documented."""

from __future__ import annotations

import re
from pathlib import Path

from graphflow import load_plugins

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(python3 -m venv[^\n]*)\n```", text)


def test_readme_has_the_two_fresh_machine_commands():
    setup_and_run, setup_and_test = readme_commands()
    assert "graphflow run workflows/" in setup_and_run
    assert "pytest" in setup_and_test


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_every_installed_node_has_help_text_and_a_category():
    registry = load_plugins().registry
    for spec in registry:
        assert spec.description.strip(), spec.id
        assert spec.category, spec.id
