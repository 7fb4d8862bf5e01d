"""Maps and walks of latent space (gf_vision/latent_map.py, latent_walk.py): PCA recovers
known structure, the map draws what it is given, prompts of two classes fall apart along the
first axis, and a walk's ends are the K-Sampler's own images of its two ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gf_vision import latent_walk as walks
from gf_vision.latent_map import (
    PALETTE,
    draw_map,
    groups_of,
    item_labels,
    latent_map,
    pca_2d,
    prompt_map,
)
from graphflow import Executor, load_plugins, load_workflow

ROOT = Path(__file__).resolve().parents[2]


def _plane_points(n=200, dim=12, seed=0):
    """n points a·u + b·v (+ a little noise) in dim dimensions: a and b centred and
    uncorrelated, var(a) ≈ 9, var(b) ≈ 1."""
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    a = 3 * torch.randn(n, generator=generator, dtype=torch.float64)
    a -= a.mean()
    b = torch.randn(n, generator=generator, dtype=torch.float64)
    b -= b.mean() + a * torch.dot(a, b) / torch.dot(a, a)  # uncorrelated in the sample too
    noise = 1e-3 * torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return a, b, a[:, None] * basis[0] + b[:, None] * basis[1] + noise + 5.0


def test_pca_recovers_the_two_directions_points_spread_along():
    a, b, vectors = _plane_points()
    points, explained = pca_2d(vectors)
    # up to sign, PC1 is the centred a and PC2 the centred b
    for axis, truth in enumerate((a - a.mean(), b - b.mean())):
        found = points[:, axis].double()
        sign = 1.0 if torch.dot(found, truth) > 0 else -1.0
        assert torch.allclose(sign * found, truth, atol=1e-2)
    expected = (a - a.mean()).square().sum() / (
        (a - a.mean()).square().sum() + (b - b.mean()).square().sum()
    )
    assert explained[0] == pytest.approx(float(expected), abs=1e-4)
    assert explained[0] + explained[1] == pytest.approx(1.0, abs=1e-4)
    assert explained[0] > 0.85


def test_pca_is_the_same_for_rotated_or_negated_data():
    _, _, vectors = _plane_points(n=50)
    rotation, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    points, explained = pca_2d(vectors)
    for other in (vectors @ rotation, -vectors):
        again, explained_again = pca_2d(other)
        assert torch.allclose(points, again, atol=1e-4)  # signs fixed: the same picture
        assert explained_again == pytest.approx(explained)


def test_pca_of_points_on_a_line_leaves_the_second_axis_zero():
    direction = torch.tensor([1.0, 2.0, -2.0])
    points, explained = pca_2d(torch.tensor([[0.0], [1.0], [3.0]]) * direction)
    assert torch.equal(points[:, 1], torch.zeros(3))
    assert explained == pytest.approx([1.0, 0.0])
    assert torch.allclose(points[:, 0].abs(), torch.tensor([4.0, 1.0, 5.0]))
    with pytest.raises(ValueError, match="at least two"):
        pca_2d(torch.ones(1, 3))


def test_groups_match_whole_words_so_a_t_shirt_is_not_a_shirt():
    words = ["shirt", "t-shirt", "ankle boot"]
    labels = ["a red shirt", "a red t-shirt", "a blue ankle boot", "a boot"]
    assert groups_of(labels, words) == [0, 1, 2, None]


def test_map_draws_each_point_in_its_group_colour_on_white():
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    sheet = draw_map(points, ["a", "b"], [0, 1], ["one", "two"], [0.7, 0.3], size=200)
    assert sheet.shape == (200, 200, 3) and sheet.min() >= 0 and sheet.max() <= 1
    pixels = (sheet * 255).round().to(torch.uint8).reshape(-1, 3)
    colours = {tuple(p) for p in pixels.tolist()}
    assert (255, 255, 255) in colours
    assert PALETTE[0] in colours and PALETTE[1] in colours and PALETTE[2] not in colours


def test_thumbnails_are_pasted_at_their_points():
    latents = torch.zeros(2, 4, 8, 8)
    latents[1] += 1.0
    red = torch.zeros(1, 32, 32, 3)
    red[..., 0] = 1.0
    green = torch.zeros(1, 32, 32, 3)
    green[..., 1] = 1.0
    from gf_diffusion.values import Latent

    items = [Latent(latents[:1], None, 1.0, 0.0, 4), Latent(latents[1:], None, 1.0, 0.0, 4)]
    image, report = latent_map.function(items, [""], [red, green], "", 320, 12)
    pixels = {tuple(p) for p in (image[0] * 255).round().to(torch.uint8).reshape(-1, 3).tolist()}
    assert (255, 0, 0) in pixels and (0, 255, 0) in pixels
    assert report.splitlines()[0] == "latent map: 2 items, PC1 100.0%, PC2 0.0%"


def test_latent_map_labels_items_or_batches_and_refuses_too_many():
    assert item_labels(["x", "y"], [2, 2]) == ["x", "x", "y", "y"]
    assert item_labels(["a", "b", "c", "d"], [2, 2]) == ["a", "b", "c", "d"]
    assert item_labels(["a"], [3]) == ["a", "a", "a"]  # one per batch
    assert item_labels(["a"], [2, 2]) == ["a", "#1", "#2", "#3"]
    with pytest.raises(ValueError, match="5 labels for 4 latents"):
        item_labels(list("abcde"), [2, 2])


def test_latent_map_separates_two_clusters_along_the_first_axis():
    from gf_diffusion.values import Latent

    generator = torch.Generator().manual_seed(1)
    near = torch.randn(3, 4, 4, 4, generator=generator) * 0.1
    far = torch.randn(3, 4, 4, 4, generator=generator) * 0.1 + 2.0
    items = [Latent(near, None, 1.0, 0.0, 4), Latent(far, None, 1.0, 0.0, 4)]
    image, report = latent_map.function(items, ["near\nfar"], None, "near\nfar", 256, 10)
    assert image.shape == (1, 256, 256, 3)
    rows = [line.split() for line in report.splitlines()[1:]]
    assert [row[-1] for row in rows] == ["near"] * 3 + ["far"] * 3
    xs = [float(row[0]) for row in rows]
    assert max(xs[:3]) < 0 < min(xs[3:]) or max(xs[3:]) < 0 < min(xs[:3])


def test_slerp_keeps_the_length_of_noise_and_lerp_shrinks_it():
    a = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0))
    b = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1))
    length = (a.norm() + b.norm()) / 2
    assert walks.mix(a, b, 0.5, "slerp").norm() == pytest.approx(float(length), rel=0.05)
    assert walks.mix(a, b, 0.5, "lerp").norm() == pytest.approx(float(length) / 2**0.5, rel=0.1)
    assert torch.equal(walks.mix(a, b, 0.0, "slerp"), a)
    assert torch.equal(walks.mix(a, b, 1.0, "lerp"), b)
    assert walks.walk_fractions(5) == [0.0, 0.25, 0.5, 0.75, 1.0]


# -- with graphflow-tiny --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """graphflow-tiny's outputs (model, text encoder, tokenizer, VAE), loaded once."""
    executor = Executor(load_plugins().registry, device="cpu")
    result = executor.run(load_workflow(ROOT / "workflows" / "txt2img.json"), outputs=["ckpt"])
    assert result.ok, result.error
    return result.outputs["ckpt"]


