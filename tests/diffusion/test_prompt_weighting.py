"""Prompts as users write them: ComfyUI weights, long prompts in chunks, BREAK."""

from __future__ import annotations

import pytest
import torch
from tiny_models import loaded_checkpoint

from gf_diffusion.prompt_syntax import (
    BREAK,
    EmbeddingRef,
    Text,
    chunk_groups,
    parse_weights,
    prompt_words,
)
from graphflow import load_plugins


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("a red cat", [("a red cat", 1.0)]),
        ("(cat)", [("cat", 1.1)]),
        ("((cat))", [("cat", 1.1 * 1.1)]),
        ("[cat]", [("cat", 1 / 1.1)]),
        ("[[cat]]", [("cat", 1 / 1.1 / 1.1)]),
        ("(cat:1.3)", [("cat", 1.3)]),
        ("(cat: 0.5 )", [("cat", 0.5)]),
        ("(cat:.5)", [("cat", 0.5)]),
        ("(cat:-1)", [("cat", -1.0)]),
        ("(cat:2e-1)", [("cat", 0.2)]),
        ("((cat:1.5) dog)", [("cat", 1.5), (" dog", 1.1)]),  # an explicit weight sets
        ("((cat):0.5)", [("cat", 0.5 * 1.1)]),  # groups inside it multiply
        ("[(cat)]", [("cat", 1 / 1.1 * 1.1)]),
        ("a (b) c", [("a ", 1.0), ("b", 1.1), (" c", 1.0)]),
        ("a(b)c", [("a", 1.0), ("b", 1.1), ("c", 1.0)]),
        ("\\(cat\\)", [("(cat)", 1.0)]),
        ("\\[cat\\]", [("[cat]", 1.0)]),
        ("(\\(cat\\):1.2)", [("(cat)", 1.2)]),
        ("(cat:big)", [("cat:big", 1.1)]),  # not a number: text
        ("(cat:nan)", [("cat:nan", 1.1)]),
        ("(:1.2)", [(":1.2", 1.1)]),  # nothing before the colon (as ComfyUI)
        ("(a (b:1.2))", [("a ", 1.1), ("b", 1.2)]),
        ("(a:1.2 (b))", [("a:1.2 ", 1.1), ("b", 1.1 * 1.1)]),
        ("()", []),
        ("", []),
        # unbalanced or mismatched brackets are literal text; the rest still parses
        ("a (cat", [("a (cat", 1.0)]),
        ("a) (cat)", [("a) ", 1.0), ("cat", 1.1)]),
        ("(cat]", [("(cat]", 1.0)]),
        ("x (a]) y", [("x ", 1.0), ("a]", 1.1), (" y", 1.0)]),
        ("((cat)", [("(", 1.0), ("cat", 1.1)]),
        ("[cat", [("[cat", 1.0)]),
        ("cat\\", [("cat\\", 1.0)]),
    ],
)
def test_parse_weights_table(text, spans):
    got = parse_weights(text)
    assert [s for s, _ in got] == [s for s, _ in spans]
    assert [w for _, w in got] == pytest.approx([w for _, w in spans])


def test_prompt_words_keep_each_span_whole_and_cut_it_at_break():
    assert prompt_words("a (red\ncat) BREAK dog BREAKFAST break") == [
        Text("a", 1.0),
        Text("red\ncat", 1.1),
        BREAK,
        Text("dog BREAKFAST break", 1.0),
    ]


def test_prompt_words_find_embeddings_with_weights_and_trailing_commas():
    exists = {"foo", "bar"}.__contains__
    pieces = prompt_words("x embedding:foo, (embedding:bar:1.2) y embedding:nope z", exists)
    assert pieces == [
        Text("x", 1.0),
        EmbeddingRef("foo", 1.0),
        Text(",", 1.0),
        EmbeddingRef("bar", 1.2),
        Text("y", 1.0),
        EmbeddingRef("nope", 1.0),
        Text("z", 1.0),
    ]


def test_embedding_prefix_inside_a_word_is_text():
    assert prompt_words("a,embedding:foo") == [Text("a,embedding:foo", 1.0)]


def test_bare_embedding_names_only_when_given():
    assert prompt_words("a foo,") == [Text("a foo,", 1.0)]
    assert prompt_words("a foo,", bare_names=["foo"]) == [
        Text("a", 1.0),
        EmbeddingRef("foo", 1.0),
        Text(",", 1.0),
    ]


