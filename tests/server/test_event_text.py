"""The directly written event texts are exactly what the generic encoder writes."""

import pytest

from graphflow.events import NodeCached, NodeFinished, NodeStarted, Progress, RunStarted
from graphflow.server.event_text import event_text
from graphflow.server.events_ws import encode_message, event_message, job_event_texts

JOB = "0123456789abcdef0123456789abcdef"

EVENTS = [
    NodeStarted("run-1", "n0", "core.add"),
    NodeStarted("run-1", 'odd "node" ✓\n', "pack.ünïcode"),
    NodeFinished("run-1", "n0", 0.000123, None, None),
    NodeFinished("run-1", "n1", 1e-07, 123456789, None),
    NodeFinished("run-1", "12:3", 2.5, 0, None),
    NodeCached("run-1", "n2"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{type(e).__name__}")
def test_a_direct_text_equals_the_generic_encoding(event):
    text = event_text(event, encode_message(JOB))
    assert text == encode_message(event_message(event, JOB))


@pytest.mark.parametrize(
    "event",
    [
        NodeFinished("run-1", "n0", 0.1, None, {"text": ["1.0"]}),  # ui: generic encoder
        NodeFinished("run-1", "n0", float("nan"), None, None),
        RunStarted("run-1", ("a", "b")),
        Progress("run-1", "n0", 1, 2),
    ],
)
def test_other_events_fall_back_to_the_generic_encoder(event):
    assert event_text(event, encode_message(JOB)) is None
    (text,) = job_event_texts(JOB, [event])
    assert text == encode_message(event_message(event, JOB))


def test_a_batch_spanning_two_runs_writes_each_events_own_run_id():
    events = [
        NodeStarted("run-1", "n0", "core.add"),
        NodeFinished("run-2", "n0", 0.5, None, None),
        Progress("run-2", "n0", 1, 2),
        NodeCached("run-1", "n1"),
    ]
    assert job_event_texts(JOB, events) == [
        encode_message(event_message(event, JOB)) for event in events
    ]
