"""The package's layering rules, checked on the source (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "graphflow"
PACKS = ROOT / "plugins"


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "web_dist" not in p.parts)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for item in ast.walk(tree):
        if isinstance(item, ast.Import):
            found += [(item.lineno, alias.name) for alias in item.names]
        elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
            found.append((item.lineno, item.module))
    return found


def _environ_writes(path: Path) -> list[int]:
    """Lines that assign to, delete from or update ``os.environ`` (or call putenv)."""

    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    lines = []
    for item in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[ast.AST] = []
        if isinstance(item, (ast.Assign, ast.AugAssign)):
            targets = item.targets if isinstance(item, ast.Assign) else [item.target]
        elif isinstance(item, ast.Delete):
            targets = item.targets
        if any(isinstance(t, ast.Subscript) and is_environ(t.value) for t in targets):
            lines.append(item.lineno)
        if isinstance(item, ast.Call) and isinstance(item.func, ast.Attribute):
            owner, name = item.func.value, item.func.attr
            mutating = {"update", "setdefault", "pop", "clear", "popitem"}
            if (is_environ(owner) and name in mutating) or name in {"putenv", "unsetenv"}:
                lines.append(item.lineno)
    return sorted(lines)


def test_nothing_in_the_package_or_the_packs_writes_the_environment():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _sources(ENGINE) + _sources(PACKS)
        for line in _environ_writes(path)
    ]
    assert offenders == []


def test_the_environment_write_check_catches_each_kind_of_write(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "os.environ['A'] = '1'\n"
        "os.environ.update(B='2')\n"
        "os.environ.setdefault('C', '3')\n"
        "del os.environ['A']\n"
        "os.putenv('D', '4')\n"
        "x = os.environ.get('E')\n"
    )
    assert _environ_writes(sample) == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("library", ["diffusers", "transformers"])
def test_engine_imports_no_diffusion_library_outside_kernels(library):
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _sources(ENGINE)
        if "kernels" not in path.relative_to(ENGINE).parts
        for line, module in _imported_modules(path)
        if module == library or module.startswith(library + ".")
    ]
    assert offenders == []


def test_engine_types_are_generic_and_diffusion_types_come_from_the_pack():
    from graphflow.plugins import load_plugins
    from graphflow.types import BUILTIN_TYPES

    assert {t.name for t in BUILTIN_TYPES} == {
        "INT",
        "FLOAT",
        "STRING",
        "BOOLEAN",
        "IMAGE",
        "MASK",
        "ANY",
    }
    loaded = load_plugins()
    owners = {info.name: set(info.types) for info in loaded.plugins}
    assert {"LATENT", "CONDITIONING", "MODEL", "VAE", "SCHEDULER"} <= owners["diffusion"]
    assert "UPSCALE_MODEL" in owners["image"]


def test_moved_type_references_still_work_with_a_deprecation_warning():
    import graphflow
    import graphflow.types
    from gf_diffusion.types import Model

    with pytest.warns(DeprecationWarning, match="gf_diffusion.types"):
        assert graphflow.Model == Model
    with pytest.warns(DeprecationWarning, match="gf_image.types"):
        assert graphflow.types.UpscaleModel.type_name == "UPSCALE_MODEL"