@pytest.mark.parametrize(
    ("lengths", "capacity", "chunks"),
    [
        ([], 5, [0]),
        ([2, 2], 5, [4]),
        ([3, 3], 5, [3, 3]),  # a short run moves whole to the next chunk
        ([3, 9], 5, [5, 5, 2]),  # a run of 8+ tokens is split at the boundary
        ([5, 5], 5, [5, 5]),
        ([12], 5, [5, 5, 2]),
        ([7], 5, [5, 2]),  # a short run longer than a chunk is split anyway
    ],
)
def test_chunk_groups_keeps_short_runs_whole(lengths, capacity, chunks):
    groups = [[n] * n for n in lengths]
    assert [len(c) for c in chunk_groups(groups, capacity)] == chunks


def test_chunk_groups_break_starts_a_chunk_and_never_an_empty_one():
    groups = [BREAK, [1], BREAK, BREAK, [2, 2], BREAK]
    assert chunk_groups(groups, 5) == [[1], [2, 2]]


# --- encoding on the tiny models ------------------------------------------------------


@pytest.fixture(scope="module")
def parts(models_root):
    monkey = pytest.MonkeyPatch()
    monkey.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkey.setenv("GRAPHFLOW_DEVICE", "cpu")
    registry = load_plugins().registry
    out = {}
    for name in ("tiny-sd", "tiny-sdxl"):
        out[name] = loaded_checkpoint(registry, name)
    out["registry"] = registry
    yield out
    monkey.undo()


def tokenize(parts, text, name="tiny-sd", **options):
    fn = parts["registry"]["diffusion.tokenize"].function
    return fn(text=text, tokenizer=parts[name]["tokenizer"], **options)


def encode(parts, text, name="tiny-sd", **options):
    tokens = tokenize(parts, text, name).outputs
    fn = parts["registry"]["diffusion.encode_text"].function
    return fn(tokens=tokens, text_encoder=parts[name]["text_encoder"], **options).entries[0]


def by_hand(parts, ids, name="tiny-sd", index=0):
    """The encoder's last hidden state for explicit token ids (one row per chunk)."""
    encoder = parts[name]["text_encoder"].encoders[index].unpatched
    with torch.no_grad():
        return encoder(torch.tensor(ids))[0]


def today_ids(parts, text, name="tiny-sd"):
    """What the tokenize node gave before weights and chunks: one padded, cut row."""
    tok = parts[name]["tokenizer"].tokenizers[0]
    return tok(text, padding="max_length", max_length=77, truncation=True).input_ids


@pytest.mark.parametrize("text", ["a red cat", "", "(a red cat:1.0)", "a, red cat!"])
def test_prompt_with_weight_1_everywhere_encodes_exactly_as_before(parts, text):
    plain = text.replace("(", "").replace(":1.0)", "")
    assert torch.equal(encode(parts, text).embeds, by_hand(parts, [today_ids(parts, plain)]))


def test_weighted_tokens_move_from_the_empty_prompt_by_their_weight(parts):
    z = by_hand(parts, [today_ids(parts, "a red cat")])
    z_empty = by_hand(parts, [today_ids(parts, "")])
    weighted = encode(parts, "a (red:1.5) cat").embeds
    red = [2, 3]  # <bos> a</w> re d</w> cat</w> <eos>
    expected = z.clone()
    expected[0, red] = (z[0, red] - z_empty[0, red]) * 1.5 + z_empty[0, red]
    assert torch.allclose(weighted, expected, atol=1e-6)
    others = [i for i in range(77) if i not in red]
    assert torch.equal(weighted[0, others], z[0, others])


def test_tokenize_shows_weights_beside_tokens(parts):
    ui = tokenize(parts, "a (red:1.5) [cat]").ui
    assert ui["tokens"] == ["<|startoftext|>", "a</w>", "re", "d</w>", "cat</w>", "<|endoftext|>"]
    assert ui["weights"] == [1.0, 1.0, 1.5, 1.5, round(1 / 1.1, 4), 1.0]
    assert ui["chunks"] == 1


