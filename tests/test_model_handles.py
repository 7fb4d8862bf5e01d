"""Model handles and patches: exact restore, hand-merged equality, identity, residency, locks."""

from __future__ import annotations

import hashlib
import threading

import pytest
import torch

from graphflow.runtime.handles import ModelHandle, ModelHandleError, ModelPart
from graphflow.runtime.models import ModelManager
from graphflow.runtime.patches import (
    FullDelta,
    LowRankDelta,
    ModelPatch,
    PatchError,
    WeightFunction,
)


def small_net(seed: int = 0) -> torch.nn.Module:
    """A linear layer and a convolution, seeded."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5)
    ).eval()


def checksum(module: torch.nn.Module) -> str:
    """blake2b of every tensor of the state dict, by name."""
    digest = hashlib.blake2b()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def lora_like(seed: int = 1, rank: int = 2, alpha: float | None = 1.0) -> ModelPatch:
    """Low-rank changes for the linear and conv weights, a full diff for the conv bias."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    return ModelPatch(
        {
            "2.weight": LowRankDelta(rand(5, rank), rand(rank, 128), alpha=alpha),
            "0.weight": LowRankDelta(rand(8, rank, 1, 1), rand(rank, 3, 3, 3), alpha=alpha),
            "0.bias": FullDelta(rand(8)),
        },
        name=f"lora-{seed}",
    )


def by_hand(net: torch.nn.Module, patch: ModelPatch, strength: float) -> torch.nn.Module:
    """A copy of ``net`` with ``patch`` merged into its weights, written out independently."""
    import copy

    merged = copy.deepcopy(net)
    weights = dict(merged.named_parameters())
    with torch.no_grad():
        for key, change in patch.changes.items():
            weight = weights[key]
            if isinstance(change, LowRankDelta):
                rank = change.down.shape[0]
                scale = change.alpha / rank if change.alpha is not None else 1.0
                product = change.up.reshape(change.up.shape[0], rank) @ change.down.reshape(
                    rank, -1
                )
                weight += (strength * scale) * product.reshape(weight.shape)
            else:
                weight += strength * change.diff.reshape(weight.shape)
    return merged


X = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(9))


# --------------------------------------------------------------------------- patches


def test_patch_then_unpatch_restores_every_weight_bit_for_bit():
    net = small_net()
    before = checksum(net)
    storage = {name: p.data_ptr() for name, p in net.named_parameters()}
    handle = ModelHandle.of(net).with_patches(lora_like(), strength=0.7)
    with handle.on_device("cpu") as patched:
        assert checksum(patched) != before
    assert checksum(net) == before
    # the very same memory is back: the originals were set aside, not written into
    assert {name: p.data_ptr() for name, p in net.named_parameters()} == storage


def test_patched_output_equals_the_delta_merged_by_hand():
    net, patch = small_net(), lora_like(alpha=4.0)
    merged = by_hand(net, patch, strength=0.5)
    with ModelHandle.of(net).with_patches(patch, 0.5).on_device("cpu") as patched:
        for key, tensor in merged.state_dict().items():
            torch.testing.assert_close(patched.state_dict()[key], tensor, rtol=0, atol=1e-7)
        torch.testing.assert_close(patched(X), merged(X), rtol=0, atol=1e-6)


def test_the_unpatched_handle_never_sees_the_patch():
    net = small_net()
    base = ModelHandle.of(net)
    with base.on_device("cpu") as module:
        expected = module(X)
    with base.with_patches(lora_like()).on_device("cpu") as module:
        assert not torch.allclose(module(X), expected)
    with base.on_device("cpu") as module:
        assert torch.equal(module(X), expected)


def test_stacked_patches_apply_in_order_with_their_strengths():
    net, first, second = small_net(), lora_like(1), lora_like(2)
    merged = by_hand(by_hand(net, first, 1.0), second, -0.5)
    handle = ModelHandle.of(net).with_patches(first).with_patches(second, -0.5)
    assert [strength for _, strength in handle.patches] == [1.0, -0.5]
    with handle.on_device("cpu") as patched:
        torch.testing.assert_close(patched(X), merged(X), rtol=0, atol=1e-6)


