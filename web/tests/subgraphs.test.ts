import { describe, expect, it } from "vitest";
import { parseCatalog, type RawCatalog } from "../src/api/catalog";
import { collapseSelection, nodesBetweenSelected } from "../src/graph/collapse";
import {
  asWorkflowDocument,
  documentToGraph,
  graphToDocument,
  type WorkflowDocument,
} from "../src/graph/document";
import { innerGraph, writeDefinition } from "../src/graph/innerGraph";
import type { GraphNode } from "../src/graph/model";
import { locateProblems, withoutProblemsOf } from "../src/graph/problems";
import { INPUTS_NODE, OUTPUTS_NODE, nodeSpecOf } from "../src/graph/subgraphs";
import filmLook from "../../workflows/subgraph_film_look.json";
import fromFile from "../../workflows/subgraph_from_file.json";
import megapixels from "../../workflows/subgraph_math.json";
import { rawCatalog } from "./fixtures";

const math = (id: string, inputs: string[], output: string, outputType = "FLOAT") => ({
  id,
  display_name: id,
  category: "core/math",
  description: id,
  inputs: inputs.map((name) => ({ name, type: name === "mode" ? "STRING" : "FLOAT", required: false, lazy: false, default: 0 })),
  outputs: [{ name: output, type: outputType }],
  output_node: false,
});
const raw = rawCatalog as unknown as { types: unknown[]; nodes: Record<string, unknown> };
const catalog = parseCatalog({
  types: raw.types,
  nodes: {
    ...raw.nodes,
    "core.multiply": math("core.multiply", ["a", "b"], "float"),
    "core.divide": math("core.divide", ["a", "b"], "float"),
    "core.round": math("core.round", ["value", "mode"], "int", "INT"),
  },
} as unknown as RawCatalog);

const load = (value: unknown) => asWorkflowDocument(structuredClone(value));
const withoutEditor = (doc: WorkflowDocument) => ({ ...doc, editor: undefined });

function roundTrip(value: unknown): WorkflowDocument {
  const doc = load(value);
  const { nodes, edges } = documentToGraph(doc, catalog);
  return graphToDocument(nodes, edges, catalog, undefined, doc.subgraphs);
}

describe("documents with subgraphs", () => {
  it.each([
    ["subgraph_math", megapixels],
    ["subgraph_film_look", filmLook],
    ["subgraph_from_file", fromFile],
  ])("%s.json saves back unchanged: subgraph nodes and the subgraphs section", (_, value) => {
    expect(withoutEditor(roundTrip(value))).toEqual({ ...structuredClone(value), editor: undefined });
  });

  it("shows a subgraph node with the definition's typed inputs and outputs and its title", () => {
    const doc = load(megapixels);
    const size = documentToGraph(doc, catalog).nodes.find((node) => node.id === "size");
    const spec = nodeSpecOf(catalog, doc.subgraphs ?? {}, size?.data);
    expect(spec?.display_name).toBe("Megapixels");
    expect(spec?.inputs.map((input) => [input.name, input.type, input.required])).toEqual([
      ["width", "INT", true],
      ["height", "INT", true],
    ]);
    // "pixels" declares no type: it is the FLOAT its source (the area subgraph) declares.
    expect(spec?.outputs).toEqual([
      { name: "megapixels", type: "FLOAT" },
      { name: "pixels", type: "FLOAT" },
    ]);
  });

  it("keeps an unset subgraph input unset (its default applies) rather than writing it", () => {
    const doc = load(filmLook);
    const light = documentToGraph(doc, catalog).nodes.find((node) => node.id === "light");
    expect(light?.data.values).toEqual({ grain: 0.1 });
  });

  it("refuses a subgraphs section that is not an object of definitions with nodes", () => {
    expect(() => asWorkflowDocument({ format: "graphflow/1", nodes: {}, subgraphs: [] })).toThrow(/subgraphs/);
    expect(() => asWorkflowDocument({ format: "graphflow/1", nodes: {}, subgraphs: { a: {} } })).toThrow(
      /subgraph "a" has no 'nodes'/,
    );
  });
});

const sums: WorkflowDocument = {
  format: "graphflow/1",
  nodes: {
    width: { type: "core.int", inputs: { value: 1920 } },
    height: { type: "core.int", inputs: { value: 1080 } },
    product: { type: "core.multiply", inputs: { a: { link: ["width", "int"] }, b: { link: ["height", "int"] } } },
    scaled: { type: "core.divide", inputs: { a: { link: ["product", "float"] }, b: 1000000 } },
    twice: { type: "core.add", inputs: { a: { link: ["width", "int"] }, b: { link: ["width", "int"] } } },
    show: { type: "core.show", inputs: { value: { link: ["scaled", "float"] }, label: "mp" } },
    show_px: { type: "core.show", inputs: { value: { link: ["product", "float"] }, label: "px" } },
  },
};

