"""The local runner on its own: its worker thread survives anything and keeps order."""

from __future__ import annotations

import threading

from serverkit import chain, single

from graphflow import Executor
from graphflow.jobs import Job, JobStatus
from graphflow.server.runner_local import LocalRunner


class Listener:
    """Records what a runner reports; can be told to raise on the first ``job_done``."""

    def __init__(self, fail_first_done: bool = False):
        self.events: list[tuple[str, str]] = []
        self.outcomes: dict[str, object] = {}
        self.fail_first_done = fail_first_done
        self.done = threading.Event()
        self.expected = 0

    def job_event(self, job_id, event):
        self.events.append((job_id, event.type))

    def job_done(self, job_id, outcome):
        self.outcomes[job_id] = outcome
        if len(self.outcomes) >= self.expected:
            self.done.set()
        if self.fail_first_done:
            self.fail_first_done = False
            raise RuntimeError("a buggy listener")


def run_jobs(registry, listener, jobs):
    runner = LocalRunner(Executor(registry))
    runner.start(listener)
    listener.expected = len(jobs)
    for job in jobs:
        runner.submit(job)
    assert listener.done.wait(15)
    runner.stop()
    return runner


def test_local_runner_keeps_working_after_its_listener_raises(registry):
    listener = Listener(fail_first_done=True)
    jobs = [Job(id="a", workflow=chain(2)), Job(id="b", workflow=chain(3))]
    run_jobs(registry, listener, jobs)
    assert listener.outcomes["a"].status is JobStatus.DONE
    assert listener.outcomes["b"].status is JobStatus.DONE


def test_local_runner_reports_every_event_of_a_job_before_its_outcome(registry):
    listener = Listener()
    run_jobs(registry, listener, [Job(id="a", workflow=chain(2))])
    kinds = [kind for job, kind in listener.events if job == "a"]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert listener.outcomes["a"].executed == 3
    assert set(listener.outcomes["a"].nodes) == {"n0", "n1", "out"}


def test_interrupt_before_a_job_starts_cancels_it(registry, control):
    listener = Listener()
    runner = LocalRunner(Executor(registry))
    runner.start(listener)
    listener.expected = 2
    runner.submit(Job(id="blocker", workflow=single("srv.wait")))
    runner.submit(Job(id="queued", workflow=chain(2)))
    assert control.started.wait(5)
    assert runner.interrupt("queued")
    control.release.set()
    assert listener.done.wait(10)
    runner.stop()
    assert listener.outcomes["blocker"].status is JobStatus.DONE
    assert listener.outcomes["queued"].status is JobStatus.CANCELLED


def test_interrupting_a_job_the_runner_does_not_have_returns_false(registry):
    runner = LocalRunner(Executor(registry))
    runner.start(Listener())
    assert runner.interrupt("nobody") is False
    runner.stop()


def test_free_clears_the_cache_and_frees_the_model_manager(registry):
    listener = Listener()
    runner = run_jobs(registry, listener, [Job(id="a", workflow=chain(5))])
    assert len(runner.executor.cache) == 6
    done = runner.free()
    assert done["cache_entries_dropped"] == 6 and len(runner.executor.cache) == 0
    assert done["models_unloaded"] == 0  # the default ModelManager held nothing


def test_free_says_so_when_the_model_loader_cannot_unload(registry):
    class Loader:
        def load(self, kind, path, loader=None, **options):
            raise AssertionError("not used")

    runner = LocalRunner(Executor(registry, models=Loader()))
    done = runner.free(cache=False)
    assert done["models_unloaded"] is False and "free()" in done["models_note"]


def test_free_drops_resident_models(registry):
    from graphflow.runtime.models import ModelManager

    manager = ModelManager()
    manager._resident[("kind", "path")] = (object(), 0)
    runner = LocalRunner(Executor(registry, models=manager))
    assert runner.free(cache=False)["models_unloaded"] == 1
    assert manager.stats()["resident"] == 0


def test_info_reports_cache_and_model_statistics(registry):
    info = LocalRunner(Executor(registry)).info()["workers"][0]
    assert info["cache"]["entries"] == 0
    assert info["models"]["resident"] == 0
