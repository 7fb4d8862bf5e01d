// "Collapse to subgraph": selected nodes become one subgraph node. Links into the selection
// become the definition's inputs, links out of it its outputs (typed by the ports they join);
// links and literal values inside the selection stay inside. The flattened document runs the
// same nodes on the same values as before (docs/editor.md, "Subgraphs").
import { ANY_TYPE, type Catalog } from "../api/catalog";
import { graphToDocument } from "./document";
import {
  NODE_KIND,
  edgeId,
  inputHandle,
  outputHandle,
  portName,
  uniqueNodeId,
  type GraphEdge,
  type GraphNode,
} from "./model";
import {
  INPUTS_NODE,
  OUTPUTS_NODE,
  SUBGRAPH_TYPE,
  isPseudoNode,
  nodeSpecOf,
  type SubgraphDefinition,
  type SubgraphInput,
  type SubgraphOutput,
  type Subgraphs,
} from "./subgraphs";

export interface Collapsed {
  nodes: GraphNode[];
  edges: GraphEdge[];
  subgraphs: Subgraphs;
  /** The new subgraph node, and the id of its definition in `subgraphs`. */
  nodeId: string;
  subgraphId: string;
}

const MARGIN = 360;

const sourceKey = (edge: GraphEdge) => `${edge.source}\0${edge.sourceHandle}`;

/** A name for each boundary port (keyed by the output that feeds it): the port name of
 * `portOf`, or, when several ports would get the same one, the id of the node the value comes
 * from ("width", "height" rather than "int", "int_2"); a number is added if still taken. */
function boundaryNames(edges: GraphEdge[], portOf: (edge: GraphEdge) => string): Map<string, string> {
  const bases = new Map<string, string>();
  for (const edge of edges) if (!bases.has(sourceKey(edge))) bases.set(sourceKey(edge), portOf(edge));
  const counts = new Map<string, number>();
  for (const base of bases.values()) counts.set(base, (counts.get(base) ?? 0) + 1);
  const taken = new Set<string>();
  const names = new Map<string, string>();
  for (const edge of edges) {
    const key = sourceKey(edge);
    const base = bases.get(key) ?? "";
    if (names.has(key)) continue;
    const name = uniqueNodeId((counts.get(base) ?? 0) > 1 ? edge.source : base || "value", taken);
    taken.add(name);
    names.set(key, name);
  }
  return names;
}

/** The edges in a stable order: by the selected node they touch, then by port order. */
function ordered(edges: GraphEdge[], order: Map<string, number>, side: "source" | "target"): GraphEdge[] {
  return [...edges].sort((a, b) => (order.get(a[side]) ?? 0) - (order.get(b[side]) ?? 0));
}

