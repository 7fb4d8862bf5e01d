// Workflows as files: download as JSON, open a dropped or chosen JSON or PNG file.
import type { WorkflowDocument } from "../graph/document";
import { isPng, workflowFromPng } from "./pngText";

/** The workflow in a JSON file or a graphflow PNG; throws with a readable reason otherwise. */
export async function readWorkflowFile(file: File): Promise<unknown> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (isPng(bytes)) {
    const workflow = await workflowFromPng(bytes);
    if (workflow === null) throw new Error(`${file.name} carries no graphflow workflow`);
    return workflow;
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  } catch {
    throw new Error(`${file.name} is neither a workflow JSON file nor a graphflow PNG`);
  }
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
