// Opening a dropped or chosen file in the editor: graphflow documents load as they are; other
// workflows (ComfyUI JSON or PNGs) are imported by the server, with a notice saying what was
// read, the imported graph's problems marked, and every reason listed when it cannot be.
import { ApiError, importWorkflow, type GraphError, type WorkflowImport } from "../api/client";
import type { EditorState } from "../store";
import { readWorkflowFile, type WorkflowImporter } from "./workflowFiles";

/** The store actions opening a file uses. */
export type WorkflowOpenerActions = Pick<
  EditorState,
  "loadDocument" | "notify" | "setValidation" | "showProblems"
>;

/** "ComfyUI UI format (8 nodes → 7)" → "ComfyUI UI workflow (8 nodes → 7)" (PNG chunk left out). */
export function importedWhat(answer: WorkflowImport): string {
  return answer.label.replace(/ \(from the PNG's [^)]*\)/, "").replace(/ format\b/, " workflow");
}

/** The notice after an import. */
export function importNotice(answer: WorkflowImport, fileName: string): string {
  const count = answer.problems.length;
  const problems =
    count === 0 ? "." : `; ${count} problem${count === 1 ? "" : "s"} to fix: see the marked nodes.`;
  return `Imported ${importedWhat(answer)} from ${fileName}${problems}`;
}

/** One line per problem, naming the node and input it concerns (the file's node ids). */
export function problemLine(problem: GraphError): string {
  if (!problem.node) return problem.message;
  const input = problem.input ? `, input ${problem.input}` : "";
  return `node ${problem.node}${input}: ${problem.message}`;
}

/** Opens `file` in the editor; false (and the reasons shown) when it cannot be opened. */
export async function openWorkflowFile(
  file: File,
  actions: WorkflowOpenerActions,
  options: { announce?: boolean; importer?: WorkflowImporter } = {},
): Promise<boolean> {
  const name = file.name.replace(/\.(json|png)$/i, "");
  try {
    const { document, imported } = await readWorkflowFile(file, options.importer ?? importWorkflow);
    actions.loadDocument(document, name);
    if (imported === null) {
      if (options.announce) actions.notify("info", `Opened the workflow of ${file.name}.`);
      return true;
    }
    if (imported.problems.length > 0) actions.setValidation(imported.problems);
    actions.notify(imported.problems.length > 0 ? "error" : "info", importNotice(imported, file.name));
    return true;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof ApiError && error.errors.length > 0) {
      actions.showProblems([`${file.name}: ${message}`, ...error.errors.map(problemLine)]);
      actions.notify("error", `${file.name}: ${message} (listed above).`);
    } else {
      actions.notify("error", error instanceof ApiError ? `${file.name}: ${message}` : message);
    }
    return false;
  }
}