function collapsed(doc: WorkflowDocument, ids: string[]) {
  const graph = documentToGraph(doc, catalog);
  const nodes = graph.nodes.map((node) => ({ ...node, selected: ids.includes(node.id) }));
  const result = collapseSelection(nodes, graph.edges, catalog, doc.subgraphs ?? {});
  if (!result) throw new Error("nothing collapsed");
  return { result, doc: graphToDocument(result.nodes, result.edges, catalog, undefined, result.subgraphs) };
}

describe("collapsing a selection into a subgraph", () => {
  it("turns links across the boundary into typed inputs and outputs, keeping the inside", () => {
    const { result, doc } = collapsed(sums, ["product", "scaled"]);
    expect(result.subgraphId).toBe("subgraph");
    const definition = doc.subgraphs?.subgraph;
    expect(definition?.inputs).toEqual([
      { name: "a", type: "INT" },
      { name: "b", type: "INT" },
    ]);
    expect(definition?.outputs).toEqual([
      // two "float" outputs: each is named after its node
      { name: "product", from: ["product", "float"], type: "FLOAT" },
      { name: "scaled", from: ["scaled", "float"], type: "FLOAT" },
    ]);
    expect(definition?.nodes).toEqual({
      product: { type: "core.multiply", inputs: { a: { link: ["$in", "a"] }, b: { link: ["$in", "b"] } } },
      scaled: { type: "core.divide", inputs: { a: { link: ["product", "float"] }, b: 1000000 } },
    });
    expect(doc.nodes[result.nodeId]).toEqual({
      type: "subgraph",
      subgraph: "subgraph",
      inputs: { a: { link: ["width", "int"] }, b: { link: ["height", "int"] } },
    });
    expect(doc.nodes.show?.inputs?.value).toEqual({ link: [result.nodeId, "scaled"] });
    expect(doc.nodes.show_px?.inputs?.value).toEqual({ link: [result.nodeId, "product"] });
    expect(Object.keys(doc.nodes).sort()).toEqual(["height", "show", "show_px", "subgraph", "twice", "width"]);
  });

  it("gives one input to an outside output that feeds several inner inputs", () => {
    const { doc } = collapsed(sums, ["twice"]);
    const definition = doc.subgraphs?.subgraph;
    expect(definition?.inputs).toEqual([{ name: "a", type: "INT" }]);
    expect(definition?.nodes.twice?.inputs).toEqual({ a: { link: ["$in", "a"] }, b: { link: ["$in", "a"] } });
    expect(definition?.outputs).toEqual([]);
  });

  it("adds a new definition next to the existing ones and can collapse a subgraph node", () => {
    const first = collapsed(sums, ["product", "scaled"]).doc;
    const { result, doc } = collapsed(first, ["subgraph", "show"]);
    expect(result.subgraphId).toBe("subgraph_2");
    expect(Object.keys(doc.subgraphs ?? {})).toEqual(["subgraph", "subgraph_2"]);
    expect(doc.subgraphs?.subgraph_2?.nodes.subgraph).toEqual({
      type: "subgraph",
      subgraph: "subgraph",
      inputs: { a: { link: ["$in", "a"] }, b: { link: ["$in", "b"] } },
    });
    // The output comes from the inner subgraph node: its type is read from that definition.
    expect(doc.subgraphs?.subgraph_2?.outputs).toEqual([
      { name: "product", from: ["subgraph", "product"], type: "FLOAT" },
    ]);
  });

  it("does nothing without a selection", () => {
    const graph = documentToGraph(sums, catalog);
    expect(collapseSelection(graph.nodes, graph.edges, catalog, {})).toBeNull();
  });

  it("refuses a selection with unselected nodes between its nodes (the result would loop)", () => {
    const graph = documentToGraph(sums, catalog);
    // width → product → scaled: product lies between width and scaled
    const nodes = graph.nodes.map((node) => ({ ...node, selected: ["width", "scaled"].includes(node.id) }));
    expect(nodesBetweenSelected(nodes, graph.edges)).toEqual(["product"]);
    expect(collapseSelection(nodes, graph.edges, catalog, {})).toBeNull();
    const withIt = nodes.map((node) => ({ ...node, selected: node.selected || node.id === "product" }));
    expect(nodesBetweenSelected(withIt, graph.edges)).toEqual([]);
    expect(collapseSelection(withIt, graph.edges, catalog, {})).not.toBeNull();
  });
});

