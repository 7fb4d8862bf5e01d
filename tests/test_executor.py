"""Execution: pulling from outputs, lazy inputs, failures, interrupts, events."""

from __future__ import annotations

import threading

from graphflow import EventLog, Executor, load_plugins
from graphflow.cancel import CancelToken
from graphflow.errors import RunStatus
from graphflow.events import (
    NodeFinished,
    NodeStarted,
    Progress,
    RunFailed,
    RunFinished,
    RunInterrupted,
    RunStarted,
)
from support import link, make_workflow


def chain_with_two_outputs():
    return make_workflow(
        {
            "a": ("t.value", {"value": 1}),
            "b": ("t.add", {"a": link("a", "float"), "b": 2}),
            "out_b": ("t.out", {"value": link("b", "float")}),
            "c": ("t.value", {"value": 10}),
            "out_c": ("t.out", {"value": link("c", "float")}),
        }
    )


def test_run_returns_values_of_all_output_nodes(pack):
    result = pack.executor().run(chain_with_two_outputs())
    assert result.ok
    assert result.ui == {"out_b": {"value": [3.0]}, "out_c": {"value": [10]}}
    assert sorted(result.executed) == ["a", "b", "c", "out_b", "out_c"]


def test_partial_execution_runs_only_ancestors_of_chosen_output(pack):
    result = pack.executor().run(chain_with_two_outputs(), outputs=["out_c"])
    assert result.ok
    assert sorted(result.executed) == ["c", "out_c"]
    assert pack.calls["t.add"] == 0


def test_any_node_can_be_requested_and_its_outputs_returned(pack):
    result = pack.executor().run(chain_with_two_outputs(), outputs=["b"])
    assert result.outputs == {"b": {"float": 3.0}}


def test_lazy_switch_never_executes_the_unused_branch(pack):
    registry = load_plugins().registry
    registry.register_all(pack.specs, plugin="tests")
    workflow = make_workflow(
        {
            "cond": ("core.boolean", {"value": False}),
            "yes": ("t.value", {"value": 1.0}),
            "no": ("t.add", {"a": 2.0}),
            "pick": (
                "core.switch",
                {
                    "condition": link("cond", "boolean"),
                    "on_true": link("yes", "float"),
                    "on_false": link("no", "float"),
                },
            ),
            "show": ("core.show", {"value": link("pick", "any")}),
        }
    )
    result = Executor(registry).run(workflow)
    assert result.ok
    assert pack.calls["t.value"] == 0
    assert pack.calls["t.add"] == 1
    assert "yes" not in result.executed
    assert result.ui["show"] == {"text": ["2.0"]}


def test_multiple_outputs_are_linked_by_name(pack):
    workflow = make_workflow(
        {
            "p": ("t.pair", {"value": 5}),
            "sum": ("t.add", {"a": link("p", "low"), "b": link("p", "high")}),
            "out": ("t.out", {"value": link("sum", "float")}),
        }
    )
    assert pack.executor().run(workflow).ui["out"] == {"value": [10.0]}


def test_failing_node_fails_run_with_node_id_and_message(pack):
    workflow = make_workflow(
        {
            "a": ("t.value", {"value": 4}),
            "bad": ("t.fail", {"value": link("a", "float")}),
            "out": ("t.out", {"value": link("bad", "float")}),
        }
    )
    log = EventLog()
    result = pack.executor(observers=[log]).run(workflow)
    assert result.status == "failed"
    assert result.error.node == "bad"
    assert result.error.exception_type == "ValueError"
    assert result.error.message == "boom at 4.0"
    assert "Traceback" in result.error.traceback
    (failed,) = log.of_type(RunFailed)
    assert (failed.node, failed.message) == ("bad", "boom at 4.0")


