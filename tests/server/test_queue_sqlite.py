"""The SQLite job queue on its own: order, durability, recovery, pruning."""

from __future__ import annotations

import sqlite3

import pytest

from graphflow.server.queue_base import Job, JobNotFound, JobOutcome, JobStatus
from graphflow.server.queue_sqlite import SQLiteJobQueue

WORKFLOW = {"format": "graphflow/1", "nodes": {}}


@pytest.fixture
def queue(tmp_path):
    """A queue on a fresh file."""
    q = SQLiteJobQueue(tmp_path / "jobs.db")
    yield q
    q.close()


def add(queue, job_id, priority=0):
    return queue.put(Job(id=job_id, workflow=WORKFLOW, priority=priority))


def test_pending_jobs_run_by_priority_then_first_come(queue):
    for job_id, priority in [("a", 0), ("b", 0), ("c", 5), ("d", -1), ("e", 5)]:
        add(queue, job_id, priority)
    assert [j.id for j in queue.pending()] == ["c", "e", "a", "b", "d"]
    assert [queue.claim_next().id for _ in range(5)] == ["c", "e", "a", "b", "d"]
    assert queue.claim_next() is None


def test_put_returns_the_position_among_pending_jobs(queue):
    assert add(queue, "a") == 0
    assert add(queue, "b") == 1
    assert add(queue, "c", priority=1) == 0
    assert queue.position("b") == 2


def test_an_accepted_job_is_committed_before_put_returns(queue, tmp_path):
    add(queue, "a")
    other = sqlite3.connect(tmp_path / "jobs.db")
    assert other.execute("SELECT id, status FROM jobs").fetchall() == [("a", "pending")]
    other.close()


def test_the_database_uses_write_ahead_logging(queue):
    assert queue._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_recover_fails_the_jobs_left_running(tmp_path):
    first = SQLiteJobQueue(tmp_path / "jobs.db")
    add(first, "a")
    add(first, "b")
    first.claim_next()
    first._db.close()  # like a crash: no clean close
    second = SQLiteJobQueue(tmp_path / "jobs.db")
    assert second.recover() == ["a"]
    job = second.get("a")
    assert job.status is JobStatus.FAILED
    assert job.error["code"] == "interrupted_by_restart"
    assert [j.id for j in second.pending()] == ["b"]
    second.close()


def test_requeue_puts_a_running_job_back_in_its_place(queue):
    add(queue, "a")
    add(queue, "b")
    assert queue.claim_next().id == "a"
    assert queue.requeue("a")
    assert [j.id for j in queue.pending()] == ["a", "b"]


def test_finish_records_status_result_and_error(queue):
    add(queue, "a")
    queue.claim_next()
    outcome = JobOutcome(
        JobStatus.FAILED, ui={"out": {"text": ["x"]}}, error={"code": "node_failed"}
    )
    job = queue.finish("a", outcome)
    assert job.status is JobStatus.FAILED
    assert job.result["ui"] == {"out": {"text": ["x"]}}
    assert job.error == {"code": "node_failed"}
    assert job.finished_at >= job.started_at >= job.created_at


def test_only_pending_jobs_can_be_cancelled(queue):
    add(queue, "a")
    queue.claim_next()
    with pytest.raises(ValueError, match="running"):
        queue.cancel("a")
    with pytest.raises(JobNotFound):
        queue.cancel("nope")


def test_only_finished_jobs_can_be_deleted(queue):
    add(queue, "a")
    with pytest.raises(ValueError, match="pending"):
        queue.delete("a")
    queue.cancel("a")
    queue.delete("a")
    with pytest.raises(JobNotFound):
        queue.get("a")


def test_history_keeps_only_the_newest_max_history_jobs(tmp_path):
    queue = SQLiteJobQueue(tmp_path / "jobs.db", max_history=3)
    for i in range(6):
        add(queue, f"j{i}")
        queue.claim_next()
        queue.finish(f"j{i}", JobOutcome(JobStatus.DONE))
    queue.prune()
    jobs, total = queue.history()
    assert total == 3
    assert [j.id for j in jobs] == ["j5", "j4", "j3"]
    queue.close()