describe("an opened subgraph", () => {
  const doc = load(megapixels);
  const subgraphs = doc.subgraphs ?? {};
  const definition = subgraphs.megapixels;
  if (!definition) throw new Error("fixture");

  it("shows inner nodes between an inputs node and an outputs node, linked as written", () => {
    const { nodes, edges } = innerGraph("megapixels", definition, catalog, subgraphs);
    expect(nodes.map((node) => node.id)).toEqual([INPUTS_NODE, "area", "scaled", "whole", "rounded", OUTPUTS_NODE]);
    const ins = nodeSpecOf(catalog, subgraphs, nodes[0]?.data);
    expect(ins?.outputs.map((output) => output.name)).toEqual(["width", "height"]);
    expect(edges.map((edge) => edge.id)).toContain(`${INPUTS_NODE}.width->area.width`);
    expect(edges.map((edge) => edge.id)).toContain(`rounded.float->${OUTPUTS_NODE}.megapixels`);
    expect(nodes[0]?.deletable).toBe(false);
  });

  it("writes the edited graph back: nodes, values and which node an output takes", () => {
    const { nodes, edges } = innerGraph("megapixels", definition, catalog, subgraphs);
    const edited: GraphNode[] = nodes.map((node) =>
      node.id === "scaled" ? { ...node, data: { ...node.data, values: { ...node.data.values, b: 100 } } } : node,
    );
    const relinked = edges
      .filter((edge) => edge.target !== OUTPUTS_NODE || edge.targetHandle !== "in:megapixels")
      .concat({
        id: "x",
        source: "scaled",
        sourceHandle: "out:float",
        target: OUTPUTS_NODE,
        targetHandle: "in:megapixels",
      });
    const written = writeDefinition(definition, edited, relinked, catalog, subgraphs);
    expect(written.nodes.scaled?.inputs?.b).toBe(100);
    expect(written.outputs[0]).toEqual({ name: "megapixels", from: ["scaled", "float"], type: "FLOAT" });
    expect(written.inputs).toBe(definition.inputs);
    expect(Object.keys(written.nodes)).toEqual(["area", "scaled", "whole", "rounded"]);
    expect(Object.keys((written.editor?.positions as object) ?? {})).toContain(INPUTS_NODE);
  });

  it("writes an unedited subgraph back as it was, unset inputs filled as on the top level", () => {
    const { nodes, edges } = innerGraph("megapixels", definition, catalog, subgraphs);
    const written = writeDefinition(definition, nodes, edges, catalog, subgraphs);
    const { mode, ...whole } = written.nodes.whole?.inputs ?? {};
    expect(mode).toBe(0); // the catalog default of core.round's mode, now written out
    expect({ ...written, editor: undefined, nodes: { ...written.nodes, whole: { ...written.nodes.whole, inputs: whole } } }).toEqual({
      ...definition,
      editor: undefined,
    });
  });
});

describe("validation errors inside subgraphs", () => {
  const errors = [
    { code: "missing_input" as const, message: "needs a", node: "size:area:product", input: "a", path: ["size", "area", "product"] },
    { code: "out_of_range" as const, message: "too big", node: "size", input: "width" },
    { code: "no_output" as const, message: "nothing to run", node: null, input: null },
  ];

  it("show on the outer subgraph node, naming the inner node", () => {
    const { problems, general } = locateProblems(errors, [], new Set(["size", "show"]));
    expect(problems.size?.node).toEqual(["in area › product, input a: needs a"]);
    expect(problems.size?.inputs.width).toEqual(["too big"]);
    expect(general).toEqual(["nothing to run"]);
  });

  it("show on the inner node when the subgraph is open", () => {
    const inSize = locateProblems(errors, ["size"], new Set(["area", "scaled"]));
    expect(inSize.problems.area?.node).toEqual(["in product, input a: needs a"]);
    const inArea = locateProblems(errors, ["size", "area"], new Set(["product"]));
    expect(inArea.problems.product?.inputs.a).toEqual(["needs a"]);
    expect(inArea.general).toEqual(["size: too big", "nothing to run"]);
  });

  it("are dropped once their node is edited", () => {
    expect(withoutProblemsOf(errors, [], "size", "width")).toHaveLength(2);
    expect(withoutProblemsOf(errors, [], "size")).toHaveLength(1);
    expect(withoutProblemsOf(errors, ["size", "area"], "product", "a")).toHaveLength(2);
  });
});
