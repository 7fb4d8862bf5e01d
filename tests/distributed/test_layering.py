"""The Ray backend is a layer beside the server, not above it: importing any of its modules
(and resolving every lazy export of the package) loads neither the server nor aiohttp."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

MODULES = ["affinity", "cluster", "numerics", "remote_run", "routing", "runner"]


def test_the_distributed_package_imports_nothing_of_the_server_nor_aiohttp():
    modules = list(MODULES)
    if importlib.util.find_spec("ray") is not None:  # the actor module needs Ray itself
        modules.append("worker_actor")
    script = (
        "import importlib, sys\n"
        "import graphflow.distributed as d\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('graphflow.distributed.' + name)\n"
        "for name in d.__all__:\n"
        "    getattr(d, name)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('graphflow.server'))\n"
        "print(loaded, 'aiohttp' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] False"