def test_a_database_from_a_newer_graphflow_is_refused(tmp_path):
    path = tmp_path / "jobs.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(RuntimeError, match="newer graphflow"):
        SQLiteJobQueue(path)


def test_counts_has_every_status(queue):
    add(queue, "a")
    assert queue.counts() == {
        "pending": 1,
        "running": 0,
        "done": 0,
        "failed": 0,
        "cancelled": 0,
    }


def test_durable_mode_syncs_every_commit(tmp_path):
    queue = SQLiteJobQueue(tmp_path / "jobs.db", durable=True)
    assert queue._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    queue.close()


def test_claimed_jobs_come_without_their_workflow_which_is_read_on_demand(queue):
    queue.put(Job(id="a", workflow={"format": "graphflow/1", "nodes": {"x": {"type": "t"}}}))
    claimed = queue.claim_next()
    assert claimed.workflow == {}
    assert queue.workflow("a")["nodes"] == {"x": {"type": "t"}}
    with pytest.raises(JobNotFound):
        queue.workflow("nope")


def test_active_counts_are_pending_and_running(queue):
    add(queue, "a")
    add(queue, "b")
    queue.claim_next()
    assert queue.active_counts() == {"pending": 1, "running": 1}


SCHEMA_1 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0, client_id TEXT, workflow TEXT NOT NULL, outputs TEXT,
    node_count INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, result TEXT, error TEXT
);
CREATE INDEX jobs_run_order ON jobs (status, priority DESC, seq);
INSERT INTO jobs (id, status, workflow, created_at, finished_at, result)
    VALUES ('old', 'done', '{"format":"graphflow/1","nodes":{"x":{"type":"t"}}}', 1.0, 2.0,
            '{"executed":1}');
INSERT INTO jobs (id, status, workflow, created_at) VALUES ('waiting', 'pending', '{}', 3.0);
PRAGMA user_version=1;
"""


def test_a_schema_1_database_is_migrated_with_its_jobs_and_workflows(tmp_path):
    path = tmp_path / "jobs.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    db.close()
    queue = SQLiteJobQueue(path)
    old = queue.get("old")
    assert old.status is JobStatus.DONE and old.result == {"executed": 1}
    assert old.workflow == {"format": "graphflow/1", "nodes": {"x": {"type": "t"}}}
    assert queue.claim_next().id == "waiting"
    columns = [row[1] for row in queue._db.execute("PRAGMA table_info(jobs)")]
    assert "workflow" not in columns
    assert queue._db.execute("PRAGMA user_version").fetchone()[0] == 2
    queue.close()
    again = SQLiteJobQueue(path)  # opening a migrated file changes nothing
    assert again.workflow("old") == old.workflow
    again.close()


def test_status_changes_leave_the_workflow_row_alone(queue):
    """Workflows have their own table: claiming and finishing a job update its small row
    only (SQLite rewrites a whole row on any change, megabytes with the document in it)."""
    queue.put(Job(id="a", workflow=WORKFLOW), '{"format": "graphflow/1",  "nodes": {}}')
    before = queue._db.execute("SELECT job_seq, document FROM workflows").fetchall()
    queue.claim_next()
    queue.finish("a", JobOutcome(status=JobStatus.DONE))
    assert queue._db.execute("SELECT job_seq, document FROM workflows").fetchall() == before
    assert queue.workflow_text("a") == '{"format": "graphflow/1",  "nodes": {}}'  # as given


def test_forgetting_a_job_drops_its_workflow(queue):
    add(queue, "a")
    queue.claim_next()
    queue.finish("a", JobOutcome(status=JobStatus.DONE))
    queue.delete("a")
    assert queue._db.execute("SELECT COUNT(*) FROM workflows").fetchone()[0] == 0
    with pytest.raises(JobNotFound):
        queue.workflow_text("a")
