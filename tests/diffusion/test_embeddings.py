"""Textual-inversion embeddings: files in models/embeddings used as ``embedding:NAME``."""

from __future__ import annotations

import copy
import logging
import shutil

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import loaded_checkpoint

from gf_diffusion.embeddings import EmbeddingError
from graphflow import Executor, load_plugins
from graphflow.runtime.models import ModelFileError
from support import link, make_workflow

WIDTH = 32  # the tiny encoders' width


def vectors(n, seed, width=WIDTH):
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def setup(models_root):
    """Both tiny checkpoints loaded, and an embeddings folder with one file of each kind."""
    monkey = pytest.MonkeyPatch()
    monkey.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkey.setenv("GRAPHFLOW_DEVICE", "cpu")
    folder = models_root / "embeddings"
    (folder / "sub").mkdir(parents=True)
    files = {
        "style": vectors(2, 1),
        "plain": vectors(1, 2),
        "clip_l": vectors(1, 3),
        "clip_g": vectors(1, 4),
    }
    torch.save(
        {"string_to_token": {"*": 265}, "string_to_param": {"*": files["style"]}, "step": 10},
        folder / "style.pt",
    )
    save_file({"emb_params": files["plain"]}, str(folder / "plain.safetensors"))
    save_file(
        {"clip_l": files["clip_l"], "clip_g": files["clip_g"]}, str(folder / "xl.safetensors")
    )
    save_file({"emb_params": vectors(1, 5, width=16)}, str(folder / "narrow.safetensors"))
    save_file({"a": vectors(1, 6), "b": vectors(1, 7)}, str(folder / "sub" / "lora.safetensors"))
    registry = load_plugins().registry
    parts = {"registry": registry, "vectors": files}
    for name in ("tiny-sd", "tiny-sdxl"):
        parts[name] = loaded_checkpoint(registry, name)
    yield parts
    shutil.rmtree(folder)
    monkey.undo()


def tokenize(setup, text, name="tiny-sd", **options):
    fn = setup["registry"]["diffusion.tokenize"].function
    return fn(text=text, tokenizer=setup[name]["tokenizer"], **options)


def encode(setup, text, name="tiny-sd", **options):
    tokens = tokenize(setup, text, name, **options).outputs
    fn = setup["registry"]["diffusion.encode_text"].function
    return fn(tokens=tokens, text_encoder=setup[name]["text_encoder"]).entries[0]


def fed_by_hand(setup, text_ids, rows, name="tiny-sd", index=0, sdxl=False):
    """A copy of the encoder whose spare token ids carry the vectors, fed those ids."""
    encoder = copy.deepcopy(setup[name]["text_encoder"].encoders[index].unpatched)
    tok = setup[name]["tokenizer"].tokenizers[index]
    ids = list(text_ids)
    spare = 1  # an id the prompts here do not use
    with torch.no_grad():
        for position, vector in rows:
            encoder.get_input_embeddings().weight[spare] = vector
            ids[position] = spare
            spare += 1
        ids += [tok.pad_token_id] * (77 - len(ids))
        out = encoder(torch.tensor([ids]), output_hidden_states=sdxl)
    return out.hidden_states[-2] if sdxl else out[0]


def ids_of(setup, word, name="tiny-sd"):
    return setup[name]["tokenizer"].tokenizers[0](word, add_special_tokens=False).input_ids


def test_a1111_pt_embedding_vectors_land_at_their_positions(setup):
    tok = setup["tiny-sd"]["tokenizer"].tokenizers[0]
    style = setup["vectors"]["style"]
    ids = [tok.bos_token_id, *ids_of(setup, "a"), 0, 0, *ids_of(setup, "cat"), tok.eos_token_id]
    expected = fed_by_hand(setup, ids, [(2, style[0]), (3, style[1])])
    embeds = encode(setup, "a embedding:style cat", allow_pickle=True).embeds
    assert torch.allclose(embeds, expected, atol=1e-6)


def test_shared_encoder_is_left_unchanged(setup):
    encoder = setup["tiny-sd"]["text_encoder"].encoders[0].unpatched
    table = encoder.get_input_embeddings()
    before = table.weight.clone()
    encode(setup, "embedding:plain")
    assert torch.equal(table.weight, before)
    assert not table._forward_hooks
    assert torch.equal(encode(setup, "a cat").embeds, encoder(torch.tensor([_plain(setup)]))[0])


