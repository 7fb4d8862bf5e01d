"""Routing without Ray: which idle worker takes a job."""

from __future__ import annotations

from graphflow.distributed.routing import SlotState, WorkerSlot, choose_worker


def slot(name: str, *, warm=(), jobs_run=0, job=None, state=SlotState.READY) -> WorkerSlot:
    """A worker slot with no actor behind it."""
    return WorkerSlot(
        name, handle=None, state=state, job=job, warm={k: k for k in warm}, jobs_run=jobs_run
    )


def test_an_idle_worker_holding_the_jobs_model_is_chosen():
    pool = [slot("a", warm=["x"]), slot("b", warm=["y"]), slot("c")]
    assert choose_worker(pool, {"y": "model y"}).name == "b"


def test_the_worker_holding_more_of_the_jobs_models_wins():
    pool = [slot("a", warm=["x"]), slot("b", warm=["x", "y"])]
    assert choose_worker(pool, ["x", "y"]).name == "b"


def test_a_busy_worker_is_passed_over_even_when_it_holds_the_model():
    pool = [slot("a", warm=["x"], job="running"), slot("b", warm=["y"])]
    assert choose_worker(pool, ["x"]).name == "b"


def test_without_affinity_the_worker_with_fewest_models_then_fewest_jobs_wins():
    pool = [slot("a", warm=["x"]), slot("b", jobs_run=3), slot("c", jobs_run=1)]
    assert choose_worker(pool, ["z"]).name == "c"


def test_starting_lost_and_excluded_workers_take_nothing():
    pool = [
        slot("a", state=SlotState.STARTING),
        slot("b", state=SlotState.LOST),
        slot("c", warm=["x"]),
    ]
    assert choose_worker(pool, ["x"], exclude=["c"]) is None
    assert choose_worker(pool, ["x"]).name == "c"
