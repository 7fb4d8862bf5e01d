"""The disk tier: survives restarts, LRU within its budget, safe against crashes and
concurrent processes, stores only what it can encode (never pickles), and its CLI."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from graphflow import Any, Float, OutputCache, Registry, String, node
from graphflow.cache import LOCAL_PREFIX, is_portable, node_signature
from graphflow.cli import main
from graphflow.disk_cache import DiskCache, cache_folder
from graphflow.settings import Settings
from support import TestPack, link, make_workflow

KEY = "0123456789abcdef0123456789abcdef"


def key(n: int) -> str:
    """A distinct portable signature."""
    return f"{n:032x}"


def store(folder: Path, max_bytes: int = 1 << 30, min_seconds: float = 0.0) -> DiskCache:
    """A disk tier in a test folder (never the user's home)."""
    return DiskCache(folder, max_bytes, min_seconds)


# -- the store --------------------------------------------------------------------------------


def test_put_then_get_from_a_new_instance(tmp_path):
    outputs = {"latent": torch.randn(1, 4, 8, 8), "steps": 20, "name": "x"}
    assert store(tmp_path).put(KEY, outputs, {"text": ["hi"]}, 1.25)
    hit = store(tmp_path).get(KEY)  # a new instance: nothing shared but the folder
    assert hit is not None
    assert torch.equal(hit.outputs["latent"], outputs["latent"])
    assert hit.outputs["steps"] == 20 and hit.ui == {"text": ["hi"]} and hit.cost == 1.25
    assert store(tmp_path).get(key(1)) is None


def test_values_with_no_codec_are_skipped_and_counted(tmp_path):
    class ModelHandle:
        """Not serialisable."""

    disk = store(tmp_path)
    assert not disk.put(KEY, {"model": ModelHandle()}, None, 5.0)
    assert KEY not in disk and not list(disk.objects.glob("*/*"))
    assert disk.stats()["skipped"] == 1 and disk.stats()["entries"] == 0


def test_keys_that_are_not_portable_signatures_are_refused(tmp_path):
    disk = store(tmp_path)
    assert not disk.put(LOCAL_PREFIX + KEY, {"v": 1}, None, 1.0)
    assert not disk.put("../../etc/passwd", {"v": 1}, None, 1.0)
    assert disk.get("../" + KEY) is None
    with pytest.raises(ValueError, match="portable signature"):
        disk.path_for("a/b")


def test_a_crash_between_write_and_rename_leaves_no_entry(tmp_path, monkeypatch):
    disk = store(tmp_path)

    def crash(src, dst):
        raise KeyboardInterrupt("power cut")  # the process dies mid-put

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        disk.put(KEY, {"v": torch.ones(3)}, None, 1.0)
    monkeypatch.undo()
    assert store(tmp_path).get(KEY) is None
    assert not list(disk.objects.glob("*/*"))


def test_stale_temp_files_of_crashed_writers_are_swept_on_open(tmp_path):
    disk = store(tmp_path)
    disk.put(key(1), {"v": 1}, None, 1.0)
    stale = disk.tmp / f"{KEY}.999.dead.tmp"
    stale.write_bytes(b"half an entry")
    fresh = disk.tmp / f"{key(2)}.998.busy.tmp"
    fresh.write_bytes(b"being written right now")
    os.utime(stale, (0, 0))
    store(tmp_path).stats()  # opening the index sweeps
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_a_torn_or_corrupt_entry_is_ignored_and_removed(tmp_path, damage):
    disk = store(tmp_path)
    disk.put(KEY, {"v": torch.arange(100.0)}, None, 1.0)
    path = disk.path_for(KEY)
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) - 50]
    elif damage == "flip":
        data = data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]
    elif damage == "empty":
        data = b""
    else:
        data = b"GFCACHE1" + os.urandom(200)
    path.write_bytes(data)
    again = store(tmp_path)
    assert again.get(KEY) is None
    assert not path.exists()
    stats = again.stats()
    assert stats["corrupt"] == 1 and stats["entries"] == 0
    assert again.put(KEY, {"v": 1}, None, 1.0) and again.get(KEY).outputs == {"v": 1}


