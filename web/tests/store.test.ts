import { beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { WorkflowDocument } from "../src/graph/document";
import { catalog } from "./fixtures";

// The API client binds fetch when it is created, so the stub goes in before the store loads.
const fetchMock = vi.fn<typeof fetch>();
vi.stubGlobal("fetch", fetchMock);
vi.stubGlobal("URL", Object.assign(URL, { createObjectURL: () => "blob:x", revokeObjectURL: () => {} }));
let createEditorStore: typeof import("../src/store").createEditorStore;
beforeAll(async () => {
  ({ createEditorStore } = await import("../src/store"));
});

const doc: WorkflowDocument = {
  format: "graphflow/1",
  nodes: {
    photo: { type: "image.example_photo", inputs: { photo: "coffee", size: 64 } },
    preview: { type: "image.preview", inputs: { images: { link: ["photo", "image"] } } },
    number: { type: "core.int", inputs: { value: 3 } },
    sum: { type: "core.add", inputs: { a: 1, b: 2 } },
  },
};

let store: ReturnType<typeof createEditorStore>;
const state = () => store.getState();
const connection = (source: string, output: string, target: string, input: string) => ({
  source,
  sourceHandle: `out:${output}`,
  target,
  targetHandle: `in:${input}`,
});
const select = (...ids: string[]) =>
  store.setState({ nodes: state().nodes.map((n) => ({ ...n, selected: ids.includes(n.id) })) });

beforeEach(() => {
  fetchMock.mockReset();
  store = createEditorStore();
  state().setCatalog(catalog);
  state().loadDocument(doc);
});

describe("connecting ports", () => {
  it("accepts compatible types, including INT into FLOAT", () => {
    expect(state().isValidConnection(connection("number", "int", "sum", "a"))).toBe(true);
    state().connect(connection("number", "int", "sum", "a"));
    expect(state().currentDocument().nodes.sum?.inputs?.a).toEqual({ link: ["number", "int"] });
  });

  it("refuses incompatible types and self-links", () => {
    expect(state().isValidConnection(connection("number", "int", "preview", "images"))).toBe(false);
    state().connect(connection("number", "int", "preview", "images"));
    expect(state().edges).toHaveLength(1);
    expect(state().isValidConnection(connection("sum", "float", "sum", "a"))).toBe(false);
  });

  it("replaces the link of an input that is already linked", () => {
    state().addNode("image.example_photo", { x: 0, y: 0 });
    state().connect(connection("example_photo", "image", "preview", "images"));
    expect(state().edges).toHaveLength(1);
    expect(state().currentDocument().nodes.preview?.inputs?.images).toEqual({
      link: ["example_photo", "image"],
    });
  });
});

describe("editing", () => {
  it("adds a node with default values under a readable unique id", () => {
    expect(state().addNode("core.add", { x: 10, y: 20 })).toBe("add");
    expect(state().addNode("core.add", { x: 10, y: 20 })).toBe("add_2");
    expect(state().currentDocument().nodes.add).toEqual({ type: "core.add", inputs: { a: 0, b: 0 } });
    expect(state().addNode("no.such_node", { x: 0, y: 0 })).toBeNull();
  });

  it("undoes and redoes a value change", () => {
    state().setValue("sum", "a", 5);
    expect(state().currentDocument().nodes.sum?.inputs?.a).toBe(5);
    state().undo();
    expect(state().currentDocument().nodes.sum?.inputs?.a).toBe(1);
    state().redo();
    expect(state().currentDocument().nodes.sum?.inputs?.a).toBe(5);
  });

  it("merges quick edits of one input into one undo step", () => {
    state().setValue("photo", "size", 1);
    state().setValue("photo", "size", 12);
    state().setValue("photo", "size", 128);
    state().undo();
    expect(state().currentDocument().nodes.photo?.inputs?.size).toBe(64);
  });

  it("deletes the selection with its links, and undo restores both", () => {
    select("photo");
    state().deleteSelected();
    expect(state().nodes.map((n) => n.id)).toEqual(["preview", "number", "sum"]);
    expect(state().edges).toHaveLength(0);
    state().undo();
    expect(state().nodes).toHaveLength(4);
    expect(state().edges).toHaveLength(1);
  });

  it("pastes copies under fresh ids, with the links among them, moved aside", () => {
    select("photo", "preview");
    expect(state().copy()).toBe(true);
    state().paste();
    const ids = state().nodes.map((n) => n.id);
    expect(ids).toEqual(["photo", "preview", "number", "sum", "photo_2", "preview_2"]);
    expect(state().currentDocument().nodes.preview_2?.inputs?.images).toEqual({
      link: ["photo_2", "image"],
    });
    const original = state().nodes.find((n) => n.id === "photo");
    const copy = state().nodes.find((n) => n.id === "photo_2");
    expect(copy?.position.x).toBe((original?.position.x ?? 0) + 40);
    expect(state().nodes.filter((n) => n.selected).map((n) => n.id)).toEqual(["photo_2", "preview_2"]);
  });

  it("renames a node, and an empty title goes back to the type's name", () => {
    state().setTitle("sum", "  Total ");
    expect(state().currentDocument().nodes.sum?.title).toBe("Total");
    state().setTitle("sum", "");
    expect(state().currentDocument().nodes.sum).not.toHaveProperty("title");
    state().undo();
    expect(state().currentDocument().nodes.sum?.title).toBe("Total");
  });

  it("has nothing to copy without a selection", () => {
    select();
    expect(state().copy()).toBe(false);
  });
});

describe("what the server reports", () => {
  it("puts validation errors on their node and input, others in the general list", () => {
    state().setValidation([
      { code: "missing_input", message: "required", node: "preview", input: "images" },
      { code: "out_of_range", message: "too big", node: "photo", input: null },
      { code: "no_output", message: "nothing to run", node: null, input: null },
    ]);
    expect(state().problems.preview?.inputs.images).toEqual(["required"]);
    expect(state().problems.photo?.node).toEqual(["too big"]);
    expect(state().generalProblems).toEqual(["nothing to run"]);
    state().setValue("preview", "images", 1);
    expect(state().problems.preview?.inputs.images).toBeUndefined();
  });

  it("follows a run: queued, running with progress, cached, done with images", () => {
    const job = "j1";
    state().handleEvent({ type: "run_started", data: { job_id: job, planned: ["photo", "preview", "sum"] } });
    expect(state().nodeRuns.preview?.status).toBe("queued");
    state().handleEvent({ type: "node_cached", data: { job_id: job, node: "photo" } });
    state().handleEvent({ type: "node_started", data: { job_id: job, node: "preview" } });
    state().handleEvent({ type: "progress", data: { job_id: job, node: "preview", value: 2, total: 4 } });
    expect(state().nodeRuns.preview).toMatchObject({ status: "running", progress: { value: 2, total: 4 } });
    const ui = { images: [{ filename: "p.png", subfolder: "", type: "temp" }] };
    state().handleEvent({ type: "node_finished", data: { job_id: job, node: "preview", seconds: 0.1, ui } });
    state().handleEvent({ type: "job_done", data: { job_id: job, status: "done", error: null } });
    expect(state().nodeRuns.photo?.status).toBe("cached");
    expect(state().nodeRuns.preview).toMatchObject({ status: "done", ui });
    expect(state().nodeRuns.sum).toBeUndefined(); // planned but never ran
    expect(state().historyVersion).toBe(1);
  });

  it("shows a cached output node's images from the job's record", async () => {
    const ui = { images: [{ filename: "old.png", subfolder: "", type: "output" }] };
    fetchMock.mockResolvedValueOnce(
      new Response(
        JSON.stringify({ job_id: "j2", status: "done", outputs: { preview: ui } }),
        { status: 200, headers: { "Content-Type": "application/json" } },
      ),
    );
    state().handleEvent({ type: "run_started", data: { job_id: "j2", planned: ["photo", "preview"] } });
    state().handleEvent({ type: "node_cached", data: { job_id: "j2", node: "photo" } });
    state().handleEvent({ type: "node_cached", data: { job_id: "j2", node: "preview" } });
    state().handleEvent({ type: "job_done", data: { job_id: "j2", status: "done", error: null } });
    await vi.waitFor(() => expect(state().nodeRuns.preview?.ui).toEqual(ui));
    expect(state().nodeRuns.preview?.status).toBe("cached");
    expect(String((fetchMock.mock.calls[0]?.[0] as Request).url)).toContain("/api/history/j2");
  });

  it("marks the failing node with the exception", () => {
    state().handleEvent({ type: "run_started", data: { job_id: "j", planned: ["sum"] } });
    state().handleEvent({
      type: "run_failed",
      data: { job_id: "j", node: "sum", exception_type: "ValueError", message: "bad" },
    });
    expect(state().nodeRuns.sum).toMatchObject({ status: "failed", message: "ValueError: bad" });
  });
});

describe("queueing", () => {
  const answer = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

  it("randomises marked seeds before sending, and shows the seed used", async () => {
    state().addNode("diffusion.sampler", { x: 0, y: 0 });
    state().setRandomize("sampler", "seed", true);
    fetchMock.mockResolvedValueOnce(answer(200, { job_id: "abc", position: 0 }));
    expect(await state().queueWorkflow()).toBe("abc");
    const request = fetchMock.mock.calls[0]?.[0] as Request;
    const body = (await request.json()) as { workflow: WorkflowDocument; client_id: string };
    const sent = body.workflow.nodes.sampler?.inputs?.seed;
    expect(typeof sent).toBe("number");
    expect(state().nodes.find((n) => n.id === "sampler")?.data.values.seed).toBe(sent);
    expect(body.client_id).toBe(state().clientId);
    expect(body.workflow.editor?.randomize).toEqual({ sampler: ["seed"] });
  });

  it("randomises marked seeds of the workflow and its subgraphs while a subgraph is open", async () => {
    state().addNode("diffusion.sampler", { x: 0, y: 0 });
    state().setRandomize("sampler", "seed", true);
    select("sampler");
    const subgraph = state().collapseSelected() ?? "";
    state().addNode("diffusion.sampler", { x: 0, y: 0 }); // "sampler" again, outside
    state().setRandomize("sampler", "seed", true);
    state().openSubgraph(subgraph);
    fetchMock.mockResolvedValueOnce(answer(200, { job_id: "abc", position: 0 }));
    expect(await state().queueWorkflow()).toBe("abc");
    const request = fetchMock.mock.calls[0]?.[0] as Request;
    const sent = ((await request.json()) as { workflow: WorkflowDocument }).workflow;
    const inner = sent.subgraphs?.subgraph?.nodes.sampler?.inputs?.seed;
    const outer = sent.nodes.sampler?.inputs?.seed;
    expect(inner).not.toBe(0);
    expect(outer).not.toBe(0);
    expect(state().nodes.find((n) => n.id === "sampler")?.data.values.seed).toBe(inner);
    state().closeSubgraph(0);
    expect(state().nodes.find((n) => n.id === "sampler")?.data.values.seed).toBe(outer);
  });

  it("shows a refused workflow's problems on the nodes, not as raw JSON", async () => {
    fetchMock.mockResolvedValueOnce(
      answer(400, {
        error: {
          code: "validation_failed",
          message: "workflow has 1 problem",
          errors: [{ code: "missing_input", message: "not set", node: "preview", input: "images" }],
        },
      }),
    );
    expect(await state().queueWorkflow()).toBeNull();
    expect(state().problems.preview?.inputs.images).toEqual(["not set"]);
    expect(state().notices.at(-1)).toMatchObject({ kind: "error" });
    expect(state().notices.at(-1)?.text).not.toContain("{");
  });
});
