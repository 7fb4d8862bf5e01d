// The node catalog (GET /api/nodes) in the precise shape the editor relies on.
// The OpenAPI schema types the catalog loosely (specs are open objects), so the fields of
// NodeSpec.to_dict() / PortType.to_dict() are spelled out here and checked on arrival.
import type { components } from "./schema";

export type RawCatalog = components["schemas"]["NodeCatalog"];

export interface PortTypeInfo {
  name: string;
  description: string;
  color: string;
  /** True when values of this type can be typed in (numbers, text, booleans, ANY). */
  literal: boolean;
  /** Other types an input of this type accepts (FLOAT accepts INT). */
  accepts: string[];
}

export interface InputSpec {
  name: string;
  type: string;
  required: boolean;
  lazy: boolean;
  default?: unknown;
  min?: number;
  max?: number;
  step?: number;
  choices?: unknown[];
  /** Text shown beside a choice (e.g. a model file's detected family), keyed by the choice's text. */
  choice_labels?: Record<string, string>;
  multiline?: boolean;
  description?: string;
}

export interface OutputSpec {
  name: string;
  type: string;
}

export interface NodeSpec {
  id: string;
  version: string;
  display_name: string;
  category: string;
  description: string;
  inputs: InputSpec[];
  outputs: OutputSpec[];
  output_node: boolean;
  idempotent: boolean;
  plugin?: string;
}

export interface Catalog {
  types: Record<string, PortTypeInfo>;
  nodes: Record<string, NodeSpec>;
}

export const ANY_TYPE = "ANY";
const FALLBACK_COLOR = "#9e9e9e";

function asString(value: unknown, fallback = ""): string {
  return typeof value === "string" ? value : fallback;
}

/** The string-valued entries of a choice_labels object (anything else is ignored). */
function parseChoiceLabels(raw: unknown): Record<string, string> | undefined {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return undefined;
  const labels: Record<string, string> = {};
  for (const [value, label] of Object.entries(raw)) {
    if (typeof label === "string" && label) labels[value] = label;
  }
  return Object.keys(labels).length > 0 ? labels : undefined;
}

function parseInput(raw: Record<string, unknown>): InputSpec {
  const spec: InputSpec = {
    name: asString(raw.name),
    type: asString(raw.type, ANY_TYPE),
    required: raw.required === true,
    lazy: raw.lazy === true,
  };
  if ("default" in raw) spec.default = raw.default;
  for (const key of ["min", "max", "step"] as const) {
    if (typeof raw[key] === "number") spec[key] = raw[key] as number;
  }
  if (Array.isArray(raw.choices)) spec.choices = raw.choices;
  const labels = parseChoiceLabels(raw.choice_labels);
  if (labels) spec.choice_labels = labels;
  if (raw.multiline === true) spec.multiline = true;
  if (typeof raw.description === "string") spec.description = raw.description;
  return spec;
}

/** Checks and normalises the /api/nodes answer (missing fields get harmless defaults). */
export function parseCatalog(raw: RawCatalog): Catalog {
  const types: Record<string, PortTypeInfo> = {};
  for (const item of raw.types as Record<string, unknown>[]) {
    const name = asString(item.name);
    if (!name) continue;
    types[name] = {
      name,
      description: asString(item.description),
      color: asString(item.color, FALLBACK_COLOR),
      literal: item.literal === true,
      accepts: Array.isArray(item.accepts) ? item.accepts.map(String) : [],
    };
  }
  const nodes: Record<string, NodeSpec> = {};
  for (const [id, item] of Object.entries(raw.nodes)) {
    const spec = item as Record<string, unknown>;
    nodes[id] = {
      id,
      version: asString(spec.version),
      display_name: asString(spec.display_name, id),
      category: asString(spec.category, "other"),
      description: asString(spec.description),
      inputs: ((spec.inputs as Record<string, unknown>[] | undefined) ?? []).map(parseInput),
      outputs: ((spec.outputs as Record<string, unknown>[] | undefined) ?? []).map((o) => ({
        name: asString(o.name),
        type: asString(o.type, ANY_TYPE),
      })),
      output_node: spec.output_node === true,
      idempotent: spec.idempotent !== false,
      plugin: typeof spec.plugin === "string" ? spec.plugin : undefined,
    };
  }
  return { types, nodes };
}

/** The colour of a port type (grey for types the server did not describe). */
export function typeColor(catalog: Catalog, type: string): string {
  return catalog.types[type]?.color ?? FALLBACK_COLOR;
}

/** Nodes grouped by category, each group and its nodes sorted, filtered by a search text. */
export function groupByCategory(catalog: Catalog, search = ""): [string, NodeSpec[]][] {
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  const groups = new Map<string, NodeSpec[]>();
  for (const spec of Object.values(catalog.nodes)) {
    const haystack =
      `${spec.display_name} ${spec.id} ${spec.category} ${spec.description}`.toLowerCase();
    if (!words.every((word) => haystack.includes(word))) continue;
    const group = groups.get(spec.category) ?? [];
    group.push(spec);
    groups.set(spec.category, group);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([category, specs]) => [
      category,
      specs.sort((a, b) => a.display_name.localeCompare(b.display_name)),
    ]);
}
