// Copy and paste of a selection: nodes with the links among them, pasted under fresh ids.
import { edgeId, portName, uniqueNodeId, type GraphEdge, type GraphNode } from "../graph/model";
import { isPseudoNode } from "../graph/subgraphs";

export interface Clipboard {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

/** The selected nodes and the edges whose both ends are selected. */
export function copySelection(nodes: GraphNode[], edges: GraphEdge[]): Clipboard | null {
  const chosen = nodes.filter((node) => node.selected && !isPseudoNode(node.data));
  if (chosen.length === 0) return null;
  const ids = new Set(chosen.map((node) => node.id));
  return {
    nodes: structuredClone(chosen),
    edges: edges.filter((edge) => ids.has(edge.source) && ids.has(edge.target)),
  };
}

/** New nodes and edges for a paste, moved by `offset`, selected, with ids not in `taken`. */
export function pasteClipboard(
  clipboard: Clipboard,
  taken: Set<string>,
  offset: number,
): Clipboard {
  const renamed = new Map<string, string>();
  const used = new Set(taken);
  for (const node of clipboard.nodes) {
    const id = uniqueNodeId(node.id.replace(/_\d+$/, ""), used);
    used.add(id);
    renamed.set(node.id, id);
  }
  const nodes = clipboard.nodes.map((node) => ({
    ...structuredClone(node),
    id: renamed.get(node.id) ?? node.id,
    position: { x: node.position.x + offset, y: node.position.y + offset },
    selected: true,
    dragging: false,
  }));
  const edges = clipboard.edges.map((edge) => {
    const source = renamed.get(edge.source) ?? edge.source;
    const target = renamed.get(edge.target) ?? edge.target;
    return {
      ...edge,
      id: edgeId(source, portName(edge.sourceHandle), target, portName(edge.targetHandle)),
      source,
      target,
      selected: false,
    };
  });
  return { nodes, edges };
}
