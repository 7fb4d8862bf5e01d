"""ComfyUI's latent class types (gf_comfy/nodes_latent.py, resample.py): ComfyUI's specs
(COMFY_COMPAT §5.1), its resampling arithmetic, batch_index semantics, and VAE decode /
encode through graphflow-tiny's VAE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gf_comfy import nodes_latent as latents
from gf_comfy.names import CLASSES
from gf_comfy.nodes_latent import ComfyLatent
from gf_diffusion.resample import LATENT_METHODS, bislerp, common_upscale
from gf_diffusion.values import Latent

METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]


def spec_rows(class_type: str) -> list[tuple]:
    """(name, type, default or None, min, max, step) of each input, in order."""
    spec = CLASSES[class_type].spec
    return [
        (i.name, i.type, None if i.required else i.default, i.min, i.max, i.step)
        for i in spec.inputs
    ]


def outputs(class_type: str) -> list[tuple[str, str]]:
    return [(o.name, o.type) for o in CLASSES[class_type].spec.outputs]


def choices(class_type: str, name: str) -> list:
    return CLASSES[class_type].spec.inputs_by_name[name].allowed_choices()


def latent(batch=2, height=6, width=10, seed=0, scaling=0.18215, shift=0.0) -> Latent:
    generator = torch.Generator().manual_seed(seed)
    return Latent(torch.randn(batch, 4, height, width, generator=generator), None, scaling, shift)


# --------------------------------------------------------------------------- specs

TILE_ROWS = [
    ("overlap", "INT", 64, 0, 4096, 32),
    ("temporal_size", "INT", 64, 8, 4096, 4),
    ("temporal_overlap", "INT", 8, 4, 4096, 4),
]


@pytest.mark.parametrize(
    ("class_type", "display", "category", "rows", "outs"),
    [
        (
            "EmptyLatentImage",
            "Empty Latent Image",
            "latent",
            [
                ("width", "INT", 512, 16, 16384, 8),
                ("height", "INT", 512, 16, 16384, 8),
                ("batch_size", "INT", 1, 1, 4096, None),
            ],
            [("latent", "LATENT")],
        ),
        (
            "VAEDecode",
            "VAE Decode",
            "latent",
            [("samples", "LATENT", None, None, None, None), ("vae", "VAE", None, None, None, None)],
            [("image", "IMAGE")],
        ),
        (
            "VAEEncode",
            "VAE Encode",
            "latent",
            [("pixels", "IMAGE", None, None, None, None), ("vae", "VAE", None, None, None, None)],
            [("latent", "LATENT")],
        ),
        (
            "VAEDecodeTiled",
            "VAE Decode (Tiled)",
            "_for_testing",
            [
                ("samples", "LATENT", None, None, None, None),
                ("vae", "VAE", None, None, None, None),
                ("tile_size", "INT", 512, 64, 4096, 32),
                *TILE_ROWS,
            ],
            [("image", "IMAGE")],
        ),
        (
            "VAEEncodeTiled",
            "VAE Encode (Tiled)",
            "_for_testing",
            [
                ("pixels", "IMAGE", None, None, None, None),
                ("vae", "VAE", None, None, None, None),
                ("tile_size", "INT", 512, 64, 4096, 64),
                *TILE_ROWS,
            ],
            [("latent", "LATENT")],
        ),
        (
            "LatentUpscale",
            "Upscale Latent",
            "latent",
            [
                ("samples", "LATENT", None, None, None, None),
                ("upscale_method", "STRING", None, None, None, None),
                ("width", "INT", 512, 0, 16384, 8),
                ("height", "INT", 512, 0, 16384, 8),
                ("crop", "STRING", "disabled", None, None, None),
            ],
            [("latent", "LATENT")],
        ),
        (
            "LatentUpscaleBy",
            "Upscale Latent By",
            "latent",
            [
                ("samples", "LATENT", None, None, None, None),
                ("upscale_method", "STRING", None, None, None, None),
                ("scale_by", "FLOAT", 1.5, 0.01, 8.0, 0.01),
            ],
            [("latent", "LATENT")],
        ),
        (
            "LatentFromBatch",
            "Latent From Batch",
            "latent/batch",
            [
                ("samples", "LATENT", None, None, None, None),
                ("batch_index", "INT", 0, 0, 63, None),
                ("length", "INT", 1, 1, 64, None),
            ],
            [("latent", "LATENT")],
        ),
        (
            "RepeatLatentBatch",
            "Repeat Latent Batch",
            "latent/batch",
            [("samples", "LATENT", None, None, None, None), ("amount", "INT", 1, 1, 64, None)],
            [("latent", "LATENT")],
        ),
    ],
)
def test_latent_class_types_have_comfyuis_spec(class_type, display, category, rows, outs):
    entry = CLASSES[class_type]
    assert (entry.display_name, entry.category) == (display, category)
    assert spec_rows(class_type) == rows
    assert outputs(class_type) == outs
    assert not entry.spec.output_node


def test_upscale_method_and_crop_lists_are_comfyuis():
    assert choices("LatentUpscale", "upscale_method") == METHODS
    assert choices("LatentUpscaleBy", "upscale_method") == METHODS
    assert choices("LatentUpscale", "crop") == ["disabled", "center"]


# --------------------------------------------------------------------------- empty latent


def test_empty_latent_image_is_zeros_at_an_eighth_with_sd_geometry():
    empty = latents.empty_latent_image(width=64, height=100, batch_size=3)
    assert empty.samples.shape == (3, 4, 12, 8)  # sides rounded down, as ComfyUI
    assert not empty.samples.any()
    assert (empty.downscale, empty.scaling_factor, empty.shift_factor) == (8, 0.18215, 0.0)


def test_an_empty_latent_is_remade_in_the_models_vae_geometry(tiny_vae):
    from gf_diffusion.latents import vae_geometry

    empty = latents.empty_latent_image(width=32, height=40, batch_size=2)
    fitted = latents.fit_empty_latent(empty, vae_geometry(tiny_vae))
    assert fitted.samples.shape == (2, 4, 10, 8) and not fitted.samples.any()
    assert (fitted.downscale, round(fitted.scaling_factor, 4)) == (4, 0.6825)
    assert latents.fit_empty_latent(empty, latents.SD_GEOMETRY) is empty
    content = latent(batch=1)
    assert latents.fit_empty_latent(content, vae_geometry(tiny_vae)) is content


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic"])
def test_torch_methods_are_plain_interpolate_as_comfyui_calls_it(method):
    source = latent()
    out = latents.latent_upscale_by(source, method, 1.5)
    expected = F.interpolate(source.samples, size=(9, 15), mode=method)
    assert torch.allclose(out.samples, expected)
    assert out.scaling_factor == source.scaling_factor


def test_upscale_to_pixels_keeps_aspect_for_a_zero_side_and_at_least_64():
    source = latent(height=6, width=10)  # an 80 × 48 image
    assert latents.latent_upscale(source, "bilinear", 0, 96).samples.shape[-2:] == (12, 20)
    assert latents.latent_upscale(source, "bilinear", 160, 0).samples.shape[-2:] == (12, 20)
    assert latents.latent_upscale(source, "bilinear", 16, 24).samples.shape[-2:] == (8, 8)
    assert latents.latent_upscale(source, "bilinear", 0, 0) is source


def test_center_crop_cuts_the_long_side_to_the_target_aspect():
    source = latent(height=6, width=10)
    out = latents.latent_upscale(source, "bicubic", 64, 64, "center")
    # aspect 10/6 → 1: round((10 − 6) / 2) = 2 columns cut on each side
    expected = F.interpolate(source.samples[..., 2:8], size=(8, 8), mode="bicubic")
    assert torch.allclose(out.samples, expected)
    tall = latent(height=10, width=4)
    out = common_upscale(tall.samples, 4, 2, "nearest-exact", "center")
    # aspect 0.4 → 2: round((10 − 10 · 0.2) / 2) = 4 rows cut on each side
    assert torch.equal(out, F.interpolate(tall.samples[:, :, 4:6], size=(2, 4), mode="nearest"))


def _slerp_reference(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """ComfyUI's slerp of two channel vectors, written out plainly."""
    norm_a, norm_b = float(a.norm()), float(b.norm())
    unit_a = a / norm_a if norm_a else torch.zeros_like(a)
    unit_b = b / norm_b if norm_b else torch.zeros_like(b)
    dot = float((unit_a * unit_b).sum())
    if dot > 1 - 1e-5:
        return a.clone()
    if dot < 1e-5 - 1:
        return a * (1 - t) + b * t
    omega = math.acos(dot)
    direction = (math.sin((1 - t) * omega) * unit_a + math.sin(t * omega) * unit_b) / math.sin(
        omega
    )
    return direction * (norm_a * (1 - t) + norm_b * t)


