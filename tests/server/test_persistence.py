"""A job accepted is never lost: restarts, clean shutdowns, and kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest
from serverkit import chain, single

from graphflow.server.queue_base import Job
from graphflow.server.queue_sqlite import SQLiteJobQueue

pytestmark = pytest.mark.asyncio


async def test_restart_fails_the_job_left_running_and_runs_the_pending_ones(make_api, data_dir):
    queue = SQLiteJobQueue(data_dir / "graphflow.db")
    queue.put(Job(id="was-running", workflow=chain(2)))
    queue.put(Job(id="was-pending", workflow=chain(3)))
    assert queue.claim_next().id == "was-running"
    queue._db.close()  # no clean shutdown: the process "died" here

    api = await make_api()
    assert api.state.dispatcher.recovered == ["was-running"]
    crashed = await api.job("was-running")
    assert crashed["status"] == "failed"
    assert crashed["error"]["code"] == "interrupted_by_restart"
    assert "interrupted by restart" in crashed["error"]["message"]
    pending = await api.wait_finished("was-pending")
    assert pending["status"] == "done"
    assert pending["outputs"] == {"out": {"text": ["3.0"]}}


async def test_a_clean_shutdown_requeues_the_running_job_and_keeps_the_pending_ones(
    make_api, control
):
    first = await make_api()
    running = await first.submit(single("srv.wait", {"limit": 30.0}))
    pending = await first.submit(chain(4))
    await first.wait_running(running)
    await first.client.close()  # interrupts the running job; it goes back to pending

    control.release.set()
    second = await make_api()
    assert second.state.dispatcher.recovered == []
    assert (await second.wait_finished(running))["status"] == "done"
    assert (await second.wait_finished(pending))["status"] == "done"


async def test_finished_history_survives_a_restart(make_api):
    first = await make_api()
    job_id = await first.submit(chain(2))
    await first.wait_finished(job_id)
    await first.client.close()
    second = await make_api()
    record = await second.job(job_id)
    assert record["status"] == "done"
    assert record["outputs"] == {"out": {"text": ["2.0"]}}


SLOW_PLUGIN = textwrap.dedent(
    '''
    """A node that sleeps, for the kill -9 test."""
    import time
    from graphflow import Float, NodeContext, hookimpl, node

    @node("slowpack.sleep", idempotent=False)
    def sleep(seconds: Float = 1.0, ctx: NodeContext = None) -> Float:
        """Sleep, reporting progress."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ctx.progress(0, 0)
            time.sleep(0.01)
        return seconds

    @hookimpl
    def graphflow_nodes():
        """The node."""
        return [sleep]
    '''
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m graphflow.server.app`` in a child process."""

    def __init__(self, data_dir, plugin_dir):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "graphflow.server.app", "--port", str(self.port)]
        args += ["--data-dir", str(data_dir), "--plugin-dir", str(plugin_dir)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ}
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read().decode()
            try:
                self.get("/api/system")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        raise AssertionError("the server did not start")

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def post(self, path, body):
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def wait_status(self, job_id, statuses, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.get(f"/api/history/{job_id}")
            if record["status"] in statuses:
                return record
            time.sleep(0.02)
        raise AssertionError(f"{job_id} stayed {record['status']}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.mark.slow
async def test_kill_9_during_a_job_loses_no_accepted_job(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slowpack.py").write_text(SLOW_PLUGIN)
    data = tmp_path / "data"
    sleeping = {
        "format": "graphflow/1",
        "nodes": {
            "s": {"type": "slowpack.sleep", "inputs": {"seconds": 60.0}},
            "out": {"type": "core.show", "inputs": {"value": {"link": ["s", "float"]}}},
        },
    }

    def scenario():
        server = ServerProcess(data, plugins)
        try:
            victim = server.post("/api/prompt", {"workflow": sleeping})["job_id"]
            waiting = [server.post("/api/prompt", {"workflow": chain(n)})["job_id"] for n in (2, 3)]
            server.wait_status(victim, ("running",))
        finally:
            server.process.kill()  # SIGKILL: no cleanup of any kind
            server.process.wait()
        restarted = ServerProcess(data, plugins)
        try:
            crashed = restarted.wait_status(victim, ("failed", "done", "cancelled"))
            results = [restarted.wait_status(j, ("done", "failed", "cancelled")) for j in waiting]
        finally:
            restarted.stop()
        return crashed, results

    crashed, results = await asyncio.get_running_loop().run_in_executor(None, scenario)
    assert crashed["status"] == "failed"
    assert crashed["error"]["code"] == "interrupted_by_restart"
    assert [r["status"] for r in results] == ["done", "done"]
    assert [r["outputs"]["out"]["text"] for r in results] == [["2.0"], ["3.0"]]
