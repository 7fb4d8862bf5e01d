// Subgraphs in the store: the document's definitions, the subgraphs opened for editing (a stack
// the breadcrumb shows), collapsing a selection into a new one, and the whole document put
// back together from the graph on screen and the graphs it was opened from.
import type { StateCreator } from "zustand";
import type { Catalog } from "../api/catalog";
import { collapseSelection, nodesBetweenSelected } from "../graph/collapse";
import { graphToDocument, type Viewport, type WorkflowDocument } from "../graph/document";
import { innerGraph, writeDefinition } from "../graph/innerGraph";
import type { GraphEdge, GraphNode } from "../graph/model";
import { withoutProblemsOf } from "../graph/problems";
import { SUBGRAPH_TYPE, definitionOf, type Subgraphs } from "../graph/subgraphs";
import type { EditorState } from "./index";

/** A subgraph opened for editing: which node opened it, and the graph it was opened from. */
export interface OpenSubgraph {
  nodeId: string;
  subgraphId: string;
  title: string;
  parent: { nodes: GraphNode[]; edges: GraphEdge[]; viewport: Viewport | undefined };
}

export interface SubgraphSlice {
  /** The document's subgraphs (an opened one's edits are written in when it is closed). */
  subgraphs: Subgraphs;
  /** The subgraphs open, outermost first; empty when the workflow itself is shown. */
  openPath: OpenSubgraph[];

  /** Turns the selected nodes into one new subgraph node; its id, or null without a selection. */
  collapseSelected(): string | null;
  /** Shows the inner graph of subgraph node `nodeId`; false (and a notice) when it cannot. */
  openSubgraph(nodeId: string): boolean;
  /** Goes back to the graph `level` subgraphs deep (0: the workflow), keeping the edits. */
  closeSubgraph(level: number): void;
}

const EMPTY_CATALOG: Catalog = { types: {}, nodes: {} };

interface ShownGraph {
  nodes: GraphNode[];
  edges: GraphEdge[];
  viewport: Viewport | undefined;
  subgraphs: Subgraphs;
}

/** Closes the opened subgraphs down to `level`, writing each one's graph into its definition. */
export function closeDown(
  shown: ShownGraph,
  openPath: OpenSubgraph[],
  level: number,
  catalog: Catalog,
): ShownGraph {
  let current = shown;
  for (const frame of openPath.slice(level).reverse()) {
    const definition = current.subgraphs[frame.subgraphId];
    const subgraphs = definition
      ? {
          ...current.subgraphs,
          [frame.subgraphId]: writeDefinition(definition, current.nodes, current.edges, catalog, current.subgraphs),
        }
      : current.subgraphs;
    current = { ...frame.parent, subgraphs };
  }
  return current;
}

/** The whole document, whichever subgraph is open. */
export function composeDocument(state: EditorState): WorkflowDocument {
  const catalog = state.catalog ?? EMPTY_CATALOG;
  const { nodes, edges, viewport, subgraphs } = state;
  const root = closeDown({ nodes, edges, viewport, subgraphs }, state.openPath, 0, catalog);
  return graphToDocument(root.nodes, root.edges, catalog, root.viewport, root.subgraphs);
}

export const createSubgraphSlice: StateCreator<EditorState, [], [], SubgraphSlice> = (set, get) => ({
  subgraphs: {},
  openPath: [],

  collapseSelected: () => {
    const { nodes, edges, catalog, subgraphs, openPath } = get();
    if (!catalog) return null;
    const between = nodesBetweenSelected(nodes, edges);
    if (between.length > 0) {
      const names = between.slice(0, 5).join(", ") + (between.length > 5 ? ", …" : "");
      get().notify(
        "error",
        `Cannot collapse: ${names} ${between.length === 1 ? "lies" : "lie"} between selected ` +
          "nodes, so the subgraph would feed itself. Select those too, or fewer nodes.",
      );
      return null;
    }
    const collapsed = collapseSelection(nodes, edges, catalog, subgraphs);
    if (!collapsed) return null;
    get().checkpoint();
    const opened = openPath.map((frame) => frame.nodeId);
    let errors = get().validationErrors;
    for (const node of nodes.filter((n) => n.selected)) errors = withoutProblemsOf(errors, opened, node.id);
    set({ nodes: collapsed.nodes, edges: collapsed.edges, subgraphs: collapsed.subgraphs });
    get().setValidation(errors);
    return collapsed.nodeId;
  },

  openSubgraph: (nodeId) => {
    const { nodes, edges, viewport, catalog, subgraphs, openPath } = get();
    const node = nodes.find((item) => item.id === nodeId);
    if (!catalog || !node || node.data.nodeType !== SUBGRAPH_TYPE) return false;
    const id = node.data.subgraph ?? "";
    const definition = definitionOf(subgraphs, node.data);
    if (node.data.file !== undefined) {
      get().notify("info", `This subgraph comes from ${node.data.file}: open that workflow to edit it.`);
      return false;
    }
    if (!definition) {
      get().notify("error", `The document has no subgraph ${JSON.stringify(id)} to open.`);
      return false;
    }
    if (openPath.some((frame) => frame.subgraphId === id)) {
      get().notify("error", `Subgraph ${JSON.stringify(id)} is already open (it contains itself).`);
      return false;
    }
    const frame: OpenSubgraph = {
      nodeId,
      subgraphId: id,
      title: node.data.title ?? definition.title ?? id,
      parent: { nodes: nodes.map((n) => (n.selected ? { ...n, selected: false } : n)), edges, viewport },
    };
    const inner = innerGraph(id, definition, catalog, subgraphs);
    set({
      ...inner,
      viewport: undefined,
      openPath: [...openPath, frame],
      fitRequest: get().fitRequest + 1,
      lastEdit: null,
    });
    get().setValidation(get().validationErrors);
    return true;
  },

  closeSubgraph: (level) => {
    const { nodes, edges, viewport, catalog, subgraphs, openPath } = get();
    if (level < 0 || level >= openPath.length) return;
    const shown = closeDown({ nodes, edges, viewport, subgraphs }, openPath, level, catalog ?? EMPTY_CATALOG);
    set({
      ...shown,
      openPath: openPath.slice(0, level),
      fitRequest: get().fitRequest + 1,
      lastEdit: null,
    });
    get().setValidation(get().validationErrors);
  },
});
