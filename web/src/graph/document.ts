// graphflow/1 workflow documents <-> the editor's graph (docs/workflow-format.md).
import type { Catalog } from "../api/catalog";
import {
  NODE_KIND,
  edgeId,
  inputHandle,
  outputHandle,
  portName,
  type GraphEdge,
  type GraphNode,
} from "./model";
import { SUBGRAPH_TYPE, nodeSpecOf, type Subgraphs } from "./subgraphs";
import { initialValues } from "./values";

export const FORMAT = "graphflow/1";

export interface Link {
  link: [string, string];
}

export interface WorkflowNodeEntry {
  type: string;
  /** For a node of type "subgraph": the id of the subgraph it runs, and its file if another. */
  subgraph?: string;
  file?: string;
  inputs?: Record<string, unknown>;
  title?: string;
}

export interface Viewport {
  x: number;
  y: number;
  zoom: number;
}

/** The editor-only section; the engine never reads it. */
export interface EditorSection {
  positions?: Record<string, [number, number]>;
  viewport?: Viewport;
  /** node id → seed inputs randomised before each queue */
  randomize?: Record<string, string[]>;
  [key: string]: unknown;
}

export interface WorkflowDocument {
  format: string;
  nodes: Record<string, WorkflowNodeEntry>;
  /** Subgraph id → definition (kept as written; see graph/subgraphs.ts). */
  subgraphs?: Subgraphs;
  editor?: EditorSection;
}

export class DocumentError extends Error {}

export function isLink(value: unknown): value is Link {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const link = (value as { link?: unknown }).link;
  return (
    Object.keys(value).length === 1 &&
    Array.isArray(link) &&
    link.length === 2 &&
    link.every((part) => typeof part === "string")
  );
}

/** Checks the outline of a document (the server checks the rest when it is queued). */
export function asWorkflowDocument(value: unknown): WorkflowDocument {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DocumentError("a workflow must be a JSON object");
  }
  const doc = value as Partial<WorkflowDocument>;
  if (doc.format !== FORMAT) {
    throw new DocumentError(
      `the editor reads ${FORMAT} documents, not format ${JSON.stringify(doc.format ?? null)}`,
    );
  }
  if (typeof doc.nodes !== "object" || doc.nodes === null || Array.isArray(doc.nodes)) {
    throw new DocumentError("the workflow has no 'nodes' object");
  }
  for (const [id, entry] of Object.entries(doc.nodes)) {
    if (typeof entry !== "object" || entry === null || typeof entry.type !== "string") {
      throw new DocumentError(`node ${JSON.stringify(id)} has no type`);
    }
  }
  if (doc.subgraphs === undefined) return doc as WorkflowDocument;
  return { ...(doc as WorkflowDocument), subgraphs: checkedSubgraphs(doc.subgraphs) };
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** The outline of a `subgraphs` section checked: objects with nodes and input/output lists
 * (missing lists come back empty, as the engine reads them). */
function checkedSubgraphs(subgraphs: unknown): Subgraphs {
  if (!isObject(subgraphs)) throw new DocumentError("'subgraphs' must be an object of subgraphs");
  for (const [id, definition] of Object.entries(subgraphs)) {
    const where = `subgraph ${JSON.stringify(id)}`;
    if (!isObject(definition) || !isObject(definition.nodes)) {
      throw new DocumentError(`${where} has no 'nodes' object`);
    }
    for (const key of ["inputs", "outputs"]) {
      if (definition[key] !== undefined && !Array.isArray(definition[key])) {
        throw new DocumentError(`${where}: '${key}' must be a list`);
      }
    }
  }
  return Object.fromEntries(
    Object.entries(subgraphs as Subgraphs).map(([id, definition]) => [
      id,
      { ...definition, inputs: definition.inputs ?? [], outputs: definition.outputs ?? [] },
    ]),
  );
}

const COLUMN_WIDTH = 360;
const ROW_HEIGHT = 260;

/** Positions for a document without any: columns by depth along the links. */
export function autoLayout(doc: WorkflowDocument): Record<string, [number, number]> {
  const ids = Object.keys(doc.nodes);
  const depth = new Map(ids.map((id) => [id, 0]));
  // Longest-path depth; at most |nodes| relaxation rounds, so a cycle cannot loop forever.
  for (let round = 0; round < ids.length; round += 1) {
    let changed = false;
    for (const id of ids) {
      for (const value of Object.values(doc.nodes[id]?.inputs ?? {})) {
        if (!isLink(value) || !depth.has(value.link[0])) continue;
        const wanted = (depth.get(value.link[0]) ?? 0) + 1;
        if (wanted > (depth.get(id) ?? 0)) {
          depth.set(id, wanted);
          changed = true;
        }
      }
    }
    if (!changed) break;
  }
  const rows = new Map<number, number>();
  const positions: Record<string, [number, number]> = {};
  for (const id of ids) {
    const column = depth.get(id) ?? 0;
    const row = rows.get(column) ?? 0;
    rows.set(column, row + 1);
    positions[id] = [column * COLUMN_WIDTH, row * ROW_HEIGHT];
  }
  return positions;
}

