"""graphflow's job records in ComfyUI's shapes: queue items and history entries (§2.4).

A job queued through the ComfyUI dialect keeps what ComfyUI echoes back in its document's
editor data (``doc["editor"]["comfy"]``: the coerced ``prompt``, ``extra_data``, ``number``
and ``outputs``), stored as JSON text in graphflow's SQLite queue — so a seed of 2^64 − 1
never passes through a float or an integer column. A job queued through graphflow's own API
is shown too: its prompt is derived from the graphflow document.
"""

from __future__ import annotations

from graphflow.errors import WorkflowFormatError
from graphflow.jobs import Job, JobStatus
from graphflow.registry import Registry

from ..api_format import graphflow_to_api
from .prompts import output_nodes

COMFY_KEY = "comfy"


def comfy_data(job: Job) -> dict | None:
    """The ComfyUI data a job was queued with (None for a graphflow-dialect job)."""
    editor = job.workflow.get("editor") if isinstance(job.workflow, dict) else None
    data = editor.get(COMFY_KEY) if isinstance(editor, dict) else None
    return data if isinstance(data, dict) and "prompt" in data else None


def derived_prompt(registry: Registry, document: dict) -> dict:
    """An API-format prompt for a graphflow document (the API-format exporter's)."""
    try:
        return graphflow_to_api(document, registry)
    except (WorkflowFormatError, KeyError, TypeError):  # a damaged record: show no prompt
        return {}


def queue_item(registry: Registry, job: Job) -> list:
    """``[number, prompt_id, prompt, extra_data, outputs_to_execute]`` of a job."""
    data = comfy_data(job)
    if data is not None:
        return [
            data.get("number", job.seq),
            job.id,
            data["prompt"],
            data.get("extra_data", {}),
            data.get("outputs", []),
        ]
    extra = {"client_id": job.client_id} if job.client_id else {}
    outputs = job.outputs or output_nodes(registry, job.workflow)
    return [job.seq, job.id, derived_prompt(registry, job.workflow), extra, list(outputs)]


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def status_messages(job: Job, item: list) -> list[list]:
    """The ``status.messages`` of a finished job."""
    result = job.result or {}
    error = job.error or {}
    executed = list((result.get("nodes") or {}).keys())
    base = {"prompt_id": job.id}
    messages: list[list] = [["execution_start", {**base, "timestamp": _ms(job.started_at)}]]
    cached = (
        [n for n in item[2] if n not in result.get("nodes", {})]
        if job.status is JobStatus.DONE
        else []
    )
    messages.append(
        ["execution_cached", {"nodes": cached, **base, "timestamp": _ms(job.started_at)}]
    )
    end = _ms(job.finished_at)
    if job.status is JobStatus.DONE:
        messages.append(["execution_success", {**base, "timestamp": end}])
    elif job.status is JobStatus.CANCELLED:
        node = error.get("node")
        messages.append(
            [
                "execution_interrupted",
                {
                    **base,
                    "node_id": node,
                    "node_type": _node_type(item, node),
                    "executed": executed,
                    "timestamp": end,
                },
            ]
        )
    else:
        node_type = _node_type(item, error.get("node"))
        data = error_message(job.id, error, node_type, executed, end)
        messages.append(["execution_error", data])
    return messages


def node_type(item: list, node: str | None) -> str | None:
    """The class type of ``node`` in a queue item's prompt."""
    return _node_type(item, node)


def _node_type(item: list, node: str | None) -> str | None:
    if node is None:
        return None
    entry = item[2].get(node)
    return entry.get("class_type") if isinstance(entry, dict) else None


def error_message(
    prompt_id: str, error: dict | None, node_type: str | None, executed: list[str],
    timestamp: int | None,
) -> dict:  # fmt: skip
    """The data of ``execution_error`` for a job's recorded error (§3.2 fields)."""
    error = error or {}
    trace = error.get("traceback") or ""
    return {
        "prompt_id": prompt_id,
        "node_id": error.get("node"),
        "node_type": node_type,
        "executed": executed,
        "exception_message": error.get("exception_message") or error.get("message", ""),
        "exception_type": error.get("exception_type") or error.get("code", ""),
        "traceback": trace.splitlines(keepends=True) if isinstance(trace, str) else list(trace),
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": timestamp,
    }


def history_entry(registry: Registry, job: Job) -> dict:
    """A finished job as ComfyUI's ``/history`` shows it."""
    item = queue_item(registry, job)
    done = job.status is JobStatus.DONE
    outputs = (job.result or {}).get("ui") or {}
    return {
        "prompt": item,
        "outputs": outputs,
        "status": {
            "status_str": "success" if done else "error",
            "completed": done,
            "messages": status_messages(job, item),
        },
        "meta": {
            node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
            for node in outputs
        },
    }


def shown_in_history(job: Job) -> bool:
    """ComfyUI's history holds prompts that ran; one cancelled while pending is not there."""
    return job.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED) and (
        job.started_at is not None
    )
