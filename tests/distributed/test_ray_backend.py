"""The Ray backend end to end: a server whose jobs run on two Ray worker actors (CPU only).

One local Ray cluster serves the whole module (see conftest.py); each test starts its own
server and pool, and the pool's actors end with the server.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serverkit import link

from graphflow import Executor
from graphflow.distributed.numerics import TorchNumerics
from graphflow.workflow import workflow_from_dict

pytestmark = pytest.mark.ray

ROOT = Path(__file__).parents[2]


def sleeper(steps: int, step_seconds: float = 0.05, value: float = 1.0) -> dict:
    """A workflow whose one node sleeps ``steps`` × ``step_seconds`` with progress."""
    return {
        "format": "graphflow/1",
        "nodes": {
            "s": {
                "type": "raytest.sleep",
                "inputs": {"value": value, "steps": steps, "step_seconds": step_seconds},
            },
            "out": {"type": "core.show", "inputs": {"value": link("s", "float")}},
        },
    }


def uses_model(name: str, value: float = 0.0) -> dict:
    """A workflow that loads the stand-in model ``name`` and uses it."""
    return {
        "format": "graphflow/1",
        "nodes": {
            "load": {"type": "raytest.load_model", "inputs": {"name": name}},
            "use": {
                "type": "raytest.use_model",
                "inputs": {"model": link("load", "model"), "value": value},
            },
            "out": {"type": "core.show", "inputs": {"value": link("use", "float")}},
        },
    }


def tiny_txt2img() -> dict:
    """The shipped txt2img workflow on the embedded model, made small: 1 image, 3 steps."""
    workflow = json.loads((ROOT / "workflows" / "txt2img.json").read_text())
    workflow["nodes"]["sampler"]["inputs"].update(steps=3, seed=1234)
    workflow["nodes"]["latent"]["inputs"].update(batch_size=1)
    return workflow


async def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll ``predicate`` (sync) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def pool_ready(api, workers: int = 2) -> None:
    """Wait until ``workers`` actors of the server's pool have started."""
    runner = api.state.runner
    await wait_for(
        lambda: sum(w["state"] == "ready" for w in runner.info()["workers"]) == workers,
        timeout=60,
        what=f"{workers} ready workers",
    )


async def running_on(api, job_id: str, feed) -> object:
    """Wait until the job reports progress from its worker; returns that worker's slot."""
    while True:
        message = await feed.next(timeout=60)
        if message["type"] == "progress" and message["data"]["job_id"] == job_id:
            break
    slot = api.state.runner.worker_of(job_id)
    assert slot is not None
    return slot


@pytest.mark.asyncio
async def test_jobs_run_on_ray_workers_and_match_the_local_backend_bit_for_bit(
    make_ray_api, ray_registry, tmp_path
):
    api = await make_ray_api()
    feed = await api.connect("viewer")
    workflow = tiny_txt2img()
    job_id = await api.submit(copy.deepcopy(workflow), client_id="viewer")
    messages = await feed.until_done(job_id, timeout=180)
    record = await api.wait_finished(job_id)
    assert record["status"] == "done", record["error"]
    assert record["worker"].startswith("ray-worker-")
    # Events came back from the actor, in order, then the job's end.
    kinds = [m["type"] for m in messages if m["data"].get("job_id") == job_id]
    assert kinds[0] == "run_started" and kinds[-2:] == ["run_finished", "job_done"]
    assert "progress" in kinds and kinds.index("progress") < kinds.index("run_finished")
    assert set(record["timings"]["nodes"]) >= {"ckpt", "sampler", "decode", "save"}

    # The promise (docs/distributed.md): same machine, same device, same torch numerics
    # settings -> the same bits. The actor took on this process's settings (thread count
    # included) when it was made; the local run uses the device the actor computed on.
    info = api.state.runner.info()
    worker = next(w for w in info["workers"] if w["name"] == record["worker"])
    assert worker["numerics"] == TorchNumerics.of_this_process().to_dict()
    local_dir = tmp_path / "local"
    local_executor = Executor(ray_registry, output_dir=local_dir, device=worker["device"])
    local = local_executor.run(workflow_from_dict(workflow))
    assert local.ok
    assert record["outputs"]["prompt"] == local.ui["prompt"]
    remote_image = record["outputs"]["save"]["images"][0]
    local_image = local.ui["save"]["images"][0]
    assert remote_image["filename"] == local_image["filename"]
    view = await api.client.get("/api/view", params={"filename": remote_image["filename"]})
    assert view.status == 200  # the actor wrote where the server serves files from
    remote_pixels = np.asarray(Image.open(Path(remote_image["path"])))
    local_pixels = np.asarray(Image.open(Path(local_image["path"])))
    assert remote_pixels.shape == local_pixels.shape
    assert np.array_equal(remote_pixels, local_pixels)  # bit for bit: no tolerance

    # The worker that ran it reports the checkpoint it now holds.
    info = api.state.runner.info()
    worker = next(w for w in info["workers"] if w["name"] == record["worker"])
    assert any("diffusion.load_checkpoint" in label for label in worker["holds"])


