// Seeds marked "randomize each run" get a fresh value before each queue: on the graph on screen,
// on the graphs an open subgraph was opened from, and inside the subgraph definitions (their
// `editor.randomize` marks).
import type { Catalog } from "../api/catalog";
import type { GraphNode } from "./model";
import { nodeSpecOf, type Subgraphs } from "./subgraphs";
import { randomSeed } from "./values";
import { isLink } from "./document";

/** The nodes with a fresh value in each marked seed input (the same array when none is). */
export function randomizedNodes(
  nodes: GraphNode[],
  catalog: Catalog,
  subgraphs: Subgraphs,
  random: () => number = Math.random,
): GraphNode[] {
  let changed = false;
  const result = nodes.map((node) => {
    const spec = nodeSpecOf(catalog, subgraphs, node.data);
    const values = { ...node.data.values };
    let mine = false;
    for (const [input, on] of Object.entries(node.data.randomize)) {
      const inputSpec = spec?.inputs.find((item) => item.name === input);
      if (!on || !inputSpec) continue;
      values[input] = randomSeed(inputSpec, random);
      mine = true;
    }
    if (!mine) return node;
    changed = true;
    return { ...node, data: { ...node.data, values } };
  });
  return changed ? result : nodes;
}

/** The definitions (less those in `skip`, which are open on screen) with a fresh value in
 * each seed their `editor.randomize` marks and no link feeds. */
export function randomizedSubgraphs(
  subgraphs: Subgraphs,
  catalog: Catalog,
  skip: Set<string>,
  random: () => number = Math.random,
): Subgraphs {
  let changed = false;
  const result: Subgraphs = {};
  for (const [id, definition] of Object.entries(subgraphs)) {
    const marks = (definition.editor?.randomize ?? {}) as Record<string, string[]>;
    const nodes = { ...definition.nodes };
    let mine = false;
    for (const [nodeId, inputs] of Object.entries(skip.has(id) ? {} : marks)) {
      const entry = nodes[nodeId];
      if (!entry || !Array.isArray(inputs)) continue;
      const data = { nodeType: entry.type, subgraph: entry.subgraph, file: entry.file, values: {}, randomize: {} };
      const spec = nodeSpecOf(catalog, subgraphs, data);
      const values = { ...entry.inputs };
      for (const input of inputs) {
        const inputSpec = spec?.inputs.find((item) => item.name === input);
        if (!inputSpec || isLink(values[input])) continue;
        values[input] = randomSeed(inputSpec, random);
        mine = true;
      }
      nodes[nodeId] = { ...entry, inputs: values };
    }
    result[id] = mine ? { ...definition, nodes } : definition;
    changed ||= mine;
  }
  return changed ? result : subgraphs;
}
