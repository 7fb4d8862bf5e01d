"""ComfyUI's workflow formats as graphflow importers and exporters (graphflow.formats).

Read: the API format (a prompt; PNG chunk ``prompt``) and the UI format (a litegraph
workflow; PNG chunk ``workflow``); the prompt chunk is tried first, as it is what ComfyUI
ran. Written: ``comfy-api`` (PNG chunk ``prompt``) and ``comfy-ui`` (PNG chunk
``workflow``), so ComfyUI opens graphflow's saved images.
"""

from __future__ import annotations

from graphflow.formats import WorkflowExporter, WorkflowImporter

from . import api_format, ui_export, ui_format

API_IMPORTER = WorkflowImporter(
    name="comfy-api",
    label="ComfyUI API format",
    detect=api_format.is_api_prompt,
    to_graphflow=api_format.api_to_graphflow,
    png_keys=("prompt",),
    count_nodes=api_format.count_nodes,
)
UI_IMPORTER = WorkflowImporter(
    name="comfy-ui",
    label="ComfyUI UI format",
    detect=ui_format.is_ui_workflow,
    to_graphflow=ui_format.ui_to_graphflow,
    png_keys=("workflow",),
    count_nodes=ui_format.count_nodes,
)
API_EXPORTER = WorkflowExporter(
    name="comfy-api",
    label="ComfyUI API format",
    from_graphflow=api_format.graphflow_to_api,
    png_key="prompt",
)
UI_EXPORTER = WorkflowExporter(
    name="comfy-ui",
    label="ComfyUI UI format",
    from_graphflow=ui_export.graphflow_to_ui,
    png_key="workflow",
)

IMPORTERS = (API_IMPORTER, UI_IMPORTER)
EXPORTERS = (API_EXPORTER, UI_EXPORTER)