@pytest.mark.asyncio
async def test_a_job_with_a_loaded_checkpoint_goes_to_the_worker_holding_it(make_ray_api):
    api = await make_ray_api()
    await pool_ready(api)  # else the first jobs all go to whichever actor started first
    ran_on = {}
    for step, name in enumerate(["alpha", "bravo", "alpha", "bravo", "bravo", "alpha"]):
        job_id = await api.submit(uses_model(name, value=step))
        record = await api.wait_finished(job_id, timeout=60)
        assert record["status"] == "done", record["error"]
        assert record["outputs"]["out"]["text"] == [str(float(step + len(name)))]
        ran_on.setdefault(name, set()).add(record["worker"])
    # Each model stayed on one worker, and the two models went to different workers.
    assert len(ran_on["alpha"]) == 1 and len(ran_on["bravo"]) == 1
    assert ran_on["alpha"] != ran_on["bravo"]
    holds = {w["name"]: w["holds"] for w in api.state.runner.info()["workers"]}
    (alpha_worker,) = ran_on["alpha"]
    assert holds[alpha_worker] == ["raytest.load_model(name=alpha)"]


@pytest.mark.asyncio
async def test_a_batch_of_jobs_runs_in_parallel_on_two_workers(make_ray_api):
    api = await make_ray_api()
    assert api.state.runner.capacity == 2
    await pool_ready(api)
    ids = [await api.submit(sleeper(steps=10, value=i)) for i in range(4)]
    records = [await api.wait_finished(job_id, timeout=60) for job_id in ids]
    assert [r["status"] for r in records] == ["done"] * 4
    assert {r["worker"] for r in records} == {"ray-worker-1", "ray-worker-2"}
    # The first two jobs were running at the same time (each started before the other ended).
    first, second = records[0]["timings"], records[1]["timings"]
    assert first["started_at"] < second["finished_at"]
    assert second["started_at"] < first["finished_at"]


@pytest.mark.asyncio
async def test_killing_a_worker_mid_job_requeues_the_job_on_the_other_worker(
    make_ray_api, ray_cluster
):
    api = await make_ray_api()
    feed = await api.connect("watcher")
    job_id = await api.submit(sleeper(steps=40), client_id="watcher")
    killed = await running_on(api, job_id, feed)
    ray_cluster.kill(killed.handle)
    record = await api.wait_finished(job_id, timeout=90)
    assert record["status"] == "done", record["error"]
    assert record["worker"] != killed.name
    assert record["outputs"]["out"]["text"] == ["1.0"]
    # The pool was made whole again: a fresh actor replaced the dead one.
    await pool_ready(api)
    names = {w["name"] for w in api.state.runner.info()["workers"]}
    assert killed.name not in names and len(names) == 2


@pytest.mark.asyncio
async def test_a_job_whose_worker_dies_twice_fails_with_worker_lost(make_ray_api, ray_cluster):
    api = await make_ray_api()
    feed = await api.connect("watcher")
    job_id = await api.submit(sleeper(steps=200), client_id="watcher")
    first = await running_on(api, job_id, feed)
    ray_cluster.kill(first.handle)
    second = await wait_for(
        lambda: (slot := api.state.runner.worker_of(job_id)) and slot is not first and slot,
        what="the job to be requeued",
    )
    await running_on(api, job_id, feed)
    ray_cluster.kill(second.handle)
    record = await api.wait_finished(job_id, timeout=60)
    assert record["status"] == "failed"
    assert record["error"]["code"] == "worker_lost"
    assert record["error"]["workers"] == [first.name, second.name]
    assert "died 2 time(s)" in record["error"]["message"]
    # The server goes on: the next job runs on the replacement workers.
    next_id = await api.submit(sleeper(steps=1))
    assert (await api.wait_finished(next_id, timeout=90))["status"] == "done"


