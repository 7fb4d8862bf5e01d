"""Graphs of diffusion nodes give the same images as diffusers' pipelines."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch

from graphflow import EventLog, Executor, Image, load_plugins, node
from graphflow.events import NodeFinished, Progress
from support import link, make_workflow

PROMPT = "a red cat"
SEED = 1234
STEPS = 4
CFG = 7.5


def pipeline_args(**extra):
    """What every pipeline call here shares with the graphs: size, steps, cfg, seed."""
    return dict(
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        height=32,
        width=32,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(SEED),
        **extra,
    )


PIPELINE_SCHEDULERS = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
}


def txt2img(scheduler="ddim", seed=SEED, steps=STEPS, cfg=CFG, negative="", checkpoint="tiny-sd"):
    return make_workflow(
        {
            "ckpt": ("diffusion.load_checkpoint", {"checkpoint": checkpoint}),
            "pos_tokens": (
                "diffusion.tokenize",
                {"text": PROMPT, "tokenizer": link("ckpt", "tokenizer")},
            ),
            "neg_tokens": (
                "diffusion.tokenize",
                {"text": negative, "tokenizer": link("ckpt", "tokenizer")},
            ),
            "pos": (
                "diffusion.encode_text",
                {
                    "tokens": link("pos_tokens", "tokens"),
                    "text_encoder": link("ckpt", "text_encoder"),
                },
            ),
            "neg": (
                "diffusion.encode_text",
                {
                    "tokens": link("neg_tokens", "tokens"),
                    "text_encoder": link("ckpt", "text_encoder"),
                },
            ),
            "sched": (
                "diffusion.scheduler",
                {"scheduler": link("ckpt", "scheduler"), "name": scheduler},
            ),
            "empty": (
                "diffusion.empty_latent",
                {"width": 32, "height": 32, "vae": link("ckpt", "vae")},
            ),
            "sample": (
                "diffusion.sampler",
                {
                    "model": link("ckpt", "model"),
                    "positive": link("pos", "conditioning"),
                    "negative": link("neg", "conditioning"),
                    "latent": link("empty", "latent"),
                    "scheduler": link("sched", "scheduler"),
                    "seed": seed,
                    "steps": steps,
                    "cfg": cfg,
                },
            ),
            "decode": (
                "diffusion.vae_decode",
                {"vae": link("ckpt", "vae"), "latent": link("sample", "latent")},
            ),
            "show": ("core.show", {"value": link("decode", "image")}),
        }
    )


def pipeline(models, kind="txt2img", scheduler="ddim"):
    cls = (
        diffusers.StableDiffusionPipeline
        if kind == "txt2img"
        else diffusers.StableDiffusionImg2ImgPipeline
    )
    pipe = cls.from_pretrained(models / "checkpoints" / "tiny-sd", local_files_only=True)
    name, overrides = PIPELINE_SCHEDULERS[scheduler]
    pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config, **overrides)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_image(executor, workflow):
    result = executor.run(workflow, outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"].cpu().numpy()


@pytest.fixture
def executor(models):
    return Executor(load_plugins().registry)


@pytest.mark.parametrize("scheduler", ["ddim", "euler", "dpmpp_2m", "euler_ancestral"])
def test_txt2img_equals_stable_diffusion_pipeline(models, executor, scheduler):
    ours = run_image(executor, txt2img(scheduler))
    theirs = pipeline(models, scheduler=scheduler)(PROMPT, **pipeline_args()).images
    assert ours.shape == theirs.shape == (1, 32, 32, 3)
    assert np.abs(ours - theirs).max() < 1e-3


def test_different_seeds_give_different_images(executor):
    assert (
        np.abs(run_image(executor, txt2img(seed=1)) - run_image(executor, txt2img(seed=2))).max()
        > 1e-2
    )


def img2img(seed=SEED, denoise=0.5):
    workflow = txt2img(seed=seed)
    nodes = {k: (v.type, dict(v.inputs)) for k, v in workflow.nodes.items()}
    nodes["image"] = ("test.image", {})
    nodes["encode"] = (
        "diffusion.vae_encode",
        {"vae": link("ckpt", "vae"), "image": link("image", "image")},
    )
    sample_inputs = nodes["sample"][1]
    sample_inputs["latent"] = {"link": ["encode", "latent"]}
    sample_inputs["denoise"] = denoise
    sample_inputs["model"] = {"link": ["ckpt", "model"]}
    for key in ("positive", "negative", "scheduler"):
        sample_inputs[key] = {"link": list(sample_inputs[key].link)}
    for name, (kind, inputs) in nodes.items():
        nodes[name] = (
            kind,
            {k: ({"link": list(v.link)} if hasattr(v, "link") else v) for k, v in inputs.items()},
        )
    del nodes["empty"]
    return make_workflow(nodes)


def test_img2img_equals_img2img_pipeline(models):
    torch.manual_seed(0)
    picture = torch.rand(1, 32, 32, 3)

    @node("test.image")
    def image() -> Image:
        """A fixed test picture."""
        return picture

    registry = load_plugins().registry
    registry.register(image)
    ours = run_image(Executor(registry), img2img())
    theirs = pipeline(models, "img2img")(
        PROMPT,
        image=picture.permute(0, 3, 1, 2),
        strength=0.5,
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="np",
    ).images
    assert np.abs(ours - theirs).max() < 1e-3


def test_changing_only_the_seed_reruns_sampler_and_decode(executor):
    log = EventLog()
    executor.observers.append(log)
    executor.run(txt2img(seed=1), outputs=["decode"])
    log.events.clear()
    result = executor.run(txt2img(seed=2), outputs=["decode"])
    assert sorted(log.nodes(NodeFinished)) == ["decode", "sample"]
    assert sorted(result.executed) == ["decode", "sample"]


def test_interrupt_mid_sampling_stops_within_one_step(executor):
    steps_seen = []

    def stop_at_step_2(event):
        if isinstance(event, Progress) and event.node == "sample":
            steps_seen.append(event.value)
            if event.value == 2:
                executor.interrupt()

    result = executor.run(txt2img(steps=10), outputs=["decode"], observers=[stop_at_step_2])
    assert result.status == "interrupted"
    assert steps_seen == [1, 2]
    assert "sample" not in result.executed
    assert executor.run(txt2img(steps=3), outputs=["decode"]).ok


def test_same_checkpoint_loaded_twice_is_reused(models, executor):
    workflow = txt2img()
    first = executor.run(workflow, outputs=["ckpt"]).outputs["ckpt"]["model"]
    executor.cache.clear()
    second = executor.run(workflow, outputs=["ckpt"]).outputs["ckpt"]["model"]
    assert first is second
    assert executor.models.loads == 1


def test_single_file_checkpoint_gives_the_same_image_as_the_folder(executor):
    folder = run_image(executor, txt2img())
    single = run_image(executor, txt2img(checkpoint="tiny-sd.safetensors"))
    assert np.abs(folder - single).max() < 1e-6


def test_opted_in_pickle_checkpoint_loads_weights_only(models, executor):
    from safetensors.torch import load_file

    checkpoints = models / "checkpoints"
    state = load_file(str(checkpoints / "tiny-sd.safetensors"))
    torch.save({"state_dict": state}, checkpoints / "tiny-pickle.ckpt")
    (checkpoints / "tiny-pickle").symlink_to(checkpoints / "tiny-sd")
    try:
        workflow = txt2img(checkpoint="tiny-pickle.ckpt")
        workflow.set_input("ckpt", "allow_pickle", True)
        assert np.abs(run_image(executor, workflow) - run_image(executor, txt2img())).max() < 1e-6
    finally:
        (checkpoints / "tiny-pickle.ckpt").unlink()
        (checkpoints / "tiny-pickle").unlink()


class _RunsCode:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_that_would_run_code_is_refused_even_when_opted_in(
    models, executor, tmp_path, monkeypatch
):
    import pickle

    monkeypatch.chdir(tmp_path)
    checkpoints = models / "checkpoints"
    (checkpoints / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": _RunsCode()}))
    (checkpoints / "evil").symlink_to(checkpoints / "tiny-sd")
    try:
        workflow = txt2img(checkpoint="evil.ckpt")
        workflow.set_input("ckpt", "allow_pickle", True)
        result = executor.run(workflow, outputs=["decode"])
        assert result.status == "failed" and result.error.node == "ckpt"
        assert not (tmp_path / "PWNED").exists()
    finally:
        (checkpoints / "evil.ckpt").unlink()
        (checkpoints / "evil").unlink()


def test_sdxl_txt2img_equals_sdxl_pipeline(models, executor):
    workflow = txt2img(scheduler="euler", checkpoint="tiny-sdxl")
    ours = run_image(executor, workflow)
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(
        models / "checkpoints" / "tiny-sdxl", local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(PROMPT, **pipeline_args(negative_prompt="")).images
    assert np.abs(ours - theirs).max() < 1e-3