def _axis_reference(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Slerp along one axis of (N, C, H, W) between each sample's bilinear neighbours."""
    old = x.shape[dim]
    moved = x.movedim(dim, -1)
    out = torch.empty(*moved.shape[:-1], size)
    for i in range(size):
        position = min(max((i + 0.5) * old / size - 0.5, 0.0), old - 1.0)
        low = math.floor(position)
        high, t = min(low + 1, old - 1), position - low
        for n in range(x.shape[0]):
            for k in range(moved.shape[2]):
                a, b = moved[n, :, k, low], moved[n, :, k, high]
                out[n, :, k, i] = _slerp_reference(a, b, t)
    return out.movedim(-1, dim)


def test_bislerp_matches_a_plain_reference_including_its_edge_cases():
    x = torch.randn(2, 3, 3, 4, generator=torch.Generator().manual_seed(1))
    x[0, :, 0, 1] = 0.0  # a zero vector
    x[0, :, 1, 1] = 2.5 * x[0, :, 1, 0]  # parallel neighbours: ComfyUI keeps the first
    x[1, :, 2, 2] = -x[1, :, 2, 3]  # opposite neighbours: plain lerp
    expected = _axis_reference(_axis_reference(x, 7, 3), 5, 2)
    assert torch.allclose(bislerp(x, 7, 5), expected, atol=1e-5)


def test_bislerp_at_the_same_size_is_the_identity_and_keeps_the_dtype():
    x = torch.randn(1, 4, 5, 6).half()
    out = bislerp(x, 6, 5)
    assert out.dtype == torch.float16 and torch.equal(out, x)


def test_bislerp_runs_in_comfyuis_unscaled_space():
    source = latent(scaling=0.5, shift=0.3)
    out = latents.latent_upscale_by(source, "bislerp", 2.0)
    unscaled = source.samples / 0.5 + 0.3
    expected = (bislerp(unscaled, 20, 12) - 0.3) * 0.5
    assert torch.allclose(out.samples, expected, atol=1e-6)
    assert not torch.allclose(out.samples, bislerp(source.samples, 20, 12), atol=1e-3)


# --------------------------------------------------------------------------- batches


def test_latent_from_batch_clips_and_records_batch_positions():
    source = latent(batch=4)
    two = latents.latent_from_batch(source, batch_index=1, length=2)
    assert torch.equal(two.samples, source.samples[1:3]) and two.batch_index == [1, 2]
    assert isinstance(two, ComfyLatent) and two.scaling_factor == source.scaling_factor
    clipped = latents.latent_from_batch(source, batch_index=9, length=5)
    assert torch.equal(clipped.samples, source.samples[3:]) and clipped.batch_index == [3]
    # from a slice of a slice: positions stay those of the original batch
    inner = latents.latent_from_batch(two, batch_index=1, length=1)
    assert inner.batch_index == [2] and torch.equal(inner.samples, source.samples[2:3])


def test_latent_from_batch_slices_noise_masks_but_keeps_a_single_one():
    source = latent(batch=4)
    masks = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 6, 10)
    cycled = ComfyLatent(source.samples, None, 0.18215, noise_mask=masks)
    picked = latents.latent_from_batch(cycled, batch_index=2, length=2)
    assert picked.noise_mask[:, 0, 0, 0].tolist() == [0.0, 1.0]  # masks repeat to cover 4
    single = ComfyLatent(source.samples, None, 0.18215, noise_mask=masks[:1])
    assert latents.latent_from_batch(single, 3, 1).noise_mask.shape[0] == 1


