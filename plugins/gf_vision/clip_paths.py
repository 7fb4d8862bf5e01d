"""Where our small CLIP's files live (torch-free, so listing the plugin imports no torch)."""

from pathlib import Path

EMBEDDED_NAME = "clip-graphflow-mini"
EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded" / EMBEDDED_NAME
WEIGHTS_FILE = "model.safetensors"
