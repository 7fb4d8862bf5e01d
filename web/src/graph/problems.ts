// Where a validation error shows: on the node of the graph on screen that it concerns. Errors
// inside a subgraph carry `path` (outer subgraph node first); on the outer graph they show on
// the subgraph node, and with the subgraph open, on the inner node.
import type { GraphError } from "../api/client";

export interface NodeProblems {
  node: string[];
  inputs: Record<string, string[]>;
}

export interface LocatedProblems {
  problems: Record<string, NodeProblems>;
  general: string[];
}

/** The node ids an error names along the nesting ([node] outside subgraphs, [] for none). */
export function errorPath(error: GraphError): string[] {
  if (error.path && error.path.length > 0) return error.path;
  return error.node ? [error.node] : [];
}

export interface ErrorTarget {
  /** The node of the shown graph the error is on. */
  node: string;
  /** The ids inside that node (a subgraph node) down to the node with the error. */
  inner: string[];
}

/** Where an error lands when the subgraph nodes `opened` (outermost first) are open; null
 * when it concerns no node of that graph. */
export function errorTarget(error: GraphError, opened: string[]): ErrorTarget | null {
  const path = errorPath(error);
  if (path.length <= opened.length) return null;
  if (!opened.every((id, index) => path[index] === id)) return null;
  return { node: path[opened.length] as string, inner: path.slice(opened.length + 1) };
}

/** The line an error gets on its subgraph node: which inner node (and input) it concerns. */
function innerLine(error: GraphError, inner: string[]): string {
  const input = error.input ? `, input ${error.input}` : "";
  return `in ${inner.join(" › ")}${input}: ${error.message}`;
}

/** The errors sorted onto the nodes `shown` of the graph on screen; the rest are general. */
export function locateProblems(errors: GraphError[], opened: string[], shown: Set<string>): LocatedProblems {
  const problems: Record<string, NodeProblems> = {};
  const general: string[] = [];
  for (const error of errors) {
    const target = errorTarget(error, opened);
    if (!target || !shown.has(target.node)) {
      const path = errorPath(error);
      general.push(opened.length > 0 && path.length > 0 ? `${path.join(" › ")}: ${error.message}` : error.message);
      continue;
    }
    const entry = (problems[target.node] ??= { node: [], inputs: {} });
    if (target.inner.length > 0) entry.node.push(innerLine(error, target.inner));
    else if (error.input) (entry.inputs[error.input] ??= []).push(error.message);
    else entry.node.push(error.message);
  }
  return { problems, general };
}

/** The errors left once node `node` (or one input of it) has been edited. */
export function withoutProblemsOf(
  errors: GraphError[],
  opened: string[],
  node: string,
  input?: string,
): GraphError[] {
  return errors.filter((error) => {
    const target = errorTarget(error, opened);
    if (!target || target.node !== node) return true;
    if (input === undefined) return false;
    return target.inner.length > 0 || error.input !== input;
  });
}