def test_a_weight_function_patch_gets_a_float32_copy_and_the_strength():
    net = small_net()
    seen = []

    def double(weight, strength):
        seen.append((weight.dtype, strength))
        return weight * (1 + strength)

    patch = ModelPatch({"2.bias": WeightFunction(double, "double-bias")})
    bias = net[2].bias.detach().clone()
    with ModelHandle.of(net).with_patches(patch, 1.0).on_device("cpu") as patched:
        assert torch.equal(patched[2].bias, bias * 2)
    assert seen == [(torch.float32, 1.0)] and torch.equal(net[2].bias, bias)


def test_a_half_precision_model_is_patched_in_float32_and_stored_in_its_dtype():
    net = small_net().half()
    patch = lora_like()
    merged = by_hand(small_net(), patch, 1.0).half()
    with ModelHandle.of(net).with_patches(patch).on_device("cpu") as patched:
        assert patched[2].weight.dtype == torch.float16
        assert (patched[2].weight.float() - merged[2].weight.float()).abs().max() < 1e-3


def test_an_unknown_key_is_a_patch_error_and_changes_nothing():
    net = small_net()
    before = checksum(net)
    patch = ModelPatch({"0.bias": FullDelta(torch.ones(8)), "9.weight": FullDelta(torch.ones(1))})
    taking = ModelHandle.of(net).with_patches(patch).on_device("cpu")
    with pytest.raises(PatchError, match=r"9\.weight"), taking:
        pass
    assert checksum(net) == before


def test_an_unknown_key_error_names_the_closest_weights():
    patch = ModelPatch({"2.weigth": FullDelta(torch.ones(1))})
    taking = ModelHandle.of(small_net()).with_patches(patch).on_device("cpu")
    with pytest.raises(PatchError, match=r"such as: 2\.weight"), taking:
        pass


def test_a_weight_tied_under_two_names_is_restored_exactly_when_both_are_patched():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    net[1].weight = net[0].weight
    before = checksum(net)
    patch = ModelPatch(
        {"0.weight": FullDelta(torch.ones(4, 4)), "1.weight": FullDelta(torch.ones(4, 4))}
    )
    with ModelHandle.of(net).with_patches(patch).on_device("cpu"):
        pass
    assert checksum(net) == before


def test_low_rank_factors_of_different_ranks_are_a_patch_error():
    with pytest.raises(PatchError, match=r"one rank; got up \[5, 2\] and down \[3, 128\]"):
        LowRankDelta(torch.ones(5, 2), torch.ones(3, 128))


def test_a_change_of_the_wrong_size_is_a_patch_error():
    patch = ModelPatch({"2.weight": LowRankDelta(torch.ones(5, 1), torch.ones(1, 7))})
    taking = ModelHandle.of(small_net()).with_patches(patch).on_device("cpu")
    with pytest.raises(PatchError, match=r"2\.weight has shape \[5, 128\]"), taking:
        pass


# --------------------------------------------------------------------------- identity


def test_equal_patches_give_equal_identities():
    base = ModelHandle.of(small_net())
    assert lora_like(1).identity == lora_like(1).identity
    assert (
        base.with_patches(lora_like(1), 0.5).identity
        == base.with_patches(lora_like(1), 0.5).identity
    )


def test_different_patches_or_strengths_give_different_identities():
    base = ModelHandle.of(small_net())
    identities = {
        base.identity,
        base.with_patches(lora_like(1)).identity,
        base.with_patches(lora_like(2)).identity,
        base.with_patches(lora_like(1), 0.5).identity,
        base.with_patches(lora_like(1, alpha=2.0)).identity,
        base.with_patches(lora_like(1)).with_patches(lora_like(2)).identity,
        base.with_patches(lora_like(2)).with_patches(lora_like(1)).identity,
    }
    assert len(identities) == 7


