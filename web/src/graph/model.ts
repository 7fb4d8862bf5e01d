// The editor's graph: React Flow nodes and edges carrying graphflow node data.
import type { Edge, Node } from "@xyflow/react";

export interface GraphNodeData extends Record<string, unknown> {
  /** The graphflow node type id, e.g. "diffusion.sampler". */
  nodeType: string;
  title?: string;
  /** Literal input values (kept while an input is linked, so unlinking restores them). */
  values: Record<string, unknown>;
  /** Seed inputs that get a fresh random value before every queue. */
  randomize: Record<string, boolean>;
  /** The subgraph id a "subgraph" node runs (and the file it comes from, if another). */
  subgraph?: string;
  file?: string;
  /** Port names of a node whose type the server does not know (kept, shown as broken). */
  unknownPorts?: { inputs: string[]; outputs: string[] };
}

export type GraphNode = Node<GraphNodeData, "graphflow">;
export type GraphEdge = Edge;

export const NODE_KIND = "graphflow";

export const inputHandle = (name: string): string => `in:${name}`;
export const outputHandle = (name: string): string => `out:${name}`;

/** The port name inside a handle id ("in:seed" → "seed"). */
export function portName(handle: string | null | undefined): string {
  if (!handle) return "";
  const colon = handle.indexOf(":");
  return colon >= 0 ? handle.slice(colon + 1) : handle;
}

export function edgeId(source: string, output: string, target: string, input: string): string {
  return `${source}.${output}->${target}.${input}`;
}

/** A node id not used yet, derived from a readable base ("sampler", "sampler_2", ...). */
export function uniqueNodeId(base: string, taken: Set<string>): string {
  const clean = base.replace(/[^A-Za-z0-9_]+/g, "_") || "node";
  if (!taken.has(clean)) return clean;
  for (let n = 2; ; n += 1) {
    const candidate = `${clean}_${n}`;
    if (!taken.has(candidate)) return candidate;
  }
}
