// Collapses selections of real workflows for tests/web/test_subgraph_collapse.py, which runs the
// results with the engine and compares them with the originals. That test sets
// GRAPHFLOW_COLLAPSE_CASES to a JSON file: {catalog (GET /api/nodes), cases: [{name, document,
// select}]}; each collapsed document is written beside it as <name>.collapsed.json.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseCatalog, type RawCatalog } from "../src/api/catalog";
import { collapseSelection } from "../src/graph/collapse";
import { asWorkflowDocument, documentToGraph, graphToDocument } from "../src/graph/document";

const casesFile = process.env.GRAPHFLOW_COLLAPSE_CASES;

interface CollapseCase {
  name: string;
  document: unknown;
  select: string[];
}

describe.skipIf(!casesFile)("collapsing real workflows for the engine", () => {
  it("writes each case's collapsed document", () => {
    const input = JSON.parse(readFileSync(casesFile as string, "utf8")) as {
      catalog: RawCatalog;
      cases: CollapseCase[];
    };
    const catalog = parseCatalog(input.catalog);
    expect(input.cases.length).toBeGreaterThan(0);
    for (const item of input.cases) {
      const doc = asWorkflowDocument(item.document);
      const graph = documentToGraph(doc, catalog);
      const nodes = graph.nodes.map((node) => ({ ...node, selected: item.select.includes(node.id) }));
      const collapsed = collapseSelection(nodes, graph.edges, catalog, doc.subgraphs ?? {});
      expect(collapsed, item.name).not.toBeNull();
      if (!collapsed) continue;
      const out = graphToDocument(collapsed.nodes, collapsed.edges, catalog, undefined, collapsed.subgraphs);
      writeFileSync(join(dirname(casesFile as string), `${item.name}.collapsed.json`), JSON.stringify(out, null, 2));
    }
  });
});