def test_failed_node_leaves_no_cache_entry_and_next_run_is_unaffected(pack):
    executor = pack.executor()
    bad = make_workflow(
        {
            "a": ("t.value", {"value": 4}),
            "bad": ("t.fail", {"value": link("a", "float")}),
            "out": ("t.out", {"value": link("bad", "float")}),
        }
    )
    assert executor.run(bad).status == "failed"
    assert len(executor.cache) == 1  # only "a", which succeeded
    good = make_workflow(
        {"a": ("t.value", {"value": 4}), "out": ("t.out", {"value": link("a", "float")})}
    )
    result = executor.run(good)
    assert result.ok and result.cached == ["a"] and result.executed == ["out"]
    assert executor.run(bad).status == "failed"
    assert pack.calls["t.fail"] == 2  # nothing of the failed node was reused


def _long_workflow(steps=50):
    return make_workflow(
        {
            "a": ("t.value", {"value": 1}),
            "long": ("t.steps", {"value": link("a", "float"), "steps": steps}),
            "out": ("t.out", {"value": link("long", "float")}),
        }
    )


def test_interrupt_during_progress_loop_stops_run_and_next_run_succeeds(pack):
    executor = pack.executor()
    seen = []

    def interrupt_at_step_3(event):
        if isinstance(event, Progress):
            seen.append(event.value)
            if event.value == 3:
                executor.interrupt()

    log = EventLog()
    result = executor.run(_long_workflow(), observers=[interrupt_at_step_3, log])
    assert result.status == "interrupted"
    assert seen == [1, 2, 3]
    assert [e.node for e in log.of_type(RunInterrupted)] == ["long"]
    assert "long" not in result.executed
    again = executor.run(_long_workflow())
    assert again.ok
    assert again.cached == [] or "long" in again.executed
    assert again.ui["out"] == {"value": [1.0]}


def test_interrupt_from_another_thread_stops_a_running_node(pack):
    executor = pack.executor()
    reached = threading.Event()

    def block_after_first_step(event):
        if isinstance(event, Progress) and event.value == 1:
            pack.hold.set()  # the node now waits for resume after this step
            reached.set()

    outcome = {}
    worker = threading.Thread(
        target=lambda: outcome.setdefault(
            "r", executor.run(_long_workflow(1000), observers=[block_after_first_step])
        )
    )
    worker.start()
    assert reached.wait(10)
    executor.interrupt()
    pack.resume.set()
    worker.join(10)
    assert outcome["r"].status == "interrupted"
    assert executor.run(_long_workflow(3)).ok


def test_interrupt_between_nodes_stops_before_next_node(pack):
    executor = pack.executor()

    def stop_after_a(event):
        if isinstance(event, NodeFinished) and event.node == "a":
            executor.interrupt()

    result = executor.run(_long_workflow(), observers=[stop_after_a])
    assert result.status == "interrupted"
    assert result.executed == ["a"]
    assert pack.calls["t.steps"] == 0


def test_a_token_cancelled_before_the_run_ends_it_interrupted_without_running_a_node(pack):
    cancel = CancelToken()
    cancel.cancel()
    log = EventLog()
    result = pack.executor().run(_long_workflow(), observers=[log], cancel=cancel)
    assert result.status is RunStatus.INTERRUPTED
    assert result.executed == [] and result.cached == []
    assert sum(pack.calls.values()) == 0
    assert not log.of_type(NodeStarted)
    assert [type(e) for e in log.events] == [RunStarted, RunInterrupted]


def test_cancelling_a_token_from_another_thread_stops_its_run_mid_node(pack):
    cancel = CancelToken()
    stepping = threading.Event()

    def note_progress(event):
        if isinstance(event, Progress) and event.value == 2:
            stepping.set()

    canceller = threading.Thread(target=lambda: stepping.wait(10) and cancel.cancel())
    canceller.start()
    result = pack.executor().run(
        _long_workflow(10_000_000), observers=[note_progress], cancel=cancel
    )
    canceller.join(10)
    assert result.status is RunStatus.INTERRUPTED
    assert "long" not in result.executed and pack.calls["t.steps"] == 1