def _plain(setup):
    tok = setup["tiny-sd"]["tokenizer"].tokenizers[0]
    return tok("a cat", padding="max_length", max_length=77).input_ids


def test_embedding_named_with_or_without_extension_or_folder(setup):
    bare = encode(setup, "embedding:plain").embeds
    assert torch.equal(encode(setup, "embedding:plain.safetensors").embeds, bare)
    tok = setup["tiny-sd"]["tokenizer"].tokenizers[0]
    ids = [tok.bos_token_id, 0, tok.eos_token_id]
    expected = fed_by_hand(setup, ids, [(1, setup["vectors"]["plain"][0])])
    assert torch.allclose(bare, expected, atol=1e-6)


def test_pickle_embedding_needs_the_opt_in(setup):
    with pytest.raises(ModelFileError, match="allow_pickle"):
        tokenize(setup, "embedding:style")


def test_sdxl_file_gives_each_encoder_its_own_vectors(setup):
    entry = encode(setup, "embedding:xl cat", name="tiny-sdxl")
    tok = setup["tiny-sdxl"]["tokenizer"].tokenizers[0]
    ids = [tok.bos_token_id, 0, *ids_of(setup, "cat", "tiny-sdxl"), tok.eos_token_id]
    first = fed_by_hand(setup, ids, [(1, setup["vectors"]["clip_l"][0])], "tiny-sdxl", 0, True)
    second = fed_by_hand(setup, ids, [(1, setup["vectors"]["clip_g"][0])], "tiny-sdxl", 1, True)
    assert torch.allclose(entry.embeds, torch.cat([first, second], dim=-1), atol=1e-6)


def test_unknown_embedding_is_a_warning_and_left_out(setup, caplog):
    with caplog.at_level(logging.WARNING, logger="graphflow.diffusion"):
        result = tokenize(setup, "a embedding:nope cat")
    assert result.ui["warnings"] == ["embedding:nope does not exist in models/embeddings, ignored"]
    assert "embedding:nope" in caplog.text
    assert torch.equal(encode(setup, "a embedding:nope cat").embeds, encode(setup, "a cat").embeds)


def test_width_mismatch_is_an_error_naming_both_sizes(setup):
    with pytest.raises(EmbeddingError, match=r"width 16 .* takes width 32"):
        encode(setup, "embedding:narrow")


def test_file_that_is_not_an_embedding_is_an_error(setup):
    with pytest.raises(EmbeddingError, match="not a textual-inversion embedding"):
        tokenize(setup, "embedding:lora")


def test_weighted_embedding_shows_its_weight_and_is_weighted(setup):
    ui = tokenize(setup, "(embedding:style:1.2) cat", allow_pickle=True).ui
    assert ui["tokens"][1:3] == ["embedding:style#0", "embedding:style#1"]
    assert ui["weights"][:4] == [1.0, 1.2, 1.2, 1.0]
    plain = encode(setup, "embedding:style cat", allow_pickle=True).embeds
    empty = encode(setup, "").embeds
    weighted = encode(setup, "(embedding:style:1.2) cat", allow_pickle=True).embeds
    expected = (plain[0, 1:3] - empty[0, 1:3]) * 1.2 + empty[0, 1:3]
    assert torch.allclose(weighted[0, 1:3], expected, atol=1e-6)


def test_bare_names_only_when_opted_in(setup):
    assert tokenize(setup, "plain").ui["tokens"][1] != "embedding:plain"
    assert tokenize(setup, "plain", bare_embedding_names=True).ui["tokens"][1] == "embedding:plain"


def test_trailing_comma_after_an_embedding_is_text(setup):
    ui = tokenize(setup, "embedding:plain, cat").ui
    assert ui["tokens"][1:3] == ["embedding:plain", ",</w>"]


def test_adding_the_named_embedding_file_reruns_the_tokenize_node(setup, models_root):
    executor = Executor(setup["registry"])
    workflow = make_workflow(
        {
            "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
            "tokens": (
                "diffusion.tokenize",
                {"text": "embedding:later cat", "tokenizer": link("ckpt", "tokenizer")},
            ),
            "show": ("core.show", {"value": link("tokens", "tokens")}),
        }
    )
    first = executor.run(workflow, outputs=["tokens"])
    assert first.ok, first.error
    assert first.outputs["tokens"]["tokens"].per_tokenizer[0].embeddings == []
    target = models_root / "embeddings" / "later.safetensors"
    save_file({"emb_params": vectors(1, 8)}, str(target))
    try:
        second = executor.run(workflow, outputs=["tokens"])
        assert "tokens" in second.executed
        assert len(second.outputs["tokens"]["tokens"].per_tokenizer[0].embeddings) == 1
    finally:
        target.unlink()


