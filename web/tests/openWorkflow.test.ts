import { beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { WorkflowImport } from "../src/api/client";
import type { WorkflowDocument } from "../src/graph/document";
import { catalog } from "./fixtures";

// The API client binds fetch when it is created, so the stub goes in before it loads.
const fetchMock = vi.fn<typeof fetch>();
vi.stubGlobal("fetch", fetchMock);
let client: typeof import("../src/api/client");
let opener: typeof import("../src/lib/openWorkflow");
let createEditorStore: typeof import("../src/store").createEditorStore;
beforeAll(async () => {
  client = await import("../src/api/client");
  opener = await import("../src/lib/openWorkflow");
  ({ createEditorStore } = await import("../src/store"));
});

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** A PNG of signature, tEXt chunks and IEND (CRCs are not checked by the reader). */
function png(texts: Record<string, string>): Uint8Array {
  const parts: number[] = [...SIGNATURE];
  const chunk = (kind: string, body: number[]) => {
    const length = body.length;
    parts.push(length >>> 24, (length >>> 16) & 255, (length >>> 8) & 255, length & 255);
    parts.push(...Array.from(kind, (c) => c.charCodeAt(0)), ...body, 0, 0, 0, 0);
  };
  for (const [key, text] of Object.entries(texts)) {
    chunk("tEXt", [...Array.from(key, (c) => c.charCodeAt(0)), 0, ...new TextEncoder().encode(text)]);
  }
  chunk("IEND", []);
  return new Uint8Array(parts);
}

const graphflowDoc: WorkflowDocument = {
  format: "graphflow/1",
  nodes: { n: { type: "core.int", inputs: { value: 3 } } },
};
const comfyUi = { last_node_id: 2, last_link_id: 0, nodes: [{ id: 1, type: "EmptyImage" }], links: [] };
const imported: WorkflowImport = {
  workflow: {
    format: "graphflow/1",
    nodes: {
      "1": { type: "core.int", inputs: { value: 7 } },
      "2": { type: "core.show", inputs: { value: { link: ["1", "int"] } } },
    },
  },
  format: "comfy-ui",
  label: "ComfyUI UI format (3 nodes → 2)",
  problems: [],
};

const fakeActions = () => ({
  loadDocument: vi.fn(),
  notify: vi.fn(),
  setValidation: vi.fn(),
  showProblems: vi.fn(),
});
const file = (content: string | Uint8Array, name: string) => new File([content as BlobPart], name);

beforeEach(() => fetchMock.mockReset());

describe("openWorkflowFile", () => {
  it("loads graphflow JSON and PNGs itself, without asking the server", async () => {
    const importer = vi.fn();
    for (const source of [
      file(JSON.stringify(graphflowDoc), "mine.json"),
      file(png({ graphflow_workflow: JSON.stringify(graphflowDoc), prompt: "{}" }), "mine.png"),
    ]) {
      const actions = fakeActions();
      expect(await opener.openWorkflowFile(source, actions, { announce: true, importer })).toBe(true);
      expect(actions.loadDocument).toHaveBeenCalledWith(graphflowDoc, "mine");
      expect(actions.notify).toHaveBeenCalledWith("info", `Opened the workflow of ${source.name}.`);
    }
    expect(importer).not.toHaveBeenCalled();
  });

  it("sends a foreign JSON document to the importer and loads what it answers", async () => {
    const importer = vi.fn().mockResolvedValue(imported);
    const actions = fakeActions();
    await opener.openWorkflowFile(file(JSON.stringify(comfyUi), "comfy.json"), actions, { importer });
    expect(importer).toHaveBeenCalledWith(comfyUi);
    expect(actions.loadDocument).toHaveBeenCalledWith(imported.workflow, "comfy");
    expect(actions.notify).toHaveBeenCalledWith(
      "info",
      "Imported ComfyUI UI workflow (3 nodes → 2) from comfy.json.",
    );
    expect(actions.setValidation).not.toHaveBeenCalled();
  });

  it("sends the bytes of a PNG without graphflow's chunk to the importer", async () => {
    const bytes = png({ prompt: '{"1": {"class_type": "EmptyImage", "inputs": {}}}' });
    const answer = { ...imported, format: "comfy-api", label: "ComfyUI API format (from the PNG's 'prompt' chunk) (2 nodes)" };
    const importer = vi.fn().mockResolvedValue(answer);
    const actions = fakeActions();
    await opener.openWorkflowFile(file(bytes, "ComfyUI_00001_.png"), actions, { importer });
    expect(importer).toHaveBeenCalledWith(bytes);
    expect(actions.loadDocument).toHaveBeenCalledWith(imported.workflow, "ComfyUI_00001_");
    expect(actions.notify).toHaveBeenCalledWith(
      "info",
      "Imported ComfyUI API workflow (2 nodes) from ComfyUI_00001_.png.",
    );
  });

  it("marks the problems of an imported workflow on its nodes", async () => {
    const store = createEditorStore();
    store.getState().setCatalog(catalog);
    const problem = { code: "out_of_range" as const, message: "must be at most 9", node: "1", input: "value" };
    const importer = vi.fn().mockResolvedValue({ ...imported, problems: [problem] });
    await opener.openWorkflowFile(file(JSON.stringify(comfyUi), "comfy.json"), store.getState(), { importer });
    const state = store.getState();
    expect(state.nodes.map((node) => node.id).sort()).toEqual(["1", "2"]);
    expect(state.problems["1"]?.inputs.value).toEqual(["must be at most 9"]);
    expect(state.notices.at(-1)?.text).toBe(
      "Imported ComfyUI UI workflow (3 nodes → 2) from comfy.json; 1 problem to fix: see the marked nodes.",
    );
  });

  it("lists every reason a workflow cannot be imported and keeps the graph", async () => {
    const refusal = new client.ApiError(422, "import_failed", "ComfyUI UI format cannot be imported: 2 problems", [
      { code: "unknown_node_type", message: "1 ComfyUI class type graphflow does not have: Magic (node 4)", node: null, input: null },
      { code: "link_missing_node", message: "links to node '9', which is not in the prompt", node: "5", input: "image" },
    ]);
    const actions = fakeActions();
    const opened = await opener.openWorkflowFile(file(JSON.stringify(comfyUi), "comfy.json"), actions, {
      importer: vi.fn().mockRejectedValue(refusal),
    });
    expect(opened).toBe(false);
    expect(actions.loadDocument).not.toHaveBeenCalled();
    expect(actions.showProblems).toHaveBeenCalledWith([
      "comfy.json: ComfyUI UI format cannot be imported: 2 problems",
      "1 ComfyUI class type graphflow does not have: Magic (node 4)",
      "node 5, input image: links to node '9', which is not in the prompt",
    ]);
    expect(actions.notify).toHaveBeenCalledWith("error", expect.stringContaining("listed above"));
  });

  it("says so when a file is neither JSON nor a PNG", async () => {
    const actions = fakeActions();
    const importer = vi.fn();
    expect(await opener.openWorkflowFile(file("hello", "notes.txt"), actions, { importer })).toBe(false);
    expect(actions.notify).toHaveBeenCalledWith("error", "notes.txt is neither a workflow JSON file nor a PNG");
    expect(importer).not.toHaveBeenCalled();
  });
});

describe("importWorkflow", () => {
  const answer = () => new Response(JSON.stringify(imported), { status: 200 });

  it("posts JSON documents as JSON and PNG bytes as image/png", async () => {
    fetchMock.mockResolvedValueOnce(answer()).mockResolvedValueOnce(answer());
    expect(await client.importWorkflow(comfyUi)).toEqual(imported);
    await client.importWorkflow(png({ prompt: "{}" }));
    const [[url, json], [, image]] = fetchMock.mock.calls as [Parameters<typeof fetch>, Parameters<typeof fetch>];
    expect(String(url)).toMatch(/\/api\/workflow\/import$/);
    expect(json?.method).toBe("POST");
    expect((json?.headers as Record<string, string>)["Content-Type"]).toBe("application/json");
    expect(JSON.parse(json?.body as string)).toEqual(comfyUi);
    expect((image?.headers as Record<string, string>)["Content-Type"]).toBe("image/png");
    expect(image?.body).toBeInstanceOf(Blob);
  });

  it("turns a refusal into an ApiError carrying every problem", async () => {
    const body = { error: { code: "import_failed", message: "cannot", errors: [{ code: "unknown_node_type", message: "x", node: null, input: null }] } };
    fetchMock.mockResolvedValueOnce(new Response(JSON.stringify(body), { status: 422 }));
    const error = await client.importWorkflow(comfyUi).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(client.ApiError);
    expect((error as InstanceType<typeof client.ApiError>).status).toBe(422);
    expect((error as InstanceType<typeof client.ApiError>).errors).toHaveLength(1);
  });
});