def test_a_cancelled_token_does_not_reach_the_next_run_on_the_same_executor(pack):
    executor = pack.executor()
    first = CancelToken()

    def cancel_first_at_step_2(event):
        if isinstance(event, Progress) and event.value == 2:
            first.cancel()  # late and repeated cancels of the first run's token

    assert (
        executor.run(_long_workflow(), observers=[cancel_first_at_step_2], cancel=first).status
        == "interrupted"
    )
    second = executor.run(_long_workflow(), observers=[cancel_first_at_step_2])
    assert second.ok and second.ui["out"] == {"value": [1.0]}


def test_executor_interrupt_cancels_the_token_of_the_run_in_progress(pack):
    executor = pack.executor()
    cancel = CancelToken()

    def interrupt_at_step_3(event):
        if isinstance(event, Progress) and event.value == 3:
            assert executor.interrupt_requested is False
            executor.interrupt()
            assert executor.interrupt_requested is True

    result = executor.run(_long_workflow(), observers=[interrupt_at_step_3], cancel=cancel)
    assert result.status == RunStatus.INTERRUPTED and cancel.cancelled
    assert executor.interrupt_requested is False  # no run in progress any more


def test_executor_interrupt_with_no_run_in_progress_leaves_the_next_run_alone(pack):
    executor = pack.executor()
    executor.interrupt()
    assert executor.run(_long_workflow(3)).ok


def test_run_status_is_an_enum_that_equals_its_word(pack):
    result = pack.executor().run(_long_workflow(2))
    assert result.status is RunStatus.FINISHED and result.status == "finished"
    assert f"{result.status}" == "finished"


def test_events_report_timing_and_finish_counts(pack):
    log = EventLog()
    executor = pack.executor(observers=[log])
    executor.run(chain_with_two_outputs())
    finished = log.of_type(NodeFinished)
    assert {e.node for e in finished} == {"a", "b", "c", "out_b", "out_c"}
    assert all(e.seconds >= 0 for e in finished)
    (done,) = log.of_type(RunFinished)
    assert (done.executed, done.cached) == (5, 0)
    assert log.events[0].type == "run_started"
    assert log.events[-1].type == "run_finished"
    assert all("type" in e.to_dict() and "data" in e.to_dict() for e in log.events)


def test_observer_that_raises_does_not_break_the_run(pack):
    def broken(event):
        raise RuntimeError("observer bug")

    assert pack.executor(observers=[broken]).run(chain_with_two_outputs()).ok


def test_node_context_reports_device_and_folders(pack, tmp_path):
    seen = {}
    from graphflow import NodeContext, node

    @node("t.ctx", output=True)
    def ctx_node(ctx: NodeContext) -> None:
        """Look at the context."""
        seen["device"] = ctx.device
        seen["temp"] = ctx.temp_dir
        seen["out"] = ctx.output_dir
        seen["node"] = ctx.node_id

    pack.registry.register(ctx_node)
    executor = pack.executor(device="cpu", output_dir=tmp_path / "o", temp_dir=tmp_path / "t")
    assert executor.run(make_workflow({"c": ("t.ctx", {})})).ok
    assert seen == {"device": "cpu", "temp": tmp_path / "t", "out": tmp_path / "o", "node": "c"}
    assert (tmp_path / "o").is_dir()


def test_a_cancel_callback_runs_once_when_the_token_is_cancelled():
    cancel, calls = CancelToken(), []
    cancel.on_cancel(lambda: calls.append("first"))
    assert calls == []
    cancel.cancel()
    cancel.cancel()
    assert calls == ["first"]


def test_a_cancel_callback_on_a_cancelled_token_runs_at_once_and_a_failing_one_is_skipped():
    cancel, calls = CancelToken(), []
    cancel.cancel()
    cancel.on_cancel(lambda: 1 / 0)
    cancel.on_cancel(lambda: calls.append("late"))
    assert calls == ["late"] and cancel.cancelled
