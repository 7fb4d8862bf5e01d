"""Scheduler node: diffusers noise schedulers by name, configured from the checkpoint."""

from __future__ import annotations

from graphflow import Boolean, Choice, node

from .types import Scheduler

# name → (diffusers class, config overrides)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),  # PLMS, as SD configures it
    "lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}

MODEL_DEFAULT = "model default"
BETA_SCHEDULES = [MODEL_DEFAULT, "linear", "scaled_linear", "squaredcos_cap_v2"]
SPACINGS = [MODEL_DEFAULT, "leading", "trailing", "linspace"]


def make_scheduler(
    template,
    name: str,
    karras: bool = False,
    beta_schedule: str = MODEL_DEFAULT,
    timestep_spacing: str = MODEL_DEFAULT,
):
    """A new diffusers scheduler of the named kind, keeping the model's training schedule.

    The checkpoint's config supplies num_train_timesteps, betas and prediction_type.
    """
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    config = dict(template.config)
    config.update(overrides)
    if karras:
        config["use_karras_sigmas"] = True
    if beta_schedule != MODEL_DEFAULT:
        config["beta_schedule"] = beta_schedule
    if timestep_spacing != MODEL_DEFAULT:
        config["timestep_spacing"] = timestep_spacing
    return getattr(diffusers, class_name).from_config(config)


@node("diffusion.scheduler", category="diffusion/sampling", display_name="Scheduler")
def scheduler(
    scheduler: Scheduler,
    name: Choice(list(SCHEDULERS)) = "euler",
    karras_sigmas: Boolean = False,
    beta_schedule: Choice(BETA_SCHEDULES) = MODEL_DEFAULT,
    timestep_spacing: Choice(SPACINGS) = MODEL_DEFAULT,
) -> Scheduler:
    """Pick the sampling method (DDIM, Euler, DPM++ 2M, UniPC...).

    The model's own schedule (betas, training steps, prediction type) is kept; Karras sigmas,
    beta schedule and timestep spacing can be overridden.
    """
    return make_scheduler(scheduler, name, karras_sigmas, beta_schedule, timestep_spacing)


NODES = [scheduler]
