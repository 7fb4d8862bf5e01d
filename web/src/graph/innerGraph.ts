// An opened subgraph: its definition as an editor graph (inner nodes between an inputs node and
// an outputs node), and the edited graph written back into the definition.
import type { Catalog } from "../api/catalog";
import { documentToGraph, FORMAT, graphToDocument, isLink, type WorkflowDocument } from "./document";
import type { GraphEdge, GraphNode } from "./model";
import {
  INPUTS_NODE,
  INPUTS_TYPE,
  OUTPUTS_NODE,
  OUTPUTS_TYPE,
  type SubgraphDefinition,
  type Subgraphs,
} from "./subgraphs";

/** The definition as a document of its own, with the two pseudo nodes added. */
export function definitionDocument(id: string, definition: SubgraphDefinition): WorkflowDocument {
  const outputs = Object.fromEntries(
    definition.outputs.map((output) => [output.name, { link: [...output.from] }]),
  );
  return {
    format: FORMAT,
    nodes: {
      [INPUTS_NODE]: { type: INPUTS_TYPE, subgraph: id, inputs: {} },
      ...definition.nodes,
      [OUTPUTS_NODE]: { type: OUTPUTS_TYPE, subgraph: id, inputs: outputs },
    },
    editor: definition.editor,
  };
}

/** The editor graph of an opened subgraph; the pseudo nodes cannot be deleted. */
export function innerGraph(
  id: string,
  definition: SubgraphDefinition,
  catalog: Catalog,
  subgraphs: Subgraphs,
): { nodes: GraphNode[]; edges: GraphEdge[] } {
  const document = { ...definitionDocument(id, definition), subgraphs };
  const { nodes, edges } = documentToGraph(document, catalog);
  return {
    nodes: nodes.map((node) =>
      node.id === INPUTS_NODE || node.id === OUTPUTS_NODE ? { ...node, deletable: false } : node,
    ),
    edges,
  };
}

/** The definition with the edited inner graph written into it: its nodes, the inner node each
 * output takes (an output left unlinked keeps the one it had), positions and seed flags. */
export function writeDefinition(
  definition: SubgraphDefinition,
  nodes: GraphNode[],
  edges: GraphEdge[],
  catalog: Catalog,
  subgraphs: Subgraphs,
): SubgraphDefinition {
  const doc = graphToDocument(nodes, edges, catalog, undefined, subgraphs);
  const linked = doc.nodes[OUTPUTS_NODE]?.inputs ?? {};
  const outputs = definition.outputs.map((output) => {
    const link = linked[output.name];
    return isLink(link) ? { ...output, from: link.link } : output;
  });
  const inner = Object.fromEntries(
    Object.entries(doc.nodes).filter(([nodeId]) => nodeId !== INPUTS_NODE && nodeId !== OUTPUTS_NODE),
  );
  return {
    ...definition,
    outputs,
    nodes: inner,
    editor: { ...definition.editor, positions: doc.editor?.positions, randomize: doc.editor?.randomize },
  };
}
