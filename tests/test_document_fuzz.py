"""Malformed workflow documents only ever give structured errors.

First the regressions for what the fuzzer (tests/docfuzz.py) found, through the CLI and the
API; then the fuzz runs: documents through load → validate → run (cheap gf_core documents
only; the rest are validated), PNG files carrying damaged workflows, and documents POSTed to
an in-process server (zero 5xx).

Measured on the 2-core dev machine (`pytest tests/test_document_fuzz.py -q --durations=4`):
15,000 documents in 10.0 s, 2,000 PNG files in 1.5 s, 3,000 server requests (3 in 4 POST
/api/prompt, 1 in 4 PUT /api/workflows) in 3.3 s; the whole file in 15.4 s.

A failure prints each failing seed; replay one with ``.venv/bin/python tests/docfuzz.py SEED``
(``--png`` for a PNG case).
"""

from __future__ import annotations

import json
import random
import traceback
from collections import Counter
from pathlib import Path

import docfuzz
import pngfuzz
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from serverkit import Api

import gf_core
from graphflow import load_plugins
from graphflow.cli import main
from graphflow.server import ServerConfig, create_app

DOCUMENTS = 15_000
PNG_FILES = 2_000
SERVER_REQUESTS = 3_000
HELLO = str(Path(__file__).resolve().parents[1] / "workflows" / "hello.json")


@pytest.fixture(scope="module")
def registry():
    """Every installed pack: diffusion and image documents are validated for real (and never
    run: the harness runs only documents made of gf_core nodes)."""
    return load_plugins().registry


@pytest.fixture(scope="module")
def core_registry():
    """Only the gf_core pack: whatever a fuzzed document makes the server run is cheap."""
    loaded = load_plugins(use_entry_points=False, modules=[("core", gf_core)])
    assert not loaded.problems
    return loaded.registry


@pytest_asyncio.fixture
async def core_api(core_registry, tmp_path) -> Api:
    """An in-process server over the core registry (as tests/server/conftest.py builds them)."""
    app = create_app(ServerConfig(data_dir=tmp_path / "data"), registry=core_registry)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield Api(client, app)
    await client.close()


def write(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "w.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return str(path)


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    _, err = capsys.readouterr()
    return code, err


# -- regressions: each was an unstructured exception before ------------------------------------

NOT_A_STRING = ["[]", '["graphflow/1"]', "{}", '{"v": 1}', "1", "null", "true"]


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("fmt", NOT_A_STRING)
def test_cli_reads_a_format_that_is_not_a_string_as_one_line_and_exit_2(
    capsys, tmp_path, command, fmt
):
    path = write(tmp_path, '{"format": ' + fmt + ', "nodes": {}}')
    code, err = (
        run_cli(capsys, command, path, "--quiet")
        if command == "run"
        else run_cli(capsys, command, path)
    )
    assert code == 2
    assert err.startswith(f'error: {path}: "format" must be a string') and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xff\xfe\xfd", "is not UTF-16-LE text"),
        (b'{"format": "graphflow/1", "nodes": {"a": {"type": "core.show\xff"}}}', "not UTF-8"),
        ("[" * 50_000 + "]" * 50_000, "the JSON is nested too deeply"),
        ('{"format": "graphflow/1", "nodes": {}, "editor": {"n": ' + "1" * 5000 + "}}", "limit"),
        ('{"format": "graphflow/0", "nodes": [{"type": "core.int"}]}', "graphflow/0 document"),
        ('{"format": "graphflow/1", "nodes": {"\\ud800": {"type": "core.int"}}}', "Unicode"),
    ],
    ids=["bom-garbage", "bad-utf8", "deep", "huge-int", "prototype-without-id", "surrogate"],
)
def test_cli_reads_a_malformed_document_as_an_error_and_exit_2(capsys, tmp_path, text, message):
    path = write(tmp_path, text)
    code, err = run_cli(capsys, "validate", path)
    assert code == 2
    assert err.startswith(f"error: {path}: ") and message in err and "Traceback" not in err


def test_cli_run_refuses_an_int_too_large_for_a_float_input_with_exit_1(capsys):
    code, err = run_cli(capsys, "run", HELLO, "--quiet", "--set", "pixels.b=" + "9" * 400)
    assert code == 1
    assert "out_of_range" in err and "too large for a FLOAT" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["9" * 5000, "[" * 3000], ids=["huge-int", "deep"])
def test_cli_set_value_json_cannot_hold_is_plain_text_and_exit_1(capsys, value):
    code, err = run_cli(capsys, "run", HELLO, "--quiet", "--set", f"width.value={value}")
    assert code == 1
    assert "invalid_literal" in err and "expects INT, got str" in err and "Traceback" not in err


@pytest.mark.asyncio
@pytest.mark.parametrize("fmt", NOT_A_STRING)
async def test_api_refuses_a_format_that_is_not_a_string_with_a_400(core_api, fmt):
    body = '{"workflow": {"format": ' + fmt + ', "nodes": {}}}'
    response = await core_api.client.post(
        "/api/prompt", data=body, headers={"Content-Type": "application/json"}
    )
    error = (await response.json())["error"]
    assert response.status == 400 and error["code"] == "validation_failed"
    assert error["errors"][0]["code"] == "invalid_document"
    assert '"format" must be a string' in error["errors"][0]["message"]


