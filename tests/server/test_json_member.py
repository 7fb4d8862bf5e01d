"""parse_keeping_member: the body json.loads would give, and the posted text of one member."""

from __future__ import annotations

import json

import pytest

from graphflow.server.json_member import parse_keeping_member
from graphflow.server.routes_common import ApiError, parse_json

BODIES = [
    '{"workflow": {"format": "graphflow/1", "nodes": {}}, "client_id": "b"}',
    '  {\n  "client_id" : "b" ,\n  "workflow" :\n {"a": [1, 2.50, -3e2, true, null]}\t}\n',
    '{"workflow": {"s": "caf\\u00e9 \\"quoted\\" \\\\ snow\\u2603 ☃"}}',
    '{"workflow": 1, "workflow": {"last": "wins"}}',
    '{"other": {"workflow": "nested, not top level"}}',
    "{}",
    '{"workflow": []}',
]


@pytest.mark.parametrize("text", BODIES)
def test_the_body_is_what_json_loads_gives_and_the_text_is_the_members_own(text):
    body, member = parse_keeping_member(text.encode(), "workflow", parse_json)
    assert body == json.loads(text)
    if "workflow" in body:
        assert json.loads(member) == body["workflow"]
        assert member in text  # the posted characters themselves, spacing and escapes too
    else:
        assert member is None


def test_a_duplicate_member_keeps_the_last_text():
    _, member = parse_keeping_member(
        b'{"workflow": 1, "workflow": {"b": 2}}', "workflow", parse_json
    )
    assert member == '{"b": 2}'


@pytest.mark.parametrize(
    "raw",
    [
        b'{"workflow": {"x": NaN}}',  # stored JSON spells it otherwise: the caller encodes
        '\ufeff{"workflow": {}}'.encode(),  # a BOM: json.loads's own decoding
        '{"workflow": {}}'.encode("utf-16"),
        b'["workflow"]',
    ],
)
def test_unusual_bodies_go_through_the_ordinary_parse(raw):
    body, member = parse_keeping_member(raw, "workflow", parse_json)
    assert member is None
    assert body == json.loads(raw)  # (json.loads reads NaN as one shared float object)


@pytest.mark.parametrize(
    "raw",
    [b'{"workflow": {}', b'{"workflow": {}} trailing', b"{'workflow': 1}", b'{"a" 1}', b"\xff"],
)
def test_malformed_bodies_get_the_ordinary_parses_error(raw):
    with pytest.raises(ApiError) as fast:
        parse_keeping_member(raw, "workflow", parse_json)
    with pytest.raises(ApiError) as plain:
        parse_json(raw)
    assert fast.value.message == plain.value.message