/** The title a new subgraph gets from its id ("subgraph_2" → "Subgraph 2"). */
function titleFor(id: string): string {
  const words = id.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

interface Boundary {
  ids: Set<string>;
  nodeId: string;
  order: Map<string, number>;
  portType(node: string, handle: string | null | undefined, kind: "inputs" | "outputs"): string | undefined;
}

/** The definition's inputs: one per outside output that feeds the selection, typed by it. */
function boundaryInputs(edges: GraphEdge[], at: Boundary, inner: GraphEdge[], outer: GraphEdge[]) {
  const incoming = ordered(
    edges.filter((edge) => !at.ids.has(edge.source) && at.ids.has(edge.target)),
    at.order,
    "target",
  );
  const names = boundaryNames(incoming, (edge) => portName(edge.targetHandle));
  const inputs: SubgraphInput[] = [];
  for (const edge of incoming) {
    const name = names.get(sourceKey(edge)) ?? "";
    if (!inputs.some((input) => input.name === name)) {
      const type =
        at.portType(edge.source, edge.sourceHandle, "outputs") ??
        at.portType(edge.target, edge.targetHandle, "inputs") ??
        ANY_TYPE;
      inputs.push({ name, type });
      outer.push(link(edge.source, portName(edge.sourceHandle), at.nodeId, name));
    }
    inner.push(link(INPUTS_NODE, name, edge.target, portName(edge.targetHandle)));
  }
  return inputs;
}

/** The definition's outputs: one per selected node's output used outside. */
function boundaryOutputs(edges: GraphEdge[], at: Boundary, outer: GraphEdge[]) {
  const outgoing = ordered(
    edges.filter((edge) => at.ids.has(edge.source) && !at.ids.has(edge.target)),
    at.order,
    "source",
  );
  const names = boundaryNames(outgoing, (edge) => portName(edge.sourceHandle));
  const outputs: SubgraphOutput[] = [];
  for (const edge of outgoing) {
    const name = names.get(sourceKey(edge)) ?? "";
    if (!outputs.some((output) => output.name === name)) {
      const type = at.portType(edge.source, edge.sourceHandle, "outputs");
      outputs.push({ name, from: [edge.source, portName(edge.sourceHandle)], ...(type ? { type } : {}) });
    }
    outer.push(link(at.nodeId, name, edge.target, portName(edge.targetHandle)));
  }
  return outputs;
}

/** The selected nodes that a collapse takes (the ends of an opened subgraph stay). */
function collapsible(nodes: GraphNode[]): GraphNode[] {
  return nodes.filter((node) => node.selected && !isPseudoNode(node.data));
}

/** Unselected nodes that lie on a path from one selected node to another (A → B → C with A
 * and C selected gives B). Collapsing around them would link the new node to itself
 * through them: a loop. */
export function nodesBetweenSelected(nodes: GraphNode[], edges: GraphEdge[]): string[] {
  const ids = new Set(collapsible(nodes).map((node) => node.id));
  const reach = (from: "source" | "target", to: "source" | "target") => {
    const next = new Map<string, string[]>(); // one pass over the edges, then a walk
    for (const edge of edges) {
      const list = next.get(edge[from]);
      if (list) list.push(edge[to]);
      else next.set(edge[from], [edge[to]]);
    }
    const found = new Set<string>();
    const queue = [...ids];
    while (queue.length > 0) {
      for (const node of next.get(queue.pop() as string) ?? []) {
        if (!ids.has(node) && !found.has(node)) {
          found.add(node);
          queue.push(node);
        }
      }
    }
    return found;
  };
  const downstream = reach("source", "target");
  const upstream = reach("target", "source");
  return nodes.map((node) => node.id).filter((id) => downstream.has(id) && upstream.has(id));
}

/** Collapses the selected nodes (less the ends of an opened subgraph) into a new subgraph;
 * null when nothing is selected, or when unselected nodes lie between selected ones
 * (:func:`nodesBetweenSelected`: the result would be a loop). */
export function collapseSelection(
  nodes: GraphNode[],
  edges: GraphEdge[],
  catalog: Catalog,
  subgraphs: Subgraphs,
): Collapsed | null {
  const chosen = collapsible(nodes);
  if (chosen.length === 0 || nodesBetweenSelected(nodes, edges).length > 0) return null;
  const ids = new Set(chosen.map((node) => node.id));
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const rest = nodes.filter((node) => !ids.has(node.id));
  const subgraphId = uniqueNodeId(SUBGRAPH_TYPE, new Set(Object.keys(subgraphs)));
  const at: Boundary = {
    ids,
    nodeId: uniqueNodeId(subgraphId, new Set(rest.map((node) => node.id))),
    order: new Map(chosen.map((node, index) => [node.id, index])),
    portType: (node, handle, kind) =>
      nodeSpecOf(catalog, subgraphs, byId.get(node)?.data)?.[kind].find((port) => port.name === portName(handle))
        ?.type,
  };
  const inner = edges.filter((edge) => ids.has(edge.source) && ids.has(edge.target));
  const outer = edges.filter((edge) => !ids.has(edge.source) && !ids.has(edge.target));
  const inputs = boundaryInputs(edges, at, inner, outer);
  const outputs = boundaryOutputs(edges, at, outer);
  const definition = innerDefinition(chosen, inner, catalog, subgraphs, subgraphId, inputs, outputs);
  const [x, y] = definitionCorner(chosen);
  const node: GraphNode = {
    id: at.nodeId,
    type: NODE_KIND,
    position: { x, y },
    selected: true,
    data: { nodeType: SUBGRAPH_TYPE, subgraph: subgraphId, values: {}, randomize: {} },
  };
  return {
    nodes: [...rest.map((n) => ({ ...n, selected: false })), node],
    edges: outer,
    subgraphs: { ...subgraphs, [subgraphId]: definition },
    nodeId: at.nodeId,
    subgraphId,
  };
}

function link(source: string, output: string, target: string, input: string): GraphEdge {
  return {
    id: edgeId(source, output, target, input),
    source,
    sourceHandle: outputHandle(output),
    target,
    targetHandle: inputHandle(input),
  };
}

function definitionCorner(chosen: GraphNode[]): [number, number] {
  const xs = chosen.map((node) => node.position.x);
  const ys = chosen.map((node) => node.position.y);
  return [Math.round(Math.min(...xs)), Math.round(Math.min(...ys))];
}

function innerDefinition(
  chosen: GraphNode[],
  innerEdges: GraphEdge[],
  catalog: Catalog,
  subgraphs: Subgraphs,
  id: string,
  inputs: SubgraphInput[],
  outputs: SubgraphOutput[],
): SubgraphDefinition {
  const unselected = chosen.map((node) => ({ ...node, selected: false }));
  const doc = graphToDocument(unselected, innerEdges, catalog, undefined, subgraphs);
  const [left, top] = definitionCorner(chosen);
  const right = Math.max(...chosen.map((node) => node.position.x));
  const positions = {
    [INPUTS_NODE]: [left - MARGIN, top] as [number, number],
    ...doc.editor?.positions,
    [OUTPUTS_NODE]: [Math.round(right) + MARGIN, top] as [number, number],
  };
  return {
    title: titleFor(id),
    inputs,
    outputs,
    nodes: doc.nodes,
    editor: { positions, randomize: doc.editor?.randomize ?? {} },
  };
}
