"""The job queue and history in one SQLite file (WAL mode).

Durability: every change is one committed transaction. In WAL mode with
``synchronous=NORMAL`` a commit is in the write-ahead log (in the OS page cache) before the
call returns, so a crash or ``kill -9`` of the server never loses an accepted job; only a
power cut or kernel crash could lose the last transactions (``durable=True`` switches to
``synchronous=FULL``, an fsync per commit, for that case too).

After a restart, jobs left ``running`` are marked ``failed`` with the error code
``interrupted_by_restart`` rather than re-run: a job that took the process down (out of
memory, a segfault in a native library) would otherwise take it down again on every start.
Pending jobs simply run.

Workflows live in their own table: SQLite rewrites a whole row when any column changes, so
with the document in ``jobs`` every status change (claim, finish) rewrote it — ~20 ms each
for a 10,000-node workflow. Schema 1 files (one table) are migrated on open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..errors import JobErrorCode
from ..gcpause import gc_paused
from .queue_base import (
    FINISHED_STATUSES,
    RESTART_ERROR_CODE,
    Job,
    JobNotFound,
    JobOutcome,
    JobQueue,
    JobStatus,
    to_json,
)

log = logging.getLogger("graphflow.server")

SCHEMA_VERSION = 2

_WORKFLOWS_TABLE = """
CREATE TABLE IF NOT EXISTS workflows (
    job_seq INTEGER PRIMARY KEY REFERENCES jobs (seq) ON DELETE CASCADE,
    document TEXT NOT NULL
);
"""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    client_id TEXT,
    outputs TEXT,
    node_count INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_run_order ON jobs (status, priority DESC, seq);
"""
    + _WORKFLOWS_TABLE
)

_SUMMARY_COLUMNS = (
    "seq, id, status, priority, client_id, outputs, node_count, "
    "created_at, started_at, finished_at, result, error"
)
_WORKFLOW_OF_JOB = (
    "SELECT document FROM workflows WHERE job_seq = (SELECT seq FROM jobs WHERE id = ?)"
)
_PENDING = JobStatus.PENDING.value
_RUNNING = JobStatus.RUNNING.value
_CANCELLED = JobStatus.CANCELLED.value
_FAILED = JobStatus.FAILED.value
_FINISHED = tuple(s.value for s in FINISHED_STATUSES)
_FINISHED_SQL = "(" + ",".join(f"'{s}'" for s in _FINISHED) + ")"


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:  # a damaged record must not break listings; show what is there
        log.warning("unreadable JSON in the job database: %.80s", text)
        return {"unreadable": text[:1000]}


