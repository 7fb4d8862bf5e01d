// Port-type compatibility: the same single rule as graphflow/types.py TypeRegistry.can_connect.
import { ANY_TYPE, type Catalog, type PortTypeInfo } from "../api/catalog";

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

/** The types of an output port and an input port, looked up by node type and port name. */
export function portTypes(
  catalog: Catalog,
  sourceNodeType: string | undefined,
  outputName: string | null | undefined,
  targetNodeType: string | undefined,
  inputName: string | null | undefined,
): PortTypes {
  const source = sourceNodeType ? catalog.nodes[sourceNodeType] : undefined;
  const target = targetNodeType ? catalog.nodes[targetNodeType] : undefined;
  return {
    outputType: source?.outputs.find((o) => o.name === outputName)?.type,
    inputType: target?.inputs.find((i) => i.name === inputName)?.type,
  };
}