@pytest.mark.asyncio
async def test_interrupt_reaches_a_job_running_on_a_remote_worker(make_ray_api):
    api = await make_ray_api()
    feed = await api.connect("watcher")
    job_id = await api.submit(sleeper(steps=2000), client_id="watcher")
    await running_on(api, job_id, feed)
    response = await api.client.post("/api/interrupt", json={"job_id": job_id})
    assert (await response.json())["interrupted"] == [job_id]
    record = await api.wait_finished(job_id, timeout=30)
    assert record["status"] == "cancelled"
    assert record["error"]["code"] == "interrupted"
    assert record["worker"].startswith("ray-worker-")


def test_graphflow_run_backend_ray_runs_on_an_actor_and_writes_the_same_files(
    ray_cluster, tmp_path, capsys
):
    from graphflow.cli import main

    workflow = json.loads((ROOT / "workflows" / "film_grain.json").read_text())
    workflow["nodes"]["photo"]["inputs"]["size"] = 64
    workflow["nodes"]["where"] = {"type": "raytest.pid", "inputs": {}}
    workflow["nodes"]["show"] = {"type": "core.show", "inputs": {"value": link("where", "int")}}
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(workflow))
    common = [str(path), "--plugin-dir", str(ROOT / "tests/distributed/plugins"), "--json"]

    code = main(["run", *common, "--output", str(tmp_path / "ray"), "--backend", "ray"])
    remote = json.loads(capsys.readouterr().out)
    assert code == 0, remote
    code = main(["run", *common, "--output", str(tmp_path / "local")])
    local = json.loads(capsys.readouterr().out)
    assert code == 0, local

    assert remote["status"] == "finished" and remote["executed"] == local["executed"]
    remote_pid = int(remote["ui"]["show"]["text"][0])
    assert remote_pid != int(local["ui"]["show"]["text"][0])  # it ran in the actor's process
    files = [Path(run["ui"]["save"]["images"][0]["path"]) for run in (remote, local)]
    assert files[0].parent == tmp_path / "ray" and files[1].parent == tmp_path / "local"
    assert np.array_equal(np.asarray(Image.open(files[0])), np.asarray(Image.open(files[1])))
    assert ray_cluster.is_initialized()  # joined the running cluster; left it running


@pytest.fixture
def lone_actor(ray_cluster, tmp_path):
    """One worker actor made by hand, told to compute with 3 intra-op threads."""
    from graphflow.distributed.worker_actor import GraphflowWorker

    actor = GraphflowWorker.options(num_cpus=0).remote(
        "lone",
        [str(ROOT / "tests/distributed/plugins")],
        str(tmp_path / "output"),
        str(tmp_path / "temp"),
        "cpu",
        TorchNumerics(intra_op_threads=3),
    )
    yield actor
    ray_cluster.kill(actor)


def test_a_worker_actor_computes_with_the_torch_numerics_it_is_given(ray_cluster, lone_actor):
    identity = ray_cluster.get(lone_actor.ready.remote(), timeout=60)
    assert identity["numerics"]["intra_op_threads"] == 3


def test_an_interrupt_reaching_the_actor_before_its_run_ends_the_run_before_any_node(
    ray_cluster, lone_actor
):
    assert ray_cluster.get(lone_actor.interrupt.remote("early"), timeout=60)
    stream = lone_actor.run_workflow.remote("early", sleeper(steps=200), None)
    items = [ray_cluster.get(ref) for ref in stream]
    kind, result = items[-1]
    assert kind == "result"
    assert result.status == "interrupted" and result.executed == []
    # The token was that run's only: the next run on the same actor is not stopped.
    stream = lone_actor.run_workflow.remote("next", sleeper(steps=2, step_seconds=0.01), None)
    kind, result = [ray_cluster.get(ref) for ref in stream][-1]
    assert result.status == "finished", result.error


def test_a_worker_reports_a_model_as_held_under_the_models_folder_of_its_settings(
    ray_cluster, tmp_path
):
    from graphflow.distributed.worker_actor import GraphflowWorker
    from graphflow.settings import Settings

    actor = GraphflowWorker.options(num_cpus=0).remote(
        "settled",
        [str(ROOT / "tests/distributed/plugins")],
        str(tmp_path / "output"),
        str(tmp_path / "temp"),
        "cpu",
        None,
        Settings(models=tmp_path / "head-models"),
    )
    try:
        workflow = uses_model("alpha")
        workflow["nodes"]["load"]["type"] = "raytest.load_model_here"
        kind, outcome, holds = [
            ray_cluster.get(ref) for ref in actor.run_job.remote("job", workflow, None)
        ][-1]
        assert kind == "outcome" and outcome.status == "done", outcome.error
        assert list(holds.values()) == ["raytest.load_model_here(name=alpha)"]
    finally:
        ray_cluster.kill(actor)