def _row_to_job(row: sqlite3.Row) -> Job:
    """A job from a ``_SUMMARY_COLUMNS`` row (its workflow, in its own table, left out)."""
    return Job(
        id=row["id"],
        workflow={},
        status=JobStatus(row["status"]),
        priority=row["priority"],
        client_id=row["client_id"],
        outputs=_loads(row["outputs"]),
        node_count=row["node_count"],
        seq=row["seq"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=_loads(row["result"]),
        error=_loads(row["error"]),
    )


class SQLiteJobQueue(JobQueue):
    """Jobs in a SQLite database file; see the module docstring for the guarantees.

    ``max_history`` bounds how many finished jobs are kept (the oldest are dropped first).
    """

    def __init__(self, path: str | Path, *, max_history: int = 10_000, durable: bool = False):
        self.path = Path(path)
        self.max_history = max_history
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per change.
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=10
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} was written by a newer graphflow (queue schema {version}, "
                f"this one reads {SCHEMA_VERSION})"
            )
        if version == 1:
            self._migrate_from_1()
        else:
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._finished_since_prune = 0

    def _migrate_from_1(self) -> None:
        """Schema 1 → 2: move the workflows out of ``jobs`` into their own table (one
        transaction; another process that migrated first leaves nothing to do)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._db.execute("PRAGMA user_version").fetchone()[0] == 1:
                self._db.execute(_WORKFLOWS_TABLE)
                self._db.execute(
                    "INSERT INTO workflows (job_seq, document) SELECT seq, workflow FROM jobs"
                )
                self._db.execute("ALTER TABLE jobs DROP COLUMN workflow")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                log.info("moved the job database %s to schema %d", self.path, SCHEMA_VERSION)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writes ---------------------------------------------------------------------------

    def _transaction(self, statements: list[tuple[str, tuple]]) -> list[sqlite3.Cursor]:
        cursors = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                cursors.append(self._db.execute(sql, params))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return cursors

    def put(self, job: Job, workflow_text: str | None = None) -> int:
        """Store a new pending job; durable when this returns. ``workflow_text``: the
        workflow's JSON text when the caller has it (e.g. as it was posted)."""
        if not job.created_at:
            job.created_at = time.time()
        job.status = JobStatus.PENDING
        if workflow_text is None:
            with gc_paused():  # a big workflow is many small objects; see graphflow/gcpause.py
                workflow_text = to_json(job.workflow)
        cursor, _ = self._transaction(
            [
                (
                    "INSERT INTO jobs (id, status, priority, client_id, outputs,"
                    " node_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.status.value,
                        job.priority,
                        job.client_id,
                        None if job.outputs is None else to_json(job.outputs),
                        job.node_count,
                        job.created_at,
                    ),
                ),
                (
                    "INSERT INTO workflows (job_seq, document) VALUES (last_insert_rowid(), ?)",
                    (workflow_text,),
                ),
            ]
        )
        job.seq = cursor.lastrowid or 0
        return self.position(job.id) or 0

    def claim_next(self) -> Job | None:
        """Mark the next pending job running and return it (without its workflow)."""
        row = self._db.execute(
            f"UPDATE jobs SET status = '{_RUNNING}', started_at = ? WHERE seq = ("
            f"  SELECT seq FROM jobs WHERE status = '{_PENDING}'"
            "  ORDER BY priority DESC, seq LIMIT 1"
            f") RETURNING {_SUMMARY_COLUMNS}",
            (time.time(),),
        ).fetchone()
        return None if row is None else _row_to_job(row)

    def workflow(self, job_id: str) -> dict:
        """The stored workflow document of a job."""
        with gc_paused():
            return json.loads(self.workflow_text(job_id))

    def workflow_text(self, job_id: str) -> str:
        """The stored JSON text of a job's workflow."""
        row = self._db.execute(_WORKFLOW_OF_JOB, (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return row[0]

    def finish(self, job_id: str, outcome: JobOutcome) -> Job:
        """Record the end of a running job; returns it without its workflow."""
        now = time.time()
        result = to_json(outcome.result_dict())
        error = None if outcome.error is None else to_json(outcome.error)
        statements = [
            (
                "UPDATE jobs SET status = ?, finished_at = ?, result = ?, error = ?,"
                " started_at = COALESCE(started_at, ?) WHERE id = ?",
                (outcome.status.value, now, result, error, now, job_id),
            )
        ]
        self._finished_since_prune += 1
        if self._finished_since_prune >= max(1, min(100, self.max_history // 10)):
            self._finished_since_prune = 0
            statements.append(self._prune_statement())
        cursors = self._transaction(statements)
        if cursors[0].rowcount == 0:
            raise JobNotFound(job_id)
        return self.summary(job_id)

    def summary(self, job_id: str) -> Job:
        """One job without its workflow."""
        row = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _row_to_job(row)

    def _prune_statement(self) -> tuple[str, tuple]:
        return (
            f"DELETE FROM jobs WHERE status IN {_FINISHED_SQL} AND seq NOT IN ("
            f"  SELECT seq FROM jobs WHERE status IN {_FINISHED_SQL}"
            "  ORDER BY finished_at DESC, seq DESC LIMIT ?)",
            (self.max_history,),
        )

    def prune(self) -> int:
        """Drop the oldest finished jobs beyond ``max_history``; returns how many."""
        (cursor,) = self._transaction([self._prune_statement()])
        return cursor.rowcount

    def requeue(self, job_id: str) -> bool:
        """Put a running job back to pending, keeping its place in the order."""
        (cursor,) = self._transaction(
            [
                (
                    f"UPDATE jobs SET status = '{_PENDING}', started_at = NULL"
                    f" WHERE id = ? AND status = '{_RUNNING}'",
                    (job_id,),
                )
            ]
        )
        return cursor.rowcount == 1

    def cancel(self, job_id: str) -> Job:
        """Cancel a pending job."""
        (cursor,) = self._transaction(
            [
                (
                    f"UPDATE jobs SET status = '{_CANCELLED}', finished_at = ?, error = ?"
                    f" WHERE id = ? AND status = '{_PENDING}'",
                    (
                        time.time(),
                        to_json(
                            {"code": JobErrorCode.CANCELLED, "message": "cancelled before it ran"}
                        ),
                        job_id,
                    ),
                )
            ]
        )
        if cursor.rowcount == 0:
            job = self.get(job_id)  # raises JobNotFound
            raise ValueError(f"job {job_id} is {job.status.value}, not pending")
        return self.get(job_id)

    def clear_pending(self) -> list[str]:
        """Cancel every pending job."""
        ids = [job.id for job in self.pending()]
        self._transaction(
            [
                (
                    f"UPDATE jobs SET status = '{_CANCELLED}', finished_at = ?, error = ?"
                    f" WHERE status = '{_PENDING}'",
                    (
                        time.time(),
                        to_json({"code": JobErrorCode.CANCELLED, "message": "queue cleared"}),
                    ),
                )
            ]
        )
        return ids

    def delete(self, job_id: str) -> None:
        """Forget a finished job."""
        (cursor,) = self._transaction(
            [(f"DELETE FROM jobs WHERE id = ? AND status IN {_FINISHED_SQL}", (job_id,))]
        )
        if cursor.rowcount == 0:
            job = self.get(job_id)
            raise ValueError(f"job {job_id} is {job.status.value}; only finished jobs are deleted")

    def recover(self) -> list[str]:
        """Fail the jobs a previous process left running (see the module docstring)."""
        ids = [job.id for job in self.running()]
        if ids:
            error = to_json(
                {
                    "code": RESTART_ERROR_CODE,
                    "message": "interrupted by restart: the server stopped while this job ran",
                }
            )
            self._transaction(
                [
                    (
                        f"UPDATE jobs SET status = '{_FAILED}', finished_at = ?, error = ?"
                        f" WHERE status = '{_RUNNING}'",
                        (time.time(), error),
                    )
                ]
            )
        return ids

    # -- reads ----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """One job, with its workflow."""
        job = self.summary(job_id)
        row = self._db.execute(_WORKFLOW_OF_JOB, (job_id,)).fetchone()
        job.workflow = (_loads(row[0]) if row is not None else None) or {}
        return job

    def pending(self) -> list[Job]:
        """Pending jobs in run order (without their workflows)."""
        rows = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM jobs WHERE status = '{_PENDING}'"
            " ORDER BY priority DESC, seq"
        )
        return [_row_to_job(row) for row in rows]

    def running(self) -> list[Job]:
        """Running jobs, oldest first (without their workflows)."""
        rows = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM jobs WHERE status = '{_RUNNING}' ORDER BY seq"
        )
        return [_row_to_job(row) for row in rows]

    def position(self, job_id: str) -> int | None:
        """How many pending jobs run before this one."""
        row = self._db.execute(
            f"SELECT priority, seq FROM jobs WHERE id = ? AND status = '{_PENDING}'", (job_id,)
        ).fetchone()
        if row is None:
            return None
        priority, seq = row
        return self._db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE status = '{_PENDING}'"
            " AND (priority > ? OR (priority = ? AND seq < ?))",
            (priority, priority, seq),
        ).fetchone()[0]

    def history(self, limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
        """Finished jobs, most recently finished first."""
        rows = self._db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM jobs WHERE status IN {_FINISHED_SQL}"
            " ORDER BY finished_at DESC, seq DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        jobs = [_row_to_job(row) for row in rows]
        total = self._db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE status IN {_FINISHED_SQL}"
        ).fetchone()[0]
        return jobs, total

    def counts(self) -> dict[str, int]:
        """Jobs per status (every status present, zero when none)."""
        counts = {status.value: 0 for status in JobStatus}
        for status, count in self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
            counts[status] = count
        return counts

    def active_counts(self) -> dict[str, int]:
        """Pending and running counts (index lookups; the history size does not matter)."""
        count = "SELECT COUNT(*) FROM jobs WHERE status = ?"
        return {
            _PENDING: self._db.execute(count, (_PENDING,)).fetchone()[0],
            _RUNNING: self._db.execute(count, (_RUNNING,)).fetchone()[0],
        }

    def close(self) -> None:
        """Checkpoint the WAL and close the file."""
        # Another process may hold the database; the WAL stays valid either way.
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
