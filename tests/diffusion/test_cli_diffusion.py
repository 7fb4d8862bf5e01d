"""The CLI runs diffusion workflows from a models folder given on the command line."""

from __future__ import annotations

from pathlib import Path

from graphflow.cli import main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "benchmarks" / "txt2img_bench.json"


def test_run_txt2img_with_models_dir(models_root, capsys, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", "/nonexistent")  # restored after; main() overrides
    code = main(
        [
            "run",
            str(WORKFLOW),
            "--models-dir",
            str(models_root),
            "--quiet",
            "--set",
            "ckpt.checkpoint=tiny-sd",
            "--set",
            "sample.steps=2",
            "--set",
            "empty.width=32",
            "--set",
            "empty.height=32",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "show text: Tensor(shape=(1, 32, 32, 3), dtype=torch.float32" in out


def test_validate_lists_available_checkpoints_when_one_is_missing(models_root, capsys, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", "/nonexistent")  # restored after; main() overrides
    code = main(["validate", str(WORKFLOW), "--models-dir", str(models_root)])
    _, err = capsys.readouterr()
    assert code == 1
    assert "not_in_choices: [node 'ckpt', input 'checkpoint'] 'bench-sd' is not one of" in err
    assert "'tiny-sd'" in err
