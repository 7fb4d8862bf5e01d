"""Test nodes for the Ray backend tests, loaded as a plugin folder by the server and by every
Ray worker actor (so both sides know them): a slow node, a model loader, a process probe."""

from __future__ import annotations

import os
import time

from gf_diffusion.types import Model
from graphflow import Float, Int, NodeContext, String, hookimpl, node
from graphflow.runtime.models import models_dir


@node("raytest.sleep", idempotent=False, category="tests")
def sleep(
    value: Float = 0.0,
    steps: Int(min=1) = 10,
    step_seconds: Float(min=0.0) = 0.05,
    ctx: NodeContext = None,
) -> Float:
    """Sleep ``steps`` × ``step_seconds``, reporting progress (and checking interrupt) each step."""
    for i in range(steps):
        time.sleep(step_seconds)
        ctx.progress(i + 1, steps)
    return value


@node("raytest.load_model", category="tests")
def load_model(name: String = "a") -> Model:
    """A stand-in model loader: a MODEL output from a name (cached like a real checkpoint)."""
    return {"model": name, "loaded_by": os.getpid()}


@node("raytest.load_model_here", category="tests")
def load_model_here(name: String = "a") -> Model:
    """A stand-in loader whose cache signature depends on the models folder in force."""
    return {"model": name, "loaded_by": os.getpid()}


@load_model_here.fingerprint
def _models_folder(name: str, **_) -> str:
    return str(models_dir())


@node("raytest.use_model", category="tests")
def use_model(model: Model, value: Float = 0.0) -> Float:
    """Read a model: the value plus the name's length."""
    return value + len(model["model"])


@node("raytest.pid", idempotent=False, category="tests")
def pid(value: Float = 0.0) -> Int:
    """The id of the process that ran the node."""
    return os.getpid()


@hookimpl
def graphflow_nodes() -> list:
    """The test nodes."""
    return [sleep, load_model, load_model_here, use_model, pid]
