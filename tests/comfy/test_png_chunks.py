"""PNG round trips both ways, and the CLI on ComfyUI files (detected, converted, run).

Uses ComfyUI class types the pack registers (EmptyImage, ImageInvert) and graphflow's own
``image.save`` as a class type, so nothing here needs a model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from gf_comfy.api_format import api_to_graphflow, graphflow_to_api
from gf_comfy.ui_export import graphflow_to_ui
from gf_comfy.ui_format import ui_to_api, ui_to_graphflow
from graphflow.cli import main
from graphflow.formats import read_workflow_file
from graphflow.pngmeta import PARAMETERS_KEY, WORKFLOW_KEY, png_text_chunks
from tests.comfy.formats_support import ui_node, ui_workflow

PROMPT = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0x336699},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "image.save", "inputs": {"images": ["2", 0], "filename_prefix": "gf"}},
}
UI = ui_workflow(
    [
        ui_node(1, "EmptyImage", [8, 8, 1, 0x336699], outputs=[("IMAGE", "IMAGE", [1])]),
        ui_node(
            2, "ImageInvert", [], inputs=[("image", "IMAGE", 1)], outputs=[("IMAGE", "IMAGE", [2])]
        ),
        ui_node(4, "Note", ["made by hand"]),
        ui_node(3, "image.save", ["gf"], inputs=[("images", "IMAGE", 2)]),
    ],
    [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def comfy_png(path: Path, texts: dict) -> Path:
    """A PNG as ComfyUI writes one: a ``prompt`` chunk, then one per extra_pnginfo key."""
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, json.dumps(value))
    PILImage.new("RGB", (4, 4)).save(path, pnginfo=info)
    return path


def test_run_api_json_says_what_it_was_read_as(capsys, tmp_path):
    path = write_json(tmp_path / "api.json", PROMPT)
    code, _, err = cli(capsys, "run", path, "--output", tmp_path / "out", "--quiet")
    assert code == 0, err
    assert err.strip() == "read as ComfyUI API format (3 nodes)"
    assert (tmp_path / "out" / "gf_00001.png").is_file()


def test_run_ui_json_counts_the_nodes_it_dropped(capsys, tmp_path):
    path = write_json(tmp_path / "ui.json", UI)
    code, _, err = cli(capsys, "run", path, "--output", tmp_path / "out", "--quiet")
    assert code == 0, err
    assert err.strip() == "read as ComfyUI UI format (4 nodes → 3)"


def test_validate_lists_missing_class_types_without_a_traceback(capsys, tmp_path):
    prompt = {
        **PROMPT,
        "7": {"class_type": "FaceDetailer", "inputs": {"image": ["2", 0]}},
        "8": {"class_type": "FaceDetailer", "inputs": {}},
    }
    path = write_json(tmp_path / "api.json", prompt)
    code, _, err = cli(capsys, "validate", path)
    assert code == 1
    assert f"{path}: 1 problem" in err
    assert (
        "unknown_node_type: 1 ComfyUI class type graphflow does not have: FaceDetailer "
        "(nodes 7, 8)" in err
    )
    assert "Traceback" not in err
    n = len(prompt)
    assert err.splitlines()[0] == f"read as ComfyUI API format ({n} nodes)"  # said when refused


def test_convert_ui_to_api_graphflow_and_back_to_ui(capsys, tmp_path, registry):
    source = write_json(tmp_path / "ui.json", UI)
    code, out, err = cli(capsys, "convert", source, tmp_path / "api.json", "--to", "comfy-api")
    assert code == 0, err
    assert "wrote" in out and "read as ComfyUI UI format" in err
    api = json.loads((tmp_path / "api.json").read_text())
    assert {k: (v["class_type"], v["inputs"]) for k, v in api.items()} == {
        k: (v["class_type"], v["inputs"]) for k, v in PROMPT.items()
    }
    assert cli(capsys, "convert", source, tmp_path / "g.json")[0] == 0
    graph = json.loads((tmp_path / "g.json").read_text())
    assert graph["format"] == "graphflow/1" and graph["editor"]["comfy"]["workflow"] == UI
    # an imported, unchanged UI workflow is given back as it was
    assert (
        cli(capsys, "convert", tmp_path / "g.json", tmp_path / "ui2.json", "--to", "comfy-ui")[0]
        == 0
    )
    assert json.loads((tmp_path / "ui2.json").read_text()) == UI


def test_convert_to_an_unknown_format_is_a_usage_error(capsys, tmp_path):
    source = write_json(tmp_path / "api.json", PROMPT)
    code, _, err = cli(capsys, "convert", source, tmp_path / "x.json", "--to", "a1111")
    assert code == 2
    assert "--to 'a1111' is not a known format (known: graphflow, comfy-api, comfy-ui)" in err


def test_graphflow_pngs_carry_comfyui_prompt_and_workflow_after_their_own(
    capsys, tmp_path, registry
):
    path = write_json(tmp_path / "api.json", PROMPT)
    assert cli(capsys, "run", path, "--output", tmp_path / "out", "--quiet")[0] == 0
    png = (tmp_path / "out" / "gf_00001.png").read_bytes()
    texts = png_text_chunks(png)
    assert list(texts) == [WORKFLOW_KEY, PARAMETERS_KEY, "prompt", "workflow"]
    prompt = json.loads(texts["prompt"])
    assert {k: (v["class_type"], v["inputs"]) for k, v in prompt.items()} == {
        k: (v["class_type"], v["inputs"]) for k, v in PROMPT.items()
    }
    # ComfyUI's UI chunk converts back to the same prompt
    workflow = json.loads(texts["workflow"])
    assert ui_to_api(workflow, registry) == prompt
    graph = json.loads(texts[WORKFLOW_KEY])
    assert ui_to_graphflow(workflow, registry)["nodes"] == graph["nodes"]


def test_graphflow_run_on_its_own_png_reads_graphflows_chunk(capsys, tmp_path):
    path = write_json(tmp_path / "api.json", PROMPT)
    assert cli(capsys, "run", path, "--output", tmp_path / "out", "--quiet")[0] == 0
    png = tmp_path / "out" / "gf_00001.png"
    code, _, err = cli(capsys, "run", png, "--output", tmp_path / "again", "--quiet")
    assert code == 0 and err == ""  # graphflow/1: no "read as" line
    assert (tmp_path / "again" / "gf_00001.png").is_file()


def test_comfyui_png_runs_from_its_prompt_chunk_keeping_the_workflow(capsys, tmp_path, registry):
    png = comfy_png(tmp_path / "ComfyUI_00001_.png", {"prompt": PROMPT, "workflow": UI})
    workflow, label = read_workflow_file(png, registry)
    assert label == "ComfyUI API format (from the PNG's 'prompt' chunk) (3 nodes)"
    assert workflow.editor["comfy"]["workflow"] == UI
    assert workflow.editor["comfy"]["extra_pnginfo"] == {"workflow": UI}
    code, _, err = cli(capsys, "run", png, "--output", tmp_path / "out", "--quiet")
    assert code == 0, err
    texts = png_text_chunks((tmp_path / "out" / "gf_00001.png").read_bytes())
    assert json.loads(texts["workflow"]) == UI  # unchanged: ComfyUI gets its own layout back


def test_comfyui_png_with_only_a_workflow_chunk_is_read_as_ui(tmp_path, registry):
    png = comfy_png(tmp_path / "ui.png", {"workflow": UI})
    workflow, label = read_workflow_file(png, registry)
    assert label == "ComfyUI UI format (from the PNG's 'workflow' chunk) (4 nodes → 3)"
    assert set(workflow.nodes) == {"1", "2", "3"}


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_graphflow_workflows_survive_a_round_trip_through_comfyui_formats(path, registry):
    from graphflow.subgraphs import flat_document

    # ComfyUI's formats hold no graphflow subgraphs: they are exported flattened ("12:3")
    doc = flat_document(json.loads(path.read_text()), registry, path.parent)
    for exporter, importer in (
        (graphflow_to_ui, ui_to_graphflow),
        (graphflow_to_api, api_to_graphflow),
    ):
        back = importer(exporter(doc, registry), registry)["nodes"]
        assert set(back) == set(doc["nodes"])
        for node_id, entry in doc["nodes"].items():
            assert back[node_id]["type"] == entry["type"]
            # every input given comes back the same; the UI adds the widgets' defaults
            assert back[node_id]["inputs"].items() >= entry["inputs"].items()


def test_convert_takes_a_png_and_writes_standard_output(capsys, tmp_path):
    png = comfy_png(tmp_path / "c.png", {"prompt": PROMPT, "workflow": UI})
    code, out, err = cli(capsys, "convert", png, "-", "--to", "comfy-api")
    assert code == 0, err
    assert err.strip() == "read as ComfyUI API format (from the PNG's 'prompt' chunk) (3 nodes)"
    assert {k: v["inputs"] for k, v in json.loads(out).items()} == {
        k: v["inputs"] for k, v in PROMPT.items()
    }