@pytest.mark.asyncio
async def test_api_refuses_an_int_too_large_for_a_float_input_with_a_400(core_api):
    workflow = json.loads(Path(HELLO).read_text())
    workflow["nodes"]["pixels"]["inputs"]["b"] = 2**1100
    response = await core_api.client.post("/api/prompt", json={"workflow": workflow})
    error = (await response.json())["error"]
    assert response.status == 400
    assert [(e["code"], e["node"], e["input"]) for e in error["errors"]] == [
        ("out_of_range", "pixels", "b")
    ]


@pytest.mark.asyncio
async def test_api_refuses_a_number_with_too_many_digits_with_a_400(core_api):
    body = '{"workflow": {"format": "graphflow/1", "nodes": {}, "editor": {"n": ' + "1" * 5000
    response = await core_api.client.post(
        "/api/prompt", data=body + "}}}", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"


# -- the fuzz runs ------------------------------------------------------------------------------


def _report(failures: list[tuple[docfuzz.Case, str]], total: int, flag: str = "") -> str:
    lines = [f"{len(failures)} of {total} cases broke a guarantee; replay one with"]
    lines.append(f"  .venv/bin/python tests/docfuzz.py{flag} SEED")
    for case, text in failures[:10]:
        lines.append(f"seed {case.seed} ({case.base}: {', '.join(case.kinds)}):\n{text}")
    return "\n".join(lines)


def _failure(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)[-3:])


def test_fuzzed_documents_give_only_structured_errors(registry, tmp_path):
    corpus, catalog = docfuzz.seed_corpus(), docfuzz.Catalog(registry)
    harness = docfuzz.Harness(registry, tmp_path)
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    failures = []
    for seed in range(DOCUMENTS):
        case = docfuzz.make_case(seed, corpus, catalog)
        kinds.update(case.kinds)
        try:
            outcomes[harness.exercise(case.payload)] += 1
        except Exception as error:  # anything but WorkflowFormatError / ValidationFailed
            failures.append((case, _failure(error)))
    assert not failures, _report(failures, DOCUMENTS)
    assert set(kinds) == set(docfuzz.KINDS), "every mutation kind was drawn"
    assert outcomes["format_error"] and outcomes["invalid"] and outcomes["valid"]
    assert outcomes["run:finished"] > DOCUMENTS // 10, outcomes  # many mutants really run


def test_fuzzed_png_files_give_only_structured_errors(registry, tmp_path):
    corpus, catalog = docfuzz.seed_corpus(), docfuzz.Catalog(registry)
    harness = docfuzz.Harness(registry, tmp_path)
    outcomes: Counter[str] = Counter()
    failures = []
    for seed in range(PNG_FILES):
        case = pngfuzz.make_png_case(seed, corpus, catalog)
        try:
            outcomes[harness.exercise_file(tmp_path / "case.png", case.payload)] += 1
        except Exception as error:
            failures.append((case, _failure(error)))
    assert not failures, _report(failures, PNG_FILES, " --png")
    assert outcomes["format_error"] and outcomes["run:finished"], outcomes


def _prompt_body(rng: random.Random, payload: bytes) -> bytes:
    """Mostly the fuzzed document as the "workflow" field; sometimes the whole body."""
    if rng.random() < 0.1:
        return payload
    return b'{"workflow": ' + payload + b"}"


@pytest.mark.asyncio
async def test_fuzzed_documents_never_get_a_5xx_from_the_server(core_api, core_registry):
    corpus, catalog = docfuzz.seed_corpus(), docfuzz.Catalog(core_registry)
    client = core_api.client
    headers = {"Content-Type": "application/json"}
    statuses: Counter[int] = Counter()
    failures, accepted = [], []
    for seed in range(SERVER_REQUESTS):
        case = docfuzz.make_case(seed, corpus, catalog)
        rng = random.Random(seed)
        if seed % 4 == 3:  # the editor's save goes through the same loader
            response = await client.put("/api/workflows/fuzz", data=case.payload, headers=headers)
        else:
            body = _prompt_body(rng, case.payload)
            response = await client.post("/api/prompt", data=body, headers=headers)
        statuses[response.status] += 1
        answer = await response.read()
        if response.status >= 500:
            failures.append((case, f"HTTP {response.status}: {answer[:300]!r}"))
        elif response.status >= 400:
            assert "error" in json.loads(answer), answer[:300]
        elif response.method == "POST":
            accepted.append(json.loads(answer)["job_id"])
    assert not failures, _report(failures, SERVER_REQUESTS)
    assert statuses[400] and accepted, statuses
    for job_id in accepted[-20:]:  # the accepted ones run to a structured end
        record = await core_api.wait_finished(job_id)
        assert record["status"] in ("done", "failed"), record
