"""The editor's unit tests (Vitest: the store, type compatibility, documents, PNG text),
and its API types against docs/openapi.json."""

from __future__ import annotations

from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"
pytestmark = pytest.mark.web


def test_vitest_unit_tests_pass(web_npm, web_run):
    result = web_run([web_npm, "exec", "--", "vitest", "run", "--reporter=dot"], timeout=300)
    assert "passed" in result.stdout


def test_api_types_are_generated_from_the_current_openapi(web_npm, web_run, tmp_path):
    generated = tmp_path / "schema.d.ts"
    command = [web_npm, "exec", "--", "openapi-typescript", "../docs/openapi.json"]
    web_run([*command, "--empty-objects-unknown", "-o", str(generated)], timeout=120)
    committed = WEB / "src" / "api" / "schema.d.ts"
    assert generated.read_text() == committed.read_text(), (
        "web/src/api/schema.d.ts is older than docs/openapi.json: run "
        "`npm --prefix web run gen:api && npm --prefix web run build`"
    )
