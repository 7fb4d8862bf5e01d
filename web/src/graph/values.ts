// Which widget an input gets, and the value a new node starts with.
import { ANY_TYPE, type Catalog, type InputSpec, type NodeSpec } from "../api/catalog";

export type WidgetKind =
  | "none"
  | "boolean"
  | "choice"
  | "image"
  | "seed"
  | "slider"
  | "number"
  | "multiline"
  | "text";

const SLIDER_MAX_STEPS = 1000;

/** True for inputs that can hold a typed-in value (numbers, text, booleans, ANY). */
export function takesLiteral(catalog: Catalog, input: InputSpec): boolean {
  return catalog.types[input.type]?.literal ?? false;
}

/** A load-image style input: a file name chosen from the input folder of an IMAGE node. */
export function isImageFileInput(spec: NodeSpec, input: InputSpec): boolean {
  return (
    input.type === "STRING" &&
    input.choices !== undefined &&
    /image/i.test(input.name) &&
    spec.outputs.some((output) => output.type === "IMAGE")
  );
}

export function widgetKind(catalog: Catalog, spec: NodeSpec, input: InputSpec): WidgetKind {
  if (!takesLiteral(catalog, input)) return "none";
  if (isImageFileInput(spec, input)) return "image";
  if (input.choices !== undefined) return "choice";
  if (input.type === "BOOLEAN") return "boolean";
  if (input.type === "INT" && /seed/i.test(input.name)) return "seed";
  if (input.type === "INT" || input.type === "FLOAT") {
    if (input.min !== undefined && input.max !== undefined) {
      const step = input.step ?? (input.type === "INT" ? 1 : 0.01);
      if ((input.max - input.min) / step <= SLIDER_MAX_STEPS) return "slider";
    }
    return "number";
  }
  if (input.multiline) return "multiline";
  return "text";
}

/** What a dropdown shows for one choice: the value, and its label when the server gave one
 * ("sd15.safetensors — SD 1.x"). The value alone is what the workflow stores. */
export function choiceText(input: InputSpec, choice: unknown): string {
  const text = String(choice);
  const label = input.choice_labels?.[text];
  return label ? `${text} — ${label}` : text;
}

/** The value a fresh node shows for an input; undefined leaves it unset (must be linked). */
export function initialValue(catalog: Catalog, input: InputSpec): unknown {
  if (!takesLiteral(catalog, input)) return undefined;
  if ("default" in input) return input.default;
  if (input.choices && input.choices.length > 0) return input.choices[0];
  switch (input.type) {
    case "INT":
    case "FLOAT":
      return Math.max(input.min ?? 0, Math.min(input.max ?? 0, 0));
    case "STRING":
      return "";
    case "BOOLEAN":
      return false;
    default:
      return undefined; // a required ANY input is meant to be linked
  }
}

export function initialValues(catalog: Catalog, spec: NodeSpec): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const input of spec.inputs) {
    const value = initialValue(catalog, input);
    if (value !== undefined) values[input.name] = value;
  }
  return values;
}

/** Parses a number field's text for an INT or FLOAT input, clamped to its range. */
export function parseNumber(input: InputSpec, text: string): number | undefined {
  const value = input.type === "INT" ? Number.parseInt(text, 10) : Number.parseFloat(text);
  if (!Number.isFinite(value)) return undefined;
  let clamped = value;
  if (input.min !== undefined) clamped = Math.max(input.min, clamped);
  if (input.max !== undefined) clamped = Math.min(input.max, clamped);
  return clamped;
}

/** A random seed within the input's range (at most 2^53, what a JS number holds exactly). */
export function randomSeed(input: InputSpec, random: () => number = Math.random): number {
  const low = Math.max(0, input.min ?? 0);
  const high = Math.min(Number.MAX_SAFE_INTEGER, input.max ?? 2 ** 32 - 1);
  const span = Math.min(high - low, 2 ** 32 - 1);
  return low + Math.floor(random() * (span + 1));
}

export { ANY_TYPE };