def test_long_prompt_is_the_concatenation_of_its_chunk_encodings(parts):
    tok = parts["tiny-sd"]["tokenizer"].tokenizers[0]
    cat = tok("cat", add_special_tokens=False).input_ids[0]
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    first = [bos, *[cat] * 75, eos]
    second = [bos, *[cat] * 25, eos, *[pad] * 50]
    tokens = tokenize(parts, "cat " * 100)
    assert "warnings" not in tokens.ui and tokens.ui["chunks"] == 2
    assert tokens.outputs.per_tokenizer[0].input_ids.tolist() == [first, second]
    expected = torch.cat([by_hand(parts, [first]), by_hand(parts, [second])], dim=1)
    embeds = encode(parts, "cat " * 100).embeds
    assert embeds.shape == (1, 154, 32)
    assert torch.allclose(embeds, expected, atol=1e-6)


def test_break_starts_a_new_chunk(parts):
    embeds = encode(parts, "a red BREAK cat").embeds
    expected = torch.cat(
        [by_hand(parts, [today_ids(parts, "a red")]), by_hand(parts, [today_ids(parts, "cat")])],
        dim=1,
    )
    assert embeds.shape == (1, 154, 32)
    assert torch.allclose(embeds, expected, atol=1e-6)


def test_sdxl_chunks_both_encoders_and_pools_the_first_chunk(parts):
    entry = encode(parts, "cat " * 80 + "dog", name="tiny-sdxl")
    assert entry.embeds.shape == (1, 154, 64)
    tokens = tokenize(parts, "cat " * 80 + "dog", name="tiny-sdxl").outputs
    rows = tokens.per_tokenizer[1].input_ids
    second = parts["tiny-sdxl"]["text_encoder"].encoders[1].unpatched
    with torch.no_grad():
        out = second(rows, output_hidden_states=True)
    assert torch.allclose(entry.pooled, out[0][:1], atol=1e-6)
    assert torch.allclose(entry.embeds[0, 77:, 32:], out.hidden_states[-2][1], atol=1e-6)


def test_bert_tokenizer_chunks_at_its_own_maximum():
    from transformers import AutoTokenizer

    from gf_diffusion.embedded import EMBEDDED_ROOT
    from gf_diffusion.text import tokenize as tokenize_node
    from gf_diffusion.values import Tokenizers

    tok = AutoTokenizer.from_pretrained(EMBEDDED_ROOT / "graphflow-tiny" / "tokenizer")
    assert tok.model_max_length == 16
    result = tokenize_node.function(text="red " * 20, tokenizer=Tokenizers([tok]))
    rows = result.outputs.per_tokenizer[0].input_ids.tolist()
    red = tok("red", add_special_tokens=False).input_ids[0]
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert rows == [[cls, *[red] * 14, sep], [cls, *[red] * 6, sep, *[tok.pad_token_id] * 8]]
    plain = tokenize_node.function(text="a red shirt", tokenizer=Tokenizers([tok]))
    today = tok("a red shirt", padding="max_length", max_length=16, truncation=True)
    assert plain.outputs.per_tokenizer[0].input_ids.tolist() == [today.input_ids]
    assert plain.outputs.per_tokenizer[0].attention_mask.tolist() == [today.attention_mask]


def sample(parts, positive, negative, seed=3):
    registry, sd = parts["registry"], parts["tiny-sd"]
    latent = registry["diffusion.empty_latent"].function(width=32, height=32, vae=sd["vae"])
    sched = registry["diffusion.scheduler"].function(scheduler=sd["scheduler"], name="ddim")
    return (
        registry["diffusion.sampler"]
        .function(
            model=sd["model"],
            positive=positive,
            negative=negative,
            latent=latent,
            scheduler=sched,
            seed=seed,
            steps=2,
        )
        .samples
    )


def test_sampler_takes_positive_and_negative_of_different_chunk_counts(parts):
    from gf_diffusion.values import Conditioning

    long = Conditioning([encode(parts, "cat " * 100)])
    empty = Conditioning([encode(parts, "")])
    out = sample(parts, long, empty)
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()


def test_a_prompt_repeated_on_the_token_axis_guides_the_same(parts):
    from gf_diffusion.values import Conditioning, ConditioningEntry

    cat = encode(parts, "a cat")
    empty = encode(parts, "")
    twice = ConditioningEntry(torch.cat([empty.embeds, empty.embeds], dim=1))
    one = sample(parts, Conditioning([cat]), Conditioning([empty]))
    two = sample(parts, Conditioning([cat]), Conditioning([twice]))
    # float32 attention sums a repeated sequence in another order: ~2e-5 on values ~3
    assert torch.allclose(one, two, atol=1e-4)


