import { describe, expect, it } from "vitest";
import {
  DocumentError,
  asWorkflowDocument,
  autoLayout,
  documentToGraph,
  graphToDocument,
  isLink,
  type WorkflowDocument,
} from "../src/graph/document";
import { catalog } from "./fixtures";

const doc: WorkflowDocument = {
  format: "graphflow/1",
  nodes: {
    width: { type: "core.int", inputs: { value: 512 }, title: "Width" },
    sum: { type: "core.add", inputs: { a: { link: ["width", "int"] }, b: 2 } },
    show: { type: "core.show", inputs: { value: { link: ["sum", "float"] }, label: "" } },
  },
  editor: { positions: { width: [0, 0], sum: [360, 0], show: [720, 40] }, randomize: {} },
};

describe("documents and the editor graph", () => {
  it("round-trips a graphflow/1 document: links, literals, titles, positions", () => {
    const { nodes, edges } = documentToGraph(doc, catalog);
    expect(nodes.map((node) => node.id)).toEqual(["width", "sum", "show"]);
    expect(edges).toHaveLength(2);
    expect(graphToDocument(nodes, edges, catalog)).toEqual(doc);
  });

  it("fills unset inputs with their defaults so the widgets show real values", () => {
    const { nodes } = documentToGraph(
      { format: "graphflow/1", nodes: { n: { type: "core.add", inputs: {} } } },
      catalog,
    );
    expect(nodes[0]?.data.values).toEqual({ a: 0, b: 0 });
  });

  it("writes a link instead of the literal kept for a linked input", () => {
    const { nodes, edges } = documentToGraph(doc, catalog);
    const sum = nodes.find((node) => node.id === "sum");
    if (sum) sum.data.values.a = 99; // kept for when the link is removed
    expect(graphToDocument(nodes, edges, catalog).nodes.sum?.inputs?.a).toEqual({
      link: ["width", "int"],
    });
  });

  it("keeps nodes of unknown types with their inputs and links", () => {
    const odd: WorkflowDocument = {
      format: "graphflow/1",
      nodes: {
        x: { type: "plugin.gone", inputs: { strength: 3 } },
        show: { type: "core.show", inputs: { value: { link: ["x", "out"] } } },
      },
    };
    const { nodes, edges } = documentToGraph(odd, catalog);
    expect(nodes[0]?.data.unknownPorts).toEqual({ inputs: ["strength"], outputs: ["out"] });
    const back = graphToDocument(nodes, edges, catalog);
    expect(back.nodes.x).toEqual({ type: "plugin.gone", inputs: { strength: 3 } });
    expect(back.nodes.show?.inputs?.value).toEqual({ link: ["x", "out"] });
  });

  it("records seeds to randomise in the editor section", () => {
    const { nodes, edges } = documentToGraph(
      {
        format: "graphflow/1",
        nodes: { s: { type: "diffusion.sampler", inputs: { seed: 5 } } },
        editor: { randomize: { s: ["seed"] } },
      },
      catalog,
    );
    expect(nodes[0]?.data.randomize).toEqual({ seed: true });
    expect(graphToDocument(nodes, edges, catalog).editor?.randomize).toEqual({ s: ["seed"] });
  });
});

describe("asWorkflowDocument", () => {
  it("refuses other formats and shapes with a readable reason", () => {
    expect(() => asWorkflowDocument({ format: "graphflow/0", nodes: [] })).toThrow(DocumentError);
    expect(() => asWorkflowDocument([])).toThrow(/JSON object/);
    expect(() => asWorkflowDocument({ format: "graphflow/1" })).toThrow(/nodes/);
    expect(() => asWorkflowDocument({ format: "graphflow/1", nodes: { a: {} } })).toThrow(/type/);
  });
});

describe("autoLayout", () => {
  it("puts each node one column right of its deepest input", () => {
    const positions = autoLayout({ format: "graphflow/1", nodes: doc.nodes });
    expect(positions.width?.[0]).toBeLessThan(positions.sum?.[0] ?? 0);
    expect(positions.sum?.[0]).toBeLessThan(positions.show?.[0] ?? 0);
  });
  it("ends on a cycle", () => {
    const cycle: WorkflowDocument = {
      format: "graphflow/1",
      nodes: {
        a: { type: "core.add", inputs: { a: { link: ["b", "float"] } } },
        b: { type: "core.add", inputs: { a: { link: ["a", "float"] } } },
      },
    };
    expect(Object.keys(autoLayout(cycle))).toEqual(["a", "b"]);
  });
});

describe("isLink", () => {
  it("knows a link from a literal", () => {
    expect(isLink({ link: ["a", "out"] })).toBe(true);
    expect(isLink({ link: ["a"] })).toBe(false);
    expect(isLink(["a", "out"])).toBe(false);
    expect(isLink({ link: ["a", "out"], extra: 1 })).toBe(false);
  });
});