def test_the_identity_appears_in_the_repr():
    handle = ModelHandle.of(small_net(), "net").with_patches(lora_like())
    assert handle.identity[:12] in repr(handle) and "1 patch" in repr(handle)


# --------------------------------------------------------------------------- the manager


def weights_file(tmp_path, name: str = "net.bin"):
    path = tmp_path / name
    if not path.exists():  # rewriting it would change its version, hence the model's key
        path.write_bytes(b"weights")
    return path


def test_loading_twice_returns_the_same_handle_and_identity_survives_a_reload(tmp_path):
    manager = ModelManager()
    path = weights_file(tmp_path)
    first = manager.load("net", path, small_net)
    assert manager.load("net", path, small_net) is first and manager.loads == 1
    manager.free()
    again = manager.load("net", path, small_net)
    assert again is not first and again.identity == first.identity and manager.loads == 2


def test_components_are_handles_of_their_own_and_extras_stay_plain(tmp_path):
    manager = ModelManager()
    loaded = manager.load(
        "pair", weights_file(tmp_path), lambda: {"a": small_net(1), "b": small_net(2), "tok": "t"}
    )
    assert loaded.components == ("a", "b") and dict(loaded.extras) == {"tok": "t"}
    assert loaded.component("a") is loaded.component("a")
    assert loaded.component("a").identity != loaded.component("b").identity
    b_before = checksum(loaded.component("b").unpatched)
    with loaded.component("a").with_patches(lora_like()).on_device("cpu"):
        assert checksum(loaded.component("b").unpatched) == b_before
    with pytest.raises(ModelHandleError, match=r"use \.component"):
        loaded.with_patches(lora_like())


def test_a_model_part_hands_out_its_view_and_patches_its_module(tmp_path):
    class Runner:
        def __init__(self, net):
            self.net = net

        def __call__(self, x):
            return self.net(x)

    net = small_net()
    merged = by_hand(net, lora_like(), 1.0)
    handle = ModelManager().load(
        "wrapped", weights_file(tmp_path), lambda: ModelPart(net, Runner(net))
    )
    assert isinstance(handle.unpatched, Runner)
    with handle.with_patches(lora_like()).on_device("cpu") as runner:
        torch.testing.assert_close(runner(X), merged(X), rtol=0, atol=1e-6)


def test_the_budget_offloads_the_least_recently_used_part(tmp_path):
    size = sum(p.numel() * p.element_size() for p in small_net().parameters())
    manager = ModelManager(max_bytes=int(size * 1.5))
    first = manager.load("net", weights_file(tmp_path, "a"), small_net)
    manager.load("net", weights_file(tmp_path, "b"), small_net)
    assert manager.stats()["resident"] == 1 and manager.resident_bytes() == size
    assert manager.resident_labels() == ["net b"]  # "a", used least recently, went
    with first.on_device("cpu"):  # taken again: counted again, the other one goes
        assert manager.stats()["resident"] == 1 and manager.resident_bytes() == size
        assert manager.load("net", weights_file(tmp_path, "a"), small_net) is first
    assert manager.loads == 2


def test_loading_a_dropped_model_that_a_handle_still_holds_returns_that_handle(tmp_path):
    size = sum(p.numel() * p.element_size() for p in small_net().parameters())
    manager = ModelManager(max_bytes=int(size * 1.5))
    first = manager.load("net", weights_file(tmp_path, "a"), small_net)
    manager.load("net", weights_file(tmp_path, "b"), small_net)  # drops "a"
    assert manager.load("net", weights_file(tmp_path, "a"), small_net) is first
    assert manager.loads == 2


def test_a_model_reloaded_after_free_and_its_old_handle_are_counted_apart(tmp_path):
    size = sum(p.numel() * p.element_size() for p in small_net().parameters())
    manager = ModelManager()
    first = manager.load("net", weights_file(tmp_path), small_net)
    manager.free()
    again = manager.load("net", weights_file(tmp_path), small_net)  # same key, new weights
    with first.on_device("cpu"), again.on_device("cpu"):
        assert manager.resident_bytes() == 2 * size