def test_an_entry_of_an_unloaded_plugin_type_is_a_miss_but_kept(tmp_path):
    from dataclasses import dataclass

    from graphflow import value_codec

    @dataclass
    class PluginValue:
        """A pack's value type."""

        x: int

    value_codec.register_dataclass(PluginValue, "tests.disk.PluginValue")
    disk = store(tmp_path)
    disk.put(KEY, {"v": PluginValue(3)}, None, 1.0)
    assert disk.get(KEY).outputs["v"] == PluginValue(3)
    del value_codec._BY_NAME["tests.disk.PluginValue"]  # "the plugin is not loaded here"
    del value_codec._BY_TYPE[PluginValue]
    assert disk.get(KEY) is None
    assert disk.path_for(KEY).exists()  # not corrupt: another process may decode it


def test_lru_eviction_keeps_the_total_within_the_budget(tmp_path):
    payload = {"v": torch.zeros(1000)}  # ~4.2 kB per entry
    probe = store(tmp_path / "probe")
    probe.put(KEY, payload, None, 1.0)
    size = probe.path_for(KEY).stat().st_size
    disk = store(tmp_path / "lru", max_bytes=3 * size + size // 2)
    for n in (1, 2, 3):
        assert disk.put(key(n), payload, None, 1.0)
    assert disk.get(key(1)) is not None  # 1 is now the most recently used
    assert disk.put(key(4), payload, None, 1.0)
    assert [n for n in (1, 2, 3, 4) if key(n) in disk] == [1, 3, 4]
    stats = disk.stats()
    assert stats["entries"] == 3 and stats["bytes"] <= disk.max_bytes
    assert stats["evictions"] == 1


def test_an_entry_larger_than_the_budget_is_not_stored(tmp_path):
    disk = store(tmp_path, max_bytes=1000)
    assert not disk.put(KEY, {"v": torch.zeros(1000)}, None, 1.0)
    assert KEY not in disk and disk.stats()["too_large"] == 1


BIG = {"v": "7" * 500_000, "n": list(range(1000))}  # plain data: the children need no torch


def _write_same_key(folder: str, start, seed: int) -> None:
    start.wait()
    disk = DiskCache(folder, 1 << 30)
    for _ in range(5):
        disk.put(KEY, BIG, None, 1.0)
        disk.path_for(KEY).unlink(missing_ok=True)  # race again: rewrite, not touch
    disk.put(KEY, BIG, None, 1.0)
    disk.close()


def test_processes_writing_the_same_key_at_once_leave_one_valid_entry(tmp_path):
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    start = context.Event()
    workers = [
        context.Process(target=_write_same_key, args=(str(tmp_path), start, i)) for i in range(3)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    disk = store(tmp_path)
    hit = disk.get(KEY)
    assert hit is not None and hit.outputs == BIG
    assert disk.stats()["entries"] == 1
    assert list(disk.objects.glob("*/*")) == [disk.path_for(KEY)]
    assert not list(disk.tmp.iterdir())  # no temp file left behind
    assert disk.verify()["corrupt"] == 0


def test_verify_adopts_unindexed_files_and_drops_rows_without_files(tmp_path):
    disk = store(tmp_path)
    disk.put(key(1), {"v": 1}, None, 1.0)
    disk.put(key(2), {"v": 2}, None, 1.0)
    disk.path_for(key(2)).unlink()  # a row without its file
    with disk._write() as db:  # a file without its row (crash between rename and index)
        db.execute("DELETE FROM entries WHERE key = ?", (key(1),))
    assert disk.stats()["entries"] == 1
    assert disk.verify() == {"valid": 1, "corrupt": 0, "dropped_rows": 1}
    stats = disk.stats()
    assert stats["entries"] == 1 and stats["bytes"] == disk.path_for(key(1)).stat().st_size


def test_clear_removes_everything(tmp_path):
    disk = store(tmp_path)
    for n in range(3):
        disk.put(key(n), {"v": torch.ones(4)}, None, 1.0)
    assert disk.clear() == 3
    assert disk.stats()["entries"] == 0 and not list(disk.objects.glob("*/*"))
    assert disk.get(key(0)) is None


# -- signatures -------------------------------------------------------------------------------


def _signature_in_fresh_process(seed: str) -> str:
    code = (
        "from graphflow import node, Any\n"
        "from graphflow.cache import node_signature\n"
        "@node('t.s')\n"
        "def s(x: Any = None) -> Any:\n"
        "    '''Doc.'''\n"
        "sig = node_signature(s, {'x': 1, 'b': [1, 2]}, [('a', 'f' * 32, 'o')],\n"
        "    fingerprint=({'set', 'of', 'strings', 'x', 'y', 'z'}, (1, 2.5), b'raw'))\n"
        "print(sig)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


@pytest.mark.slow
def test_signatures_are_the_same_in_every_process():
    signatures = {_signature_in_fresh_process(seed) for seed in ("1", "2")}
    assert len(signatures) == 1
    assert is_portable(signatures.pop())


def test_a_fingerprint_that_names_a_memory_address_makes_the_signature_process_local():
    pack = TestPack()
    spec = pack.specs[0]
    local = node_signature(spec, {"value": 1.0}, [], fingerprint=object())
    assert local.startswith(LOCAL_PREFIX) and not is_portable(local)
    child = node_signature(spec, {}, [("value", local, "float")])
    assert not is_portable(child)  # and so is everything downstream
    assert is_portable(node_signature(spec, {"value": 1.0}, [], fingerprint=(1, "a")))


# -- the executor -----------------------------------------------------------------------------


def chain_workflow(value: float = 1.0):
    """value → add → add → out, plus a second output."""
    return make_workflow(
        {
            "a": ("t.value", {"value": value}),
            "b": ("t.add", {"a": link("a", "float"), "b": 1}),
            "c": ("t.add", {"a": link("b", "float"), "b": 2}),
            "out": ("t.out", {"value": link("c", "float")}),
            "p": ("t.pair", {"value": link("a", "float")}),
            "out2": ("t.out", {"value": link("p", "high")}),
        }
    )


def executor_on(folder: Path, min_seconds: float = 0.0):
    """A fresh pack and executor whose cache has a disk tier in ``folder`` ("a process")."""
    pack = TestPack()
    cache = OutputCache(disk=DiskCache(folder, 1 << 30, min_seconds))
    return pack, pack.executor(cache=cache)


@pytest.mark.parametrize("min_seconds", [0.0, 3600.0])
def test_a_rerun_after_restart_executes_no_node_and_gives_equal_outputs(tmp_path, min_seconds):
    _pack, first = executor_on(tmp_path, min_seconds)
    cold = first.run(chain_workflow())
    assert cold.ok and len(cold.executed) == 6
    pack, second = executor_on(tmp_path, min_seconds)  # nothing shared but the folder
    warm = second.run(chain_workflow())
    assert warm.ok
    assert warm.executed == [] and sum(pack.calls.values()) == 0
    assert sorted(warm.cached) == ["out", "out2"]
    assert warm.ui == cold.ui == {"out": {"value": [4.0]}, "out2": {"value": [2.0]}}
    assert warm.outputs == cold.outputs


def test_after_restart_a_changed_input_reruns_only_what_depends_on_it(tmp_path):
    _pack, first = executor_on(tmp_path)
    first.run(chain_workflow())
    _pack, second = executor_on(tmp_path)
    workflow = chain_workflow()
    workflow.set_input("c", "b", 10)
    result = second.run(workflow)
    assert sorted(result.executed) == ["c", "out"]  # b came from the disk
    assert result.ui["out"] == {"value": [12.0]} and sorted(result.cached) == ["b", "out2"]


def test_cheap_intermediate_nodes_stay_in_memory_only(tmp_path):
    _pack, executor = executor_on(tmp_path, min_seconds=3600.0)
    executor.run(chain_workflow())
    disk = executor.cache.disk
    assert disk.stats()["entries"] == 2  # only the requested outputs: out and out2
    pack, second = executor_on(tmp_path, min_seconds=3600.0)
    workflow = chain_workflow()
    workflow.set_input("c", "b", 10)
    result = second.run(workflow)
    assert sorted(result.executed) == ["a", "b", "c", "out"]  # cheap: recomputed
    assert pack.calls["t.value"] == 1


def test_a_node_fed_by_an_expensive_unstorable_node_is_stored(tmp_path):
    class Model:
        """Stands for a model handle (no codec)."""

    loads = []
    now = [0.0]  # a fake clock the nodes advance

    @node("t.load")
    def load(name: String = "m") -> Any:
        """Slow (20 s) and returns a model."""
        loads.append(name)
        now[0] += 20.0
        return Model()

    @node("t.use")
    def use(model: Any, x: Float = 1.0) -> Float:
        """Cheaper than the threshold (10 s), but needs the slow model."""
        now[0] += 10.0
        return x * 2

    @node("t.show", output=True)
    def show(value: Float) -> None:
        """Output."""
        return {"value": [value]}

    def run(min_seconds):
        registry = Registry()
        registry.register_all([load, use, show], plugin="tests")
        cache = OutputCache(disk=DiskCache(tmp_path, 1 << 30, min_seconds))
        from graphflow import Executor

        workflow = make_workflow(
            {
                "m": ("t.load", {}),
                "u": ("t.use", {"model": link("m", "any"), "x": 3.0}),
                "s": ("t.show", {"value": link("u", "float")}),
            }
        )
        return Executor(registry, cache=cache).run(workflow), cache.disk

    import graphflow.executor as executor_module

    real = executor_module.time.perf_counter
    executor_module.time.perf_counter = lambda: now[0]
    try:
        result, disk = run(min_seconds=15.0)
    finally:
        executor_module.time.perf_counter = real
    assert result.ok, result.error
    stats = disk.stats()
    assert stats["skipped"] == 1  # the model (20 s) was worth storing, but has no codec
    # u took 10 s, but recomputing it after a restart needs the 20 s model load too.
    assert stats["entries"] == 2 and stats["writes"] == 2
    workflow_result, _disk = run(min_seconds=15.0)
    assert workflow_result.executed == [] and loads == ["m"]


def test_volatile_and_opted_out_nodes_never_reach_the_disk(tmp_path):
    _pack, executor = executor_on(tmp_path)
    workflow = make_workflow(
        {
            "r": ("t.random", {"value": 1.0}),
            "out": ("t.out", {"value": link("r", "float")}),
            "a": ("t.value", {"value": 2.0}),
            "out2": ("t.out", {"value": link("a", "float")}),
        }
    )
    executor.registry.get("t.out").disk_cache = False  # a node's own opt-out
    executor.run(workflow)
    _pack2, second = executor_on(tmp_path)
    second.registry.get("t.out").disk_cache = False
    result = second.run(workflow)
    assert sorted(result.executed) == ["out", "out2", "r"]
    assert result.cached == ["a"]  # a was stored; the opted-out nodes and r were not


def test_the_disk_tier_is_off_by_default_and_follows_the_settings(tmp_path):
    assert Settings().disk_cache is False
    assert OutputCache(disk=None).disk is None
    from graphflow.settings import use_settings

    with use_settings(Settings(disk_cache=False, data_dir=tmp_path)):
        assert OutputCache().disk is None
    settings = Settings(disk_cache=True, data_dir=tmp_path, disk_cache_bytes=1234)
    with use_settings(settings):
        disk = OutputCache().disk
    assert disk is not None and disk.folder == tmp_path / "cache" and disk.max_bytes == 1234
    assert cache_folder(Settings(disk_cache_dir=tmp_path / "x")) == tmp_path / "x"


# -- a real restart and the CLI ---------------------------------------------------------------


def _cli(env: dict, *argv: str) -> subprocess.CompletedProcess:
    code = "import sys; from graphflow.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_graphflow_run_after_a_restart_executes_nothing(tmp_path):
    workflow = Path(__file__).parents[1] / "workflows" / "hello.json"
    env = {
        **os.environ,
        "GRAPHFLOW_DISK_CACHE": "1",
        "GRAPHFLOW_DATA_DIR": str(tmp_path),
        "GRAPHFLOW_DISK_CACHE_MIN_SECONDS": "0",
    }
    args = ("run", str(workflow), "--quiet", "--json", "--output", str(tmp_path / "out"))
    cold = _cli(env, *args)
    assert cold.returncode == 0, cold.stderr
    warm = _cli(env, *args)
    assert warm.returncode == 0, warm.stderr
    cold_result, warm_result = json.loads(cold.stdout), json.loads(warm.stdout)
    assert len(cold_result["executed"]) > 0
    assert warm_result["executed"] == []
    assert warm_result["ui"] == cold_result["ui"]
    stats = _cli(env, "cache", "stats", "--json")
    counts = json.loads(stats.stdout)
    assert counts["entries"] == len(cold_result["executed"]) and counts["hits"] >= 1


def test_cache_stats_and_clear_commands(tmp_path, capsys):
    disk = DiskCache(tmp_path / "cache", 1 << 30)
    for n in range(3):
        disk.put(key(n), {"v": torch.ones(8)}, None, 1.0)
    disk.get(key(0))
    disk.get(key(9))
    disk.close()
    assert main(["cache", "stats", "--data-dir", str(tmp_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 3 and stats["hits"] == 1 and stats["misses"] == 1
    assert stats["bytes"] == sum(p.stat().st_size for p in disk.objects.glob("*/*"))
    assert main(["cache", "stats", "--data-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "entries    3" in text and "hits 1" in text
    assert main(["cache", "stats", "--data-dir", str(tmp_path), "--verify"]) == 0
    assert "3 valid" in capsys.readouterr().out
    assert main(["cache", "clear", "--data-dir", str(tmp_path)]) == 0
    assert "removed 3 files" in capsys.readouterr().out
    assert main(["cache", "stats", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0


def test_cache_stats_of_a_missing_folder_creates_nothing(tmp_path, capsys):
    assert main(["cache", "stats", "--data-dir", str(tmp_path / "none")]) == 0
    assert "entries    0" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()


def test_a_broken_disk_folder_never_fails_a_run(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    pack = TestPack()
    cache = OutputCache(disk=DiskCache(blocked, 1 << 30))
    result = pack.executor(cache=cache).run(chain_workflow())
    assert result.ok, result.error
    assert result.ui["out"] == {"value": [4.0]}
    assert cache.disk.local["errors"] >= 1 and cache.disk.local["writes"] == 0


def test_a_stale_entry_a_pack_cannot_rebuild_is_removed(tmp_path):
    from dataclasses import dataclass

    from graphflow import value_codec

    @dataclass
    class Old:
        """Version 1 of a pack's type."""

        x: int

    value_codec.register_dataclass(Old, "tests.disk.Renamed")
    disk = store(tmp_path)
    disk.put(KEY, {"v": Old(1)}, None, 1.0)
    codec = value_codec._BY_NAME["tests.disk.Renamed"]

    def refuse(data):
        raise RuntimeError("field x was renamed in version 2")

    value_codec._BY_NAME["tests.disk.Renamed"] = dataclasses.replace(codec, from_data=refuse)
    assert disk.get(KEY) is None and not disk.path_for(KEY).exists()
    assert disk.stats()["corrupt"] == 1