/** Builds the editor graph for a document; unknown node types are kept as broken nodes. */
export function documentToGraph(
  doc: WorkflowDocument,
  catalog: Catalog,
): { nodes: GraphNode[]; edges: GraphEdge[] } {
  const positions = { ...autoLayout(doc), ...(doc.editor?.positions ?? {}) };
  const subgraphs = doc.subgraphs ?? {};
  const randomize = doc.editor?.randomize ?? {};
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const outputsUsed = new Map<string, Set<string>>();
  for (const [id, entry] of Object.entries(doc.nodes)) {
    for (const [input, value] of Object.entries(entry.inputs ?? {})) {
      if (!isLink(value)) continue;
      const [source, output] = value.link;
      if (!doc.nodes[source]) continue;
      const used = outputsUsed.get(source) ?? new Set();
      outputsUsed.set(source, used.add(output));
      edges.push({
        id: edgeId(source, output, id, input),
        source,
        sourceHandle: outputHandle(output),
        target: id,
        targetHandle: inputHandle(input),
      });
    }
  }
  for (const [id, entry] of Object.entries(doc.nodes)) {
    const reference = {
      ...(entry.subgraph !== undefined ? { subgraph: entry.subgraph } : {}),
      ...(entry.file !== undefined ? { file: entry.file } : {}),
    };
    const spec = nodeSpecOf(catalog, subgraphs, { nodeType: entry.type, values: {}, randomize: {}, ...reference });
    // Only catalog nodes show their defaults as values; a subgraph's unset inputs stay unset.
    const known = catalog.nodes[entry.type];
    const literals = Object.fromEntries(
      Object.entries(entry.inputs ?? {}).filter(([, value]) => !isLink(value)),
    );
    const position = positions[id] ?? [0, 0];
    nodes.push({
      id,
      type: NODE_KIND,
      position: { x: position[0], y: position[1] },
      data: {
        nodeType: entry.type,
        ...reference,
        ...(entry.title !== undefined ? { title: entry.title } : {}),
        values: { ...(known ? initialValues(catalog, known) : {}), ...literals },
        randomize: Object.fromEntries((randomize[id] ?? []).map((name) => [name, true])),
        ...(spec
          ? {}
          : {
              unknownPorts: {
                inputs: Object.keys(entry.inputs ?? {}),
                outputs: [...(outputsUsed.get(id) ?? [])],
              },
            }),
      },
    });
  }
  return { nodes, edges };
}

/** The document for the editor graph: links from edges, literals from the node values. */
export function graphToDocument(
  nodes: GraphNode[],
  edges: GraphEdge[],
  catalog: Catalog,
  viewport?: Viewport,
  subgraphs: Subgraphs = {},
): WorkflowDocument {
  const linked = new Map<string, Link>();
  for (const edge of edges) {
    linked.set(`${edge.target}\0${portName(edge.targetHandle)}`, {
      link: [edge.source, portName(edge.sourceHandle)],
    });
  }
  const doc: WorkflowDocument = { format: FORMAT, nodes: {} };
  const positions: Record<string, [number, number]> = {};
  const randomize: Record<string, string[]> = {};
  for (const node of nodes) {
    const { nodeType, values, title } = node.data;
    const spec = nodeSpecOf(catalog, subgraphs, node.data);
    const names = spec
      ? spec.inputs.map((input) => input.name)
      : (node.data.unknownPorts?.inputs ?? []);
    const order = [...names, ...Object.keys(values).filter((name) => !names.includes(name))];
    const inputs: Record<string, unknown> = {};
    for (const name of order) {
      const link = linked.get(`${node.id}\0${name}`);
      if (link) inputs[name] = link;
      else if (values[name] !== undefined) inputs[name] = values[name];
    }
    doc.nodes[node.id] = {
      type: nodeType,
      ...(nodeType === SUBGRAPH_TYPE && node.data.subgraph !== undefined
        ? { subgraph: node.data.subgraph }
        : {}),
      ...(nodeType === SUBGRAPH_TYPE && node.data.file !== undefined ? { file: node.data.file } : {}),
      inputs,
      ...(title ? { title } : {}),
    };
    positions[node.id] = [Math.round(node.position.x), Math.round(node.position.y)];
    const seeds = Object.keys(node.data.randomize).filter((name) => node.data.randomize[name]);
    if (seeds.length > 0) randomize[node.id] = seeds;
  }
  if (Object.keys(subgraphs).length > 0) doc.subgraphs = subgraphs;
  doc.editor = { positions, randomize };
  if (viewport) doc.editor.viewport = viewport;
  return doc;
}