def test_pickle_embedding_without_opt_in_is_a_validation_error(setup):
    from graphflow import ErrorCode, validate

    def workflow(**options):
        return make_workflow(
            {
                "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
                "tokens": (
                    "diffusion.tokenize",
                    {
                        "text": "a embedding:style",
                        "tokenizer": link("ckpt", "tokenizer"),
                        **options,
                    },
                ),
                "show": ("core.show", {"value": link("tokens", "tokens")}),
            }
        )

    _, errors = validate(workflow(), setup["registry"])
    assert [(e.code, e.input) for e in errors] == [(ErrorCode.INVALID_INPUT, "allow_pickle")]
    assert "style.pt is a pickle file" in errors[0].message
    _, errors = validate(workflow(allow_pickle=True), setup["registry"])
    assert errors == []


def test_embedding_hook_is_removed_when_the_encoder_fails(setup, monkeypatch):
    import gf_diffusion.text as text

    def failing(*args, **kwargs):
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(text, "_hidden", failing)
    with pytest.raises(RuntimeError, match="encoder failed"):
        encode(setup, "embedding:plain cat")
    table = setup["tiny-sd"]["text_encoder"].encoders[0].unpatched.get_input_embeddings()
    assert not table._forward_hooks
    assert text._INJECTING.get() is None


def test_embedding_vectors_reach_only_the_calling_thread(setup):
    import threading

    from gf_diffusion.embeddings import TextualInversion
    from gf_diffusion.text import _injected
    from gf_diffusion.values import EmbeddingSlot

    encoder = setup["tiny-sd"]["text_encoder"].encoders[0].unpatched
    ids = torch.tensor([_plain(setup)])
    with torch.no_grad():
        plain = encoder(ids)[0]
        inversion = TextualInversion("t", {"*": vectors(1, 9)})
        seen = {}
        with _injected(encoder, [EmbeddingSlot(0, 1, inversion, 0)], 0, 1):
            here = encoder(ids)[0]
            other = threading.Thread(target=lambda: seen.update(out=encoder(ids)[0]))
            other.start()
            other.join()
    assert not torch.equal(here, plain)
    assert torch.equal(seen["out"], plain)


def test_replacing_a_bare_named_embedding_file_reruns_the_tokenize_node(setup, models_root):
    executor = Executor(setup["registry"])
    inputs = {"text": "barefile cat", "bare_embedding_names": True}
    workflow = make_workflow(
        {
            "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
            "tokens": ("diffusion.tokenize", {**inputs, "tokenizer": link("ckpt", "tokenizer")}),
            "show": ("core.show", {"value": link("tokens", "tokens")}),
        }
    )
    target = models_root / "embeddings" / "barefile.safetensors"
    save_file({"emb_params": vectors(1, 10)}, str(target))
    try:
        first = executor.run(workflow, outputs=["tokens"])
        assert first.ok, first.error
        assert len(first.outputs["tokens"]["tokens"].per_tokenizer[0].embeddings) == 1
        save_file({"emb_params": vectors(2, 11)}, str(target))
        second = executor.run(workflow, outputs=["tokens"])
        assert "tokens" in second.executed
        assert len(second.outputs["tokens"]["tokens"].per_tokenizer[0].embeddings) == 2
    finally:
        target.unlink()


def test_bare_named_pickle_embedding_without_opt_in_is_a_validation_error(setup):
    from graphflow import ErrorCode, validate

    workflow = make_workflow(
        {
            "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
            "tokens": (
                "diffusion.tokenize",
                {
                    "text": "a style",
                    "bare_embedding_names": True,
                    "tokenizer": link("ckpt", "tokenizer"),
                },
            ),
            "show": ("core.show", {"value": link("tokens", "tokens")}),
        }
    )
    _, errors = validate(workflow, setup["registry"])
    assert [(e.code, e.input) for e in errors] == [(ErrorCode.INVALID_INPUT, "allow_pickle")]
