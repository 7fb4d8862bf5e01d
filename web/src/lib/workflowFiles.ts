// Workflows as files: download as JSON, open a dropped or chosen JSON or PNG file.
import type { WorkflowImport } from "../api/client";
import type { WorkflowDocument } from "../graph/document";
import { isPng, workflowFromPng } from "./pngText";

/** A workflow read from a file: the document to load, and the server's answer when the file
 *  was not a graphflow document and the server imported it (e.g. a ComfyUI workflow). */
export interface OpenedWorkflow {
  document: unknown;
  imported: WorkflowImport | null;
}

/** Turns a foreign document (parsed JSON) or a PNG's bytes into graphflow/1 (the server does). */
export type WorkflowImporter = (source: Uint8Array | object) => Promise<WorkflowImport>;

/** A JSON object with a "format" field: graphflow's own document, loaded as it is. */
function isGraphflowDocument(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value) && "format" in value;
}

/** The workflow in a JSON file or a PNG. graphflow documents and PNGs are read here; other
 *  JSON objects and PNGs without graphflow's chunk go to `importer`. Throws with a reason. */
export async function readWorkflowFile(
  file: File,
  importer: WorkflowImporter,
): Promise<OpenedWorkflow> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (isPng(bytes)) {
    const workflow = await workflowFromPng(bytes);
    if (workflow !== null) return { document: workflow, imported: null };
    const imported = await importer(bytes);
    return { document: imported.workflow, imported };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  } catch {
    throw new Error(`${file.name} is neither a workflow JSON file nor a PNG`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || isGraphflowDocument(parsed)) {
    return { document: parsed, imported: null }; // the editor's own checks name what is wrong
  }
  const imported = await importer(parsed);
  return { document: imported.workflow, imported };
}

/** Saves the document as `<name>.json` through the browser's download. */
export function downloadWorkflow(doc: WorkflowDocument, name: string): void {
  const blob = new Blob([`${JSON.stringify(doc, null, 2)}\n`], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = `${name.replace(/\.json$/i, "") || "workflow"}.json`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
