// Subgraphs in the editor: a document's `subgraphs` definitions, and the node specs the canvas
// shows for a subgraph node and for the inputs/outputs ends of an opened subgraph
// (docs/workflow-format.md, "Subgraphs").
import { ANY_TYPE, type Catalog, type InputSpec, type NodeSpec, type OutputSpec } from "../api/catalog";
import type { GraphNodeData } from "./model";

/** The node type of a node that runs a subgraph. */
export const SUBGRAPH_TYPE = "subgraph";
/** The pseudo node inner nodes link from to read the subgraph's inputs (the engine's `$in`). */
export const INPUTS_NODE = "$in";
/** The pseudo node whose inputs are the subgraph's outputs; ids with ":" cannot be inner ids. */
export const OUTPUTS_NODE = ":out";
/** Node types of the two pseudo nodes an opened subgraph shows. */
export const INPUTS_TYPE = "subgraph.inputs";
export const OUTPUTS_TYPE = "subgraph.outputs";

export interface SubgraphInput {
  name: string;
  type: string;
  default?: unknown;
  description?: string;
}

export interface SubgraphOutput {
  name: string;
  from: [string, string];
  type?: string;
}

/** One entry of a document's `subgraphs` section, as it is written. */
export interface SubgraphDefinition {
  title?: string;
  description?: string;
  inputs: SubgraphInput[];
  outputs: SubgraphOutput[];
  nodes: Record<string, { type: string; subgraph?: string; file?: string; inputs?: Record<string, unknown>; title?: string }>;
  editor?: Record<string, unknown>;
  [key: string]: unknown;
}

export type Subgraphs = Record<string, SubgraphDefinition>;

/** True for the two ends of an opened subgraph (they cannot be deleted, copied or collapsed). */
export function isPseudoNode(data: GraphNodeData): boolean {
  return data.nodeType === INPUTS_TYPE || data.nodeType === OUTPUTS_TYPE;
}

/** The definition a subgraph node (or pseudo node) shows; undefined for one from a file. */
export function definitionOf(subgraphs: Subgraphs, data: GraphNodeData): SubgraphDefinition | undefined {
  if (data.file !== undefined || data.subgraph === undefined) return undefined;
  return Object.hasOwn(subgraphs, data.subgraph) ? subgraphs[data.subgraph] : undefined;
}

/** The type an output of a subgraph carries: the declared one, else what its source gives. */
export function outputType(
  catalog: Catalog,
  subgraphs: Subgraphs,
  definition: SubgraphDefinition,
  name: string,
  seen: Set<SubgraphDefinition> = new Set(),
): string {
  const output = definition.outputs.find((item) => item.name === name);
  if (!output) return ANY_TYPE;
  if (output.type) return output.type;
  const [source, port] = output.from;
  if (source === INPUTS_NODE) {
    return definition.inputs.find((item) => item.name === port)?.type ?? ANY_TYPE;
  }
  const entry = definition.nodes[source];
  if (!entry) return ANY_TYPE;
  if (entry.type === SUBGRAPH_TYPE) {
    const inner = entry.file === undefined && entry.subgraph ? subgraphs[entry.subgraph] : undefined;
    if (!inner || seen.has(inner)) return ANY_TYPE; // a cycle is the engine's to report
    return outputType(catalog, subgraphs, inner, port, new Set([...seen, definition]));
  }
  return catalog.nodes[entry.type]?.outputs.find((item) => item.name === port)?.type ?? ANY_TYPE;
}

function inputSpec(item: SubgraphInput): InputSpec {
  const spec: InputSpec = { name: item.name, type: item.type, required: !("default" in item), lazy: false };
  if ("default" in item) spec.default = item.default;
  if (item.description !== undefined) spec.description = item.description;
  return spec;
}

function typedOutputs(catalog: Catalog, subgraphs: Subgraphs, definition: SubgraphDefinition): OutputSpec[] {
  return definition.outputs.map((item) => ({
    name: item.name,
    type: outputType(catalog, subgraphs, definition, item.name),
  }));
}

function pseudoSpec(id: string, name: string, description: string): NodeSpec {
  return {
    id,
    version: "",
    display_name: name,
    category: SUBGRAPH_TYPE,
    description,
    inputs: [],
    outputs: [],
    output_node: false,
    idempotent: true,
  };
}

/** The spec of a subgraph node: the definition's typed inputs and outputs as ports. */
export function subgraphSpec(
  catalog: Catalog,
  subgraphs: Subgraphs,
  id: string,
  definition: SubgraphDefinition,
): NodeSpec {
  const description = definition.description ?? `Subgraph ${id} (double-click to open it).`;
  return {
    ...pseudoSpec(SUBGRAPH_TYPE, definition.title ?? id, description),
    inputs: definition.inputs.map(inputSpec),
    outputs: typedOutputs(catalog, subgraphs, definition),
  };
}

/** The spec of any node of the editor graph: the catalog's, or one made from a definition. */
export function nodeSpecOf(
  catalog: Catalog,
  subgraphs: Subgraphs,
  data: GraphNodeData | undefined,
): NodeSpec | undefined {
  if (!data) return undefined;
  if (data.nodeType !== SUBGRAPH_TYPE && !isPseudoNode(data)) return catalog.nodes[data.nodeType];
  const definition = definitionOf(subgraphs, data);
  if (!definition || data.subgraph === undefined) return undefined;
  if (data.nodeType === SUBGRAPH_TYPE) return subgraphSpec(catalog, subgraphs, data.subgraph, definition);
  if (data.nodeType === INPUTS_TYPE) {
    const spec = pseudoSpec(INPUTS_TYPE, "Subgraph inputs", "What the subgraph node is given.");
    return { ...spec, outputs: definition.inputs.map((item) => ({ name: item.name, type: item.type })) };
  }
  const spec = pseudoSpec(OUTPUTS_TYPE, "Subgraph outputs", "What the subgraph node gives.");
  const inputs = typedOutputs(catalog, subgraphs, definition).map((item) => ({
    name: item.name,
    type: item.type,
    required: true,
    lazy: false,
  }));
  return { ...spec, inputs };
}
