"""Large graphs: no recursion anywhere, and work proportional to the number of nodes."""

from __future__ import annotations

import graphflow.cache as cache_module
from graphflow import build_graph
from support import link, make_workflow

N = 10_000


def chain(n: int):
    nodes = {"n0": ("t.value", {"value": 1})}
    for i in range(1, n):
        nodes[f"n{i}"] = ("t.add", {"a": link(f"n{i - 1}", "float"), "b": 1})
    nodes["out"] = ("t.out", {"value": link(f"n{n - 1}", "float")})
    return make_workflow(nodes)


def test_ten_thousand_node_chain_validates_runs_and_reruns_from_cache(pack):
    workflow = chain(N)
    validated = build_graph(workflow, pack.registry)
    assert len(validated.order) == N + 1
    executor = pack.executor()
    first = executor.run(validated)
    assert first.ok, first.error
    assert first.ui["out"] == {"value": [float(N)]}
    assert len(first.executed) == N + 1
    second = executor.run(workflow)
    assert second.executed == [] and second.cached == ["out"]


def test_signature_work_is_one_hash_per_node(pack, monkeypatch):
    calls = []
    original = cache_module.node_signature

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(cache_module, "node_signature", counting)
    executor = pack.executor()
    executor.run(chain(2000))
    assert len(calls) == 2001
    calls.clear()
    executor.run(chain(2000))
    assert len(calls) == 2001
    assert executor.cache.hits == 1  # the cached re-run looked up only the output node


def test_deep_chain_change_at_the_root_reruns_everything_downstream(pack):
    executor = pack.executor()
    executor.run(chain(3000))
    workflow = chain(3000)
    workflow.set_input("n0", "value", 2)
    result = executor.run(workflow)
    assert len(result.executed) == 3001
    assert result.ui["out"] == {"value": [3001.0]}


def test_validating_and_running_leave_no_reference_cycles(pack):
    """Everything a run builds is freed by reference counting when it is dropped: cyclic
    garbage waits for a full collection, which costs ~100 ms with a 10,000-node graph in
    memory (networkx's cached in-degree view and a run's bound-method emitter were cycles)."""
    import gc

    executor = pack.executor()
    executor.run(chain(200))  # imports and first-call caches
    gc.collect()
    gc.disable()
    try:
        validated = build_graph(chain(2000), pack.registry)
        result = executor.run(validated, observers=[lambda event: None])
        assert result.ok
        del validated, result
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0


def test_the_server_collector_setup_freezes_what_is_loaded_and_sets_thresholds():
    import gc

    from graphflow.gcpause import SERVER_THRESHOLDS, tune_for_server

    before = gc.get_threshold()
    try:
        tune_for_server()
        assert gc.get_threshold() == SERVER_THRESHOLDS
        assert gc.get_freeze_count() > 1000  # modules, classes, the registry...
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_our_topological_order_is_networkxs_and_finds_cycles():
    import random

    import networkx as nx

    from graphflow.graph import topological_order

    rng = random.Random(7)
    graph = nx.DiGraph()
    names = [f"n{i}" for i in range(300)]
    rng.shuffle(names)  # node order is not the dependency order
    graph.add_nodes_from(names)
    for _ in range(900):
        a, b = sorted(rng.sample(range(300), 2))
        graph.add_edge(f"n{a}", f"n{b}")
    assert topological_order(graph) == list(nx.topological_sort(graph))
    cyclic = graph.copy()
    cyclic.add_edges_from([("n0", "n299"), ("n299", "n0")])
    assert topological_order(cyclic) is None
    graph.add_edge("n5", "n5")
    assert topological_order(graph) is None