def test_repeat_latent_batch_repeats_and_shifts_batch_positions():
    source = latent(batch=2)
    plain = latents.repeat_latent_batch(source, amount=3)
    assert plain.samples.shape == (6, 4, 6, 10)
    assert torch.equal(plain.samples[4:], source.samples)
    assert getattr(plain, "batch_index", None) is None
    picked = latents.latent_from_batch(latent(batch=8), batch_index=3, length=2)
    repeated = latents.repeat_latent_batch(picked, amount=3)
    assert repeated.batch_index == [3, 4, 5, 6, 7, 8]
    assert repeated.samples.shape[0] == 6


# --------------------------------------------------------------------------- VAE


@pytest.fixture(scope="module")
def tiny_vae():
    """graphflow-tiny's VAE (4× downscale, scaling 0.68, shift 0.22) as a VAE handle."""
    from diffusers import AutoencoderKL

    from gf_diffusion.embedded import EMBEDDED_CHECKPOINTS
    from graphflow.runtime.models import ModelManager

    folder = EMBEDDED_CHECKPOINTS["graphflow-tiny"] / "vae"
    return ModelManager().load("vae", folder, lambda: AutoencoderKL.from_pretrained(folder).eval())


def test_vae_encode_crops_to_the_vaes_block_and_decode_restores_images(tiny_vae):
    from gf_diffusion.vae import vae_decode

    pixels = torch.rand(2, 34, 31, 4)  # an alpha channel, sides not multiples of 4
    encoded = latents.vae_encode_comfy(pixels, tiny_vae)
    assert encoded.samples.shape == (2, 4, 8, 7) and encoded.posterior is None
    assert (encoded.downscale, round(encoded.scaling_factor, 4)) == (4, 0.6825)
    # centred cut: rows 1..32, columns 1..28, RGB only — the same latent as encoding that
    again = latents.vae_encode_comfy(pixels[:, 1:33, 1:29, :3].contiguous(), tiny_vae)
    assert torch.allclose(encoded.samples, again.samples, atol=1e-5)
    images = latents.vae_decode_comfy(encoded, tiny_vae)
    assert images.shape == (2, 32, 28, 3) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, vae_decode.function(vae=tiny_vae, latent=encoded))


