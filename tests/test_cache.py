"""The output cache: content signatures, partial re-runs, budgets, eviction and spilling."""

from __future__ import annotations

from graphflow import OutputCache
from graphflow.cache import estimate_nbytes
from support import link, make_workflow


def diamond(value=1, tail=0):
    """a → b, a → c, (b, c) → d → out; plus an independent e → out2."""
    return make_workflow(
        {
            "a": ("t.value", {"value": value}),
            "b": ("t.add", {"a": link("a", "float"), "b": 1}),
            "c": ("t.add", {"a": link("a", "float"), "b": 2}),
            "d": ("t.add", {"a": link("b", "float"), "b": link("c", "float")}),
            "out": ("t.out", {"value": link("d", "float")}),
            "e": ("t.value", {"value": tail}),
            "out2": ("t.out", {"value": link("e", "float")}),
        }
    )


def test_identical_rerun_executes_nothing(pack):
    executor = pack.executor()
    first = executor.run(diamond())
    calls_after_first = sum(pack.calls.values())
    second = executor.run(diamond())
    assert second.executed == []
    assert sorted(second.cached) == ["out", "out2"]
    assert sum(pack.calls.values()) == calls_after_first
    assert second.ui == first.ui


def test_changing_one_literal_reruns_exactly_that_node_and_its_descendants(pack):
    executor = pack.executor()
    executor.run(diamond(value=1))
    result = executor.run(diamond(value=5))
    assert sorted(result.executed) == ["a", "b", "c", "d", "out"]
    executor.run(diamond(value=5, tail=0))
    result = executor.run(diamond(value=5, tail=7))
    assert sorted(result.executed) == ["e", "out2"]
    assert sorted(result.cached) == ["out"]


def test_signature_does_not_depend_on_node_ids(pack):
    executor = pack.executor()
    executor.run(
        make_workflow(
            {"x": ("t.value", {"value": 3}), "y": ("t.out", {"value": link("x", "float")})}
        )
    )
    renamed = executor.run(
        make_workflow(
            {"p": ("t.value", {"value": 3}), "q": ("t.out", {"value": link("p", "float")})}
        )
    )
    assert renamed.executed == [] and renamed.cached == ["q"]


def test_not_idempotent_node_always_reruns(pack):
    executor = pack.executor()
    workflow = make_workflow(
        {
            "r": ("t.random", {"value": 1}),
            "b": ("t.add", {"a": link("r", "float")}),
            "out": ("t.out", {"value": link("b", "float")}),
        }
    )
    first = executor.run(workflow)
    second = executor.run(workflow)
    assert "r" in second.executed and pack.calls["t.random"] == 2
    assert first.ui["out"] != second.ui["out"]
    assert sorted(second.executed) == ["b", "out", "r"]


def test_fingerprint_change_forces_rerun(pack):
    executor = pack.executor()
    workflow = make_workflow(
        {"f": ("t.file", {"path": "x"}), "out": ("t.out", {"value": link("f", "float")})}
    )
    executor.run(workflow)
    assert executor.run(workflow).executed == []
    pack.fingerprints["x"] = 2
    result = executor.run(workflow)
    assert sorted(result.executed) == ["f", "out"]
    assert result.ui["out"] == {"value": [2.0]}


def test_failing_fingerprint_fails_the_run_at_that_node(pack):
    def broken(path):
        raise OSError("disk gone")

    pack.registry["t.file"].fingerprint_function = broken
    workflow = make_workflow(
        {"f": ("t.file", {"path": "x"}), "out": ("t.out", {"value": link("f", "float")})}
    )
    result = pack.executor().run(workflow)
    assert result.status == "failed"
    assert (result.error.node, result.error.exception_type) == ("f", "OSError")


def test_node_version_is_part_of_the_signature(pack):
    executor = pack.executor()
    workflow = diamond()
    executor.run(workflow)
    pack.registry["t.add"].version = "1.0.1"
    result = executor.run(workflow)
    assert sorted(result.executed) == ["b", "c", "d", "out"]


def blobs(n, size, tag=""):
    nodes = {}
    for i in range(n):
        nodes[f"b{i}"] = ("t.blob", {"size": size, "tag": f"{tag}{i}"})
        nodes[f"o{i}"] = ("t.out", {"value": link(f"b{i}", "any")})
    return make_workflow(nodes)


def test_budget_evicts_and_the_run_still_succeeds(pack):
    cache = OutputCache(max_bytes=10_000)
    executor = pack.executor(cache=cache)
    result = executor.run(blobs(8, 3000))
    assert result.ok
    assert all(result.outputs[f"o{i}"] == {} for i in range(8))
    assert cache.total_bytes <= 10_000
    assert cache.evictions > 0
    assert sum(1 for i in range(8) if len(result.ui[f"o{i}"]["value"][0]) == 3000) == 8


def test_value_larger_than_budget_is_not_cached_but_run_succeeds(pack):
    cache = OutputCache(max_bytes=1000)
    result = pack.executor(cache=cache).run(blobs(1, 5000))
    assert result.ok and cache.total_bytes <= 1000


def test_eviction_drops_cheapest_to_recompute_per_byte_first():
    cache = OutputCache(max_bytes=3000)
    cache.put("cheap_big", {"v": bytes(1500)}, None, cost=0.001)
    cache.put("dear_big", {"v": bytes(1500)}, None, cost=10.0)
    cache.put("new", {"v": bytes(1000)}, None, cost=0.5)
    assert "cheap_big" not in cache
    assert "dear_big" in cache and "new" in cache


class FakeDeviceTensor:
    """Just enough of a tensor's interface to stand for one on an accelerator."""

    class _Device:
        def __init__(self, kind):
            self.type = kind

        def __str__(self):
            return self.type

    def __init__(self, n, device="cuda"):
        self.n = n
        self.device = self._Device(device)

    def element_size(self):
        return 4

    def nelement(self):
        return self.n

    def to(self, device):
        return FakeDeviceTensor(self.n, str(device))


def test_values_stay_on_their_device_and_are_not_copied():
    cache = OutputCache()
    tensor = FakeDeviceTensor(100)
    cache.put("s", {"latent": tensor}, None, cost=1.0)
    assert cache.get("s").outputs["latent"] is tensor
    assert cache.device_bytes == 400


def test_device_budget_spills_to_cpu_before_dropping_and_restores_on_hit():
    cache = OutputCache(max_bytes=10_000, max_device_bytes=500)
    cache.put("cheap", {"x": FakeDeviceTensor(100)}, None, cost=0.01)
    cache.put("dear", {"x": FakeDeviceTensor(100)}, None, cost=5.0)
    assert cache.spills == 1 and len(cache) == 2
    assert cache.device_bytes == 400
    restored = cache.get("cheap")
    assert restored.outputs["x"].device.type == "cuda"
    assert cache.spills == 2  # "dear" went to the CPU to make room
    assert cache.get("dear").outputs["x"].device.type == "cuda"


def test_estimate_counts_nested_containers_and_device_bytes():
    total, device = estimate_nbytes({"a": [bytes(100), FakeDeviceTensor(10)], "b": "xyz"})
    assert device == 40
    assert total >= 143


def test_clear_empties_the_cache(pack):
    executor = pack.executor()
    executor.run(diamond())
    executor.cache.clear()
    assert len(executor.cache) == 0 and executor.cache.total_bytes == 0
    assert sorted(executor.run(diamond()).executed) == ["a", "b", "c", "d", "e", "out", "out2"]