def test_long_run_of_text_is_cut_exactly_every_75_tokens(parts):
    tok = parts["tiny-sd"]["tokenizer"].tokenizers[0]
    red = tok("red", add_special_tokens=False).input_ids  # two tokens: re, d</w>
    rows = tokenize(parts, "red " * 40).outputs.per_tokenizer[0].input_ids.tolist()
    content = (red * 40)[:75], (red * 40)[75:]
    assert rows[0][1:76] == content[0]  # the 38th "red" is split across the chunks (ComfyUI)
    assert rows[1][1 : 1 + len(content[1])] == content[1]


def test_average_of_prompts_of_different_lengths_cuts_or_pads_the_second(parts):
    average = parts["registry"]["diffusion.average_conditioning"].function
    from gf_diffusion.values import Conditioning

    short, long = encode(parts, "a cat"), encode(parts, "cat " * 100)
    cut = average(a=Conditioning([short]), b=Conditioning([long]), weight_a=0.25).entries[0]
    assert torch.allclose(cut.embeds, 0.25 * short.embeds + 0.75 * long.embeds[:, :77])
    padded = average(a=Conditioning([long]), b=Conditioning([short]), weight_a=0.25).entries[0]
    assert torch.allclose(padded.embeds[:, :77], 0.25 * long.embeds[:, :77] + 0.75 * short.embeds)
    assert torch.allclose(padded.embeds[:, 77:], 0.25 * long.embeds[:, 77:])


def test_tokenizers_splitting_a_prompt_differently_is_a_one_line_error(parts):
    from gf_diffusion.text import PromptError
    from gf_diffusion.values import Tokens
    from graphflow.errors import GraphflowError

    short = tokenize(parts, "a cat", name="tiny-sdxl").outputs
    long = tokenize(parts, "cat " * 100, name="tiny-sdxl").outputs
    mixed = Tokens("mixed", [short.per_tokenizer[0], long.per_tokenizer[1]])
    fn = parts["registry"]["diffusion.encode_text"].function
    with pytest.raises(PromptError, match=r"different numbers of chunks \(1, 2\)") as raised:
        fn(tokens=mixed, text_encoder=parts["tiny-sdxl"]["text_encoder"])
    assert isinstance(raised.value, GraphflowError)


def test_tokens_of_another_checkpoint_is_a_one_line_error(parts):
    from gf_diffusion.text import PromptError

    tokens = tokenize(parts, "a cat").outputs
    fn = parts["registry"]["diffusion.encode_text"].function
    with pytest.raises(PromptError, match="1 tokenizer"):
        fn(tokens=tokens, text_encoder=parts["tiny-sdxl"]["text_encoder"])


def test_averaging_conditionings_of_different_widths_is_a_one_line_error(parts):
    from gf_diffusion.text import PromptError
    from gf_diffusion.values import Conditioning

    average = parts["registry"]["diffusion.average_conditioning"].function
    sd, xl = encode(parts, "a cat"), encode(parts, "a cat", name="tiny-sdxl")
    with pytest.raises(PromptError, match="cannot average"):
        average(a=Conditioning([sd]), b=Conditioning([xl]))


def test_a_lone_projection_encoder_encodes_as_the_sdxl_refiner(parts):
    """The refiner has OpenCLIP G alone: penultimate states and its pooled output."""
    from gf_diffusion.values import TextEncoders, Tokenizers

    sdxl = parts["tiny-sdxl"]
    encoder = TextEncoders([sdxl["text_encoder"].encoders[1]])
    tokenizer = Tokenizers([sdxl["tokenizer"].tokenizers[1]])
    registry = parts["registry"]
    tokens = registry["diffusion.tokenize"].function(text="a cat", tokenizer=tokenizer).outputs
    entry = registry["diffusion.encode_text"].function(tokens=tokens, text_encoder=encoder)
    ids = tokens.per_tokenizer[0].input_ids
    with torch.no_grad():
        out = encoder.encoders[0].unpatched(ids, output_hidden_states=True)
    assert entry.entries[0].pooled is not None
    assert torch.allclose(entry.entries[0].pooled, out[0][:1], atol=1e-6)
    assert torch.allclose(entry.entries[0].embeds[0], out.hidden_states[-2][0], atol=1e-6)