@pytest.mark.parametrize("step", ["decode", "encode"])
def test_whole_image_vae_falls_back_to_tiles_when_memory_runs_out(tiny_vae, monkeypatch, step):
    module = tiny_vae.unpatched
    real = getattr(module, step)
    tiling_seen = []

    def short_of_memory(*args, **kwargs):
        tiling_seen.append(module.use_tiling)
        if not module.use_tiling:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, step, short_of_memory)
    if step == "decode":
        out = latents.vae_decode_comfy(latent(batch=1, height=8, width=8), tiny_vae)
        assert out.shape == (1, 32, 32, 3)
    else:
        out = latents.vae_encode_comfy(torch.rand(1, 32, 32, 3), tiny_vae)
        assert out.samples.shape == (1, 4, 8, 8)
    assert tiling_seen == [False, True] and module.use_tiling is False


def _decoder_calls(vae):
    calls = []
    hook = vae.unpatched.decoder.register_forward_hook(lambda *args: calls.append(1))
    return calls, hook


def test_tiled_decode_uses_tiles_with_the_given_overlap_and_restores_the_vae(tiny_vae):
    source = latent(batch=1, height=32, width=32, scaling=0.6825)  # a 128 × 128 image
    source.downscale = 4
    whole = latents.vae_decode_comfy(source, tiny_vae)
    counts = {}
    for overlap in (0, 64):  # 64 is above a quarter of the tile: it becomes 16
        calls, hook = _decoder_calls(tiny_vae)
        try:
            tiled = latents.vae_decode_tiled(source, tiny_vae, tile_size=64, overlap=overlap)
        finally:
            hook.remove()
        counts[overlap] = len(calls)
        assert tiled.shape == whole.shape == (1, 128, 128, 3)
        assert (tiled - whole).abs().mean() < 0.1
    # 16-latent tiles: every 16 latents without overlap (2 × 2), every 12 with (3 × 3)
    assert counts == {0: 4, 64: 9}
    module = tiny_vae.unpatched
    assert module.tile_overlap_factor == 0.25 and module.use_tiling is False


def test_tiled_encode_takes_the_overlap_as_a_share_of_the_tile(tiny_vae):
    seen = []
    module = tiny_vae.unpatched
    hook = module.encoder.register_forward_hook(
        lambda *args: seen.append(module.tile_overlap_factor)
    )
    pixels = torch.rand(1, 96, 96, 3)
    try:
        encoded = latents.vae_encode_tiled(pixels, tiny_vae, 64, overlap=8)
        clamped = latents.vae_encode_tiled(pixels, tiny_vae, 64, overlap=48)
    finally:
        hook.remove()
    assert encoded.samples.shape == clamped.samples.shape == (1, 4, 24, 24)
    assert len(seen) > 2 and set(seen) == {0.125, 0.25}
    assert module.tile_overlap_factor == 0.25 and module.use_tiling is False


def test_every_method_scales_latents_by_a_factor():
    source = latent(batch=1)
    for method in LATENT_METHODS:
        assert latents.latent_upscale_by(source, method, 0.5).samples.shape == (1, 4, 3, 5)