def test_a_part_being_computed_with_is_never_offloaded(tmp_path):
    size = sum(p.numel() * p.element_size() for p in small_net().parameters())
    manager = ModelManager(max_bytes=int(size * 1.5))
    first = manager.load("net", weights_file(tmp_path, "a"), small_net)
    with first.on_device("cpu"):
        manager.load("net", weights_file(tmp_path, "b"), small_net)
        assert manager.resident_bytes() == 2 * size  # over budget rather than pulled away
    manager.load("net", weights_file(tmp_path, "c"), small_net)
    assert manager.resident_bytes() == size


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_offloaded_model_is_moved_back_to_the_device_it_is_taken_on(tmp_path):
    size = sum(p.numel() * p.element_size() for p in small_net().parameters())
    manager = ModelManager(max_bytes=int(size * 1.5))
    first = manager.load("net", weights_file(tmp_path, "a"), lambda: small_net().cuda())
    manager.load("net", weights_file(tmp_path, "b"), lambda: small_net().cuda())
    assert first.device.type == "cpu"  # pushed out by the budget
    with first.on_device("cuda") as module:
        assert next(module.parameters()).device.type == "cuda"
        assert module(X.cuda()).device.type == "cuda"


# --------------------------------------------------------------------------- takes and threads


def test_the_same_thread_cannot_take_two_patch_states_of_one_base_at_once():
    base = ModelHandle.of(small_net())
    patched = base.with_patches(lora_like()).on_device("cpu")
    with (
        base.on_device("cpu"),
        base.on_device("cpu"),  # the same state nests
        pytest.raises(ModelHandleError, match="already taken by this thread"),
        patched,
    ):
        pass


def test_two_handles_made_of_one_module_share_its_take_state():
    net = small_net()
    before = checksum(net)
    patched = ModelHandle.of(net).with_patches(lora_like()).on_device("cpu")
    with (
        patched,
        pytest.raises(ModelHandleError, match="already taken by this thread"),
        ModelHandle.of(net).on_device("cpu"),
    ):
        pass
    assert checksum(net) == before


def test_another_thread_waits_until_the_patched_take_is_over():
    net = small_net()
    base = ModelHandle.of(net)
    with base.on_device("cpu") as module:
        expected = module(X)
    inside, release, order, seen = threading.Event(), threading.Event(), [], []

    def patched_user():
        with base.with_patches(lora_like()).on_device("cpu"):
            inside.set()
            release.wait(5)
            order.append("patched done")

    def plain_user():
        inside.wait(5)
        with base.on_device("cpu") as module:
            order.append("plain taken")
            seen.append(module(X))

    threads = [threading.Thread(target=patched_user), threading.Thread(target=plain_user)]
    for thread in threads:
        thread.start()
    inside.wait(5)
    threads[1].join(0.2)  # the plain user is blocked while the patch is applied
    assert order == []
    release.set()
    for thread in threads:
        thread.join(5)
    assert order == ["patched done", "plain taken"]
    assert torch.equal(seen[0], expected)


def test_extras_travel_with_the_module_and_through_patches():
    net = small_net()
    base = ModelHandle.of(net)
    described = base.with_extras({"scheduler": "schedule-a"})
    patched = described.with_patches(lora_like(), strength=0.5)
    assert base.extras == {}
    assert described.extras == {"scheduler": "schedule-a"}
    assert patched.extras == {"scheduler": "schedule-a"}
    assert described.identity == base.identity  # facts, not weights
    assert patched.identity != described.identity
    with described.on_device("cpu") as module:
        assert module is net


def test_components_see_their_composite_extras():
    handle = ModelHandle.of({"unet": small_net(), "scheduler": "schedule-b"})
    unet = handle.component("unet")
    assert unet is handle.component("unet")
    assert unet.extras == {"scheduler": "schedule-b"} == dict(handle.extras)
