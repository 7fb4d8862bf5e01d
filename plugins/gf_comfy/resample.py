"""ComfyUI's resampling rules now live in ``gf_diffusion.resample`` (native nodes use them
too); this name stays for modules that still import ``gf_comfy.resample``."""

from gf_diffusion.resample import (  # noqa: F401
    CROP_METHODS,
    IMAGE_METHODS,
    LATENT_METHODS,
    bislerp,
    center_crop,
    common_upscale,
    lanczos,
)
