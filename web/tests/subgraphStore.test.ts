// The store with subgraphs: opening, editing and closing one, collapsing (nothing here talks to
// the server).
import { beforeEach, describe, expect, it } from "vitest";
import type { WorkflowDocument } from "../src/graph/document";
import { INPUTS_NODE, OUTPUTS_NODE } from "../src/graph/subgraphs";
import { createEditorStore } from "../src/store";
import { catalog } from "./fixtures";

const doc: WorkflowDocument = {
  format: "graphflow/1",
  nodes: {
    x: { type: "core.int", inputs: { value: 3 } },
    plus: { type: "subgraph", subgraph: "plus", inputs: { a: { link: ["x", "int"] } }, title: "Plus five" },
    show: { type: "core.show", inputs: { value: { link: ["plus", "sum"] }, label: "" } },
  },
  subgraphs: {
    plus: {
      title: "Plus",
      inputs: [
        { name: "a", type: "FLOAT" },
        { name: "b", type: "FLOAT", default: 5 },
      ],
      outputs: [{ name: "sum", from: ["add", "float"], type: "FLOAT" }],
      nodes: { add: { type: "core.add", inputs: { a: { link: ["$in", "a"] }, b: { link: ["$in", "b"] } } } },
    },
  },
};

let store: ReturnType<typeof createEditorStore>;
const state = () => store.getState();
const select = (...ids: string[]) =>
  store.setState({ nodes: state().nodes.map((n) => ({ ...n, selected: ids.includes(n.id) })) });

beforeEach(() => {
  store = createEditorStore();
  state().setCatalog(catalog);
  state().loadDocument(structuredClone(doc));
});

describe("opening a subgraph", () => {
  it("shows its inner graph and a path back; edits inside are written into the definition", () => {
    expect(state().openSubgraph("plus")).toBe(true);
    expect(state().openPath.map((frame) => frame.title)).toEqual(["Plus five"]);
    expect(state().nodes.map((node) => node.id)).toEqual([INPUTS_NODE, "add", OUTPUTS_NODE]);
    state().setValue("add", "a", 1); // kept for when the link goes; the link still wins
    state().onEdgesChange([{ type: "remove", id: `${INPUTS_NODE}.b->add.b` }]);
    state().setValue("add", "b", 7);
    // The whole document is current while the subgraph is open (saving, queueing).
    const current = state().currentDocument();
    expect(Object.keys(current.nodes)).toEqual(["x", "plus", "show"]);
    expect(current.subgraphs?.plus?.nodes.add?.inputs).toEqual({ a: { link: ["$in", "a"] }, b: 7 });
    state().closeSubgraph(0);
    expect(state().openPath).toEqual([]);
    expect(state().nodes.map((node) => node.id)).toEqual(["x", "plus", "show"]);
    expect(state().subgraphs.plus?.nodes.add?.inputs).toEqual({ a: { link: ["$in", "a"] }, b: 7 });
    expect(state().currentDocument().nodes.plus).toEqual(doc.nodes.plus);
  });

  it("does not open a node that is no subgraph, or one from a file", () => {
    expect(state().openSubgraph("x")).toBe(false);
    state().loadDocument({
      format: "graphflow/1",
      nodes: { s: { type: "subgraph", subgraph: "megapixels", file: "lib.json", inputs: { width: 2 } } },
    });
    expect(state().openSubgraph("s")).toBe(false);
    expect(state().currentDocument().nodes.s).toEqual({
      type: "subgraph",
      subgraph: "megapixels",
      file: "lib.json",
      inputs: { width: 2 },
    });
  });

  it("keeps the ends of an opened subgraph out of deleting and copying", () => {
    state().openSubgraph("plus");
    select(INPUTS_NODE, OUTPUTS_NODE, "add");
    expect(state().copy()).toBe(true);
    expect(state().clipboard?.nodes.map((node) => node.id)).toEqual(["add"]);
    state().deleteSelected();
    expect(state().nodes.map((node) => node.id)).toEqual([INPUTS_NODE, OUTPUTS_NODE]);
  });

  it("shows validation errors with a path on the subgraph node, then on the inner node", () => {
    state().setValidation([
      { code: "missing_input", message: "needs b", node: "plus:add", input: "b", path: ["plus", "add"] },
    ]);
    expect(state().problems.plus?.node).toEqual(["in add, input b: needs b"]);
    state().openSubgraph("plus");
    expect(state().problems.add?.inputs.b).toEqual(["needs b"]);
    state().setValue("add", "b", 2);
    state().closeSubgraph(0);
    expect(state().problems.plus).toBeUndefined();
  });
});

describe("collapsing the selection", () => {
  it("makes one subgraph node, undoable in one step", () => {
    state().closeSubgraph(0);
    select("x");
    const id = state().collapseSelected();
    expect(id).toBe("subgraph");
    expect(Object.keys(state().subgraphs)).toEqual(["plus", "subgraph"]);
    expect(state().currentDocument().nodes.plus?.inputs?.a).toEqual({ link: ["subgraph", "int"] });
    state().undo();
    expect(Object.keys(state().subgraphs)).toEqual(["plus"]);
    expect(state().currentDocument()).toMatchObject({ nodes: doc.nodes, subgraphs: doc.subgraphs });
  });

  it("works inside an opened subgraph: the new definition is used by the inner graph", () => {
    state().openSubgraph("plus");
    select("add");
    const id = state().collapseSelected();
    state().closeSubgraph(0);
    const current = state().currentDocument();
    expect(Object.keys(current.subgraphs?.plus?.nodes ?? {})).toEqual([id]);
    expect(current.subgraphs?.plus?.outputs[0]?.from).toEqual([id, "float"]);
    expect(current.subgraphs?.subgraph?.inputs.map((input) => input.name)).toEqual(["a", "b"]);
  });

  it("refuses, saying which nodes are in the way, when the subgraph would feed itself", () => {
    select("x", "show"); // x → plus → show: plus lies between
    const before = state().currentDocument();
    expect(state().collapseSelected()).toBeNull();
    expect(state().currentDocument()).toEqual(before);
    const notice = state().notices.at(-1);
    expect(notice?.kind).toBe("error");
    expect(notice?.text).toMatch(/plus lies between selected nodes/);
  });
});