def _condition(tiny, text):
    from gf_diffusion.text import encode_text, tokenize

    return encode_text(tokenize(text, tiny["tokenizer"]).outputs, tiny["text_encoder"])


@pytest.mark.slow
def test_prompt_map_puts_sneakers_and_dresses_on_two_sides(tiny):
    prompts = [f"a {c} {k}" for k in ("sneaker", "dress") for c in ("red", "blue", "green")]
    image, report = prompt_map.function(
        tiny["tokenizer"], tiny["text_encoder"], "\n".join(prompts), "sneaker\ndress"
    )
    assert image.shape == (1, 640, 640, 3)
    xs = [float(line.split()[0]) for line in report.splitlines()[1:]]
    assert max(xs[:3]) < 0 < min(xs[3:]) or max(xs[3:]) < 0 < min(xs[:3]), report


def _k_sample(tiny, positive, negative, latent, seed):
    from gf_diffusion.k_sampler_node import k_sampler

    out = k_sampler.function(tiny["model"], positive, negative, latent, "euler", "normal",
                             seed, 3, 4.0, 1.0)  # fmt: skip
    return out.samples


@pytest.mark.slow
def test_a_walk_between_prompts_ends_at_each_prompts_own_sample(tiny):
    from gf_diffusion.latents import empty_latent

    a, b, empty = (_condition(tiny, t) for t in ("a red sneaker", "a blue dress", ""))
    latent = empty_latent.function(32, 32, 1, tiny["vae"])
    out, labels = walks.latent_walk.function(
        tiny["model"], a, empty, latent, b, "prompts", 3, "slerp", 5, 9, 3, 4.0
    )
    assert out.samples.shape == (3, 4, 8, 8)
    assert labels.splitlines() == ["t = 0.00", "t = 0.50", "t = 1.00"]
    first, last = _k_sample(tiny, a, empty, latent, 5), _k_sample(tiny, b, empty, latent, 5)
    assert torch.allclose(out.samples[0], first[0], atol=1e-4)
    assert torch.allclose(out.samples[2], last[0], atol=1e-4)
    assert not torch.allclose(out.samples[1], first[0], atol=1e-2)
    assert not torch.allclose(out.samples[1], last[0], atol=1e-2)


@pytest.mark.slow
def test_a_walk_between_seeds_ends_at_each_seeds_own_sample(tiny):
    from gf_diffusion.latents import empty_latent

    bag, empty = _condition(tiny, "a green bag"), _condition(tiny, "")
    latent = empty_latent.function(32, 32, 1, tiny["vae"])
    out, _ = walks.latent_walk.function(
        tiny["model"], bag, empty, latent, None, "seeds", 3, "slerp", 5, 9, 3, 4.0
    )
    first, last = _k_sample(tiny, bag, empty, latent, 5), _k_sample(tiny, bag, empty, latent, 9)
    assert torch.allclose(out.samples[0], first[0], atol=1e-4)
    assert torch.allclose(out.samples[2], last[0], atol=1e-4)
    assert not torch.allclose(first, last, atol=1e-2)
    with pytest.raises(ValueError, match="needs positive_b"):
        walks.latent_walk.function(tiny["model"], bag, empty, latent, None, "prompts", 3)
