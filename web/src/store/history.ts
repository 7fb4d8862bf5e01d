// Undo/redo as a pair of snapshot stacks (snapshots share unchanged objects, so they are cheap).
import type { GraphEdge, GraphNode } from "../graph/model";
import type { Subgraphs } from "../graph/subgraphs";
import type { OpenSubgraph } from "./subgraphSlice";

/** The graph on screen, the subgraphs and which of them are open: a whole document. */
export interface Snapshot {
  nodes: GraphNode[];
  edges: GraphEdge[];
  subgraphs: Subgraphs;
  openPath: OpenSubgraph[];
}

export interface UndoStacks {
  past: Snapshot[];
  future: Snapshot[];
}

export const HISTORY_LIMIT = 100;

export const emptyStacks = (): UndoStacks => ({ past: [], future: [] });

/** Records `current` before a change; a new change forgets what was undone. */
export function record(stacks: UndoStacks, current: Snapshot): UndoStacks {
  return { past: [...stacks.past, current].slice(-HISTORY_LIMIT), future: [] };
}

/** Steps back: returns the snapshot to show and the new stacks, or null at the start. */
export function undo(stacks: UndoStacks, current: Snapshot): [Snapshot, UndoStacks] | null {
  const previous = stacks.past.at(-1);
  if (!previous) return null;
  return [previous, { past: stacks.past.slice(0, -1), future: [current, ...stacks.future] }];
}

/** Steps forward again after an undo, or null when nothing was undone. */
export function redo(stacks: UndoStacks, current: Snapshot): [Snapshot, UndoStacks] | null {
  const next = stacks.future[0];
  if (!next) return null;
  return [next, { past: [...stacks.past, current], future: stacks.future.slice(1) }];
}
