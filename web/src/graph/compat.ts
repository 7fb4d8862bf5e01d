// Port-type compatibility: the same single rule as graphflow/types.py TypeRegistry.can_connect.
import { ANY_TYPE, type NodeSpec, type PortTypeInfo } from "../api/catalog";

/** True when an output of `outputType` may feed an input of `inputType`. */
export function canConnect(
  types: Record<string, PortTypeInfo>,
  outputType: string,
  inputType: string,
): boolean {
  if (outputType === inputType || outputType === ANY_TYPE || inputType === ANY_TYPE) return true;
  const target = types[inputType];
  return target !== undefined && target.accepts.includes(outputType);
}

export interface PortTypes {
  outputType?: string;
  inputType?: string;
}

/** The types of an output port and an input port, looked up by node spec and port name (a
 * subgraph node's spec comes from graph/subgraphs.ts nodeSpecOf). */
export function portTypes(
  source: NodeSpec | undefined,
  outputName: string | null | undefined,
  target: NodeSpec | undefined,
  inputName: string | null | undefined,
): PortTypes {
  return {
    outputType: source?.outputs.find((o) => o.name === outputName)?.type,
    inputType: target?.inputs.find((i) => i.name === inputName)?.type,
  };
}
