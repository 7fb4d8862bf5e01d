// The graph being edited: nodes, edges, catalog, undo/redo and clipboard.
import {
  addEdge,
  applyEdgeChanges,
  applyNodeChanges,
  type Connection,
  type EdgeChange,
  type NodeChange,
  type XYPosition,
} from "@xyflow/react";
import type { StateCreator } from "zustand";
import type { Catalog } from "../api/catalog";
import { canConnect, portTypes } from "../graph/compat";
import {
  asWorkflowDocument,
  documentToGraph,
  type Viewport,
  type WorkflowDocument,
} from "../graph/document";
import {
  NODE_KIND,
  edgeId,
  portName,
  uniqueNodeId,
  type GraphEdge,
  type GraphNode,
  type GraphNodeData,
} from "../graph/model";
import { isPseudoNode, nodeSpecOf } from "../graph/subgraphs";
import { initialValues } from "../graph/values";
import { copySelection, pasteClipboard, type Clipboard } from "./clipboard";
import { emptyStacks, record, redo, undo, type UndoStacks } from "./history";
import type { EditorState } from "./index";
import { composeDocument } from "./subgraphSlice";

export interface GraphSlice {
  catalog: Catalog | null;
  nodes: GraphNode[];
  edges: GraphEdge[];
  viewport: Viewport | undefined;
  /** Bumped when the canvas should fit the whole graph into view (after a load). */
  fitRequest: number;
  workflowName: string;
  undoStacks: UndoStacks;
  clipboard: Clipboard | null;
  pasteCount: number;
  lastEdit: { key: string; at: number } | null;

  setCatalog(catalog: Catalog): void;
  /** Replaces the graph with a document (throws DocumentError for a malformed one). */
  loadDocument(value: unknown, name?: string): void;
  currentDocument(): WorkflowDocument;
  clearGraph(): void;
  setWorkflowName(name: string): void;
  setViewport(viewport: Viewport): void;

  onNodesChange(changes: NodeChange<GraphNode>[]): void;
  onEdgesChange(changes: EdgeChange<GraphEdge>[]): void;
  isValidConnection(connection: Connection | GraphEdge): boolean;
  connect(connection: Connection): void;
  addNode(nodeType: string, position: XYPosition): string | null;
  setValue(nodeId: string, input: string, value: unknown): void;
  setRandomize(nodeId: string, input: string, on: boolean): void;
  /** Renames a node on the canvas (an empty title goes back to the type's name). */
  setTitle(nodeId: string, title: string): void;
  deleteSelected(): void;
  /** Remembers the state before a change the canvas makes itself (a drag). */
  checkpoint(): void;
  undo(): void;
  redo(): void;
  copy(): boolean;
  paste(): void;
}

const EDIT_MERGE_MS = 1500;

export const createGraphSlice: StateCreator<EditorState, [], [], GraphSlice> = (set, get) => {
  const snapshot = () => {
    const { nodes, edges, subgraphs, openPath } = get();
    return { nodes, edges, subgraphs, openPath };
  };
  const remember = () => set({ undoStacks: record(get().undoStacks, snapshot()), lastEdit: null });
  // An undo or redo may step into or out of a subgraph: the view then moves with it.
  const show = (shown: ReturnType<typeof snapshot>, undoStacks: UndoStacks) => {
    const current = get().openPath;
    const moved =
      shown.openPath.length !== current.length ||
      shown.openPath.some((frame, index) => frame.nodeId !== current[index]?.nodeId);
    set({
      ...shown,
      undoStacks,
      lastEdit: null,
      ...(moved ? { viewport: undefined, fitRequest: get().fitRequest + 1 } : {}),
    });
    if (moved) get().setValidation(get().validationErrors);
  };

  return {
    catalog: null,
    nodes: [],
    edges: [],
    viewport: undefined,
    fitRequest: 0,
    workflowName: "untitled",
    undoStacks: emptyStacks(),
    clipboard: null,
    pasteCount: 0,
    lastEdit: null,

    setCatalog: (catalog) => set({ catalog }),

    loadDocument: (value, name) => {
      const catalog = get().catalog;
      if (!catalog) throw new Error("the node catalog is not loaded yet");
      const doc = asWorkflowDocument(value);
      const { nodes, edges } = documentToGraph(doc, catalog);
      if (get().nodes.length > 0) remember();
      set({
        nodes,
        edges,
        subgraphs: doc.subgraphs ?? {},
        openPath: [],
        viewport: doc.editor?.viewport,
        fitRequest: get().fitRequest + 1,
        ...(name ? { workflowName: name } : {}),
      });
      get().resetRunState();
    },

    currentDocument: () => composeDocument(get()),

    clearGraph: () => {
      remember();
      set({
        nodes: [],
        edges: [],
        subgraphs: {},
        openPath: [],
        viewport: undefined,
        workflowName: "untitled",
        fitRequest: get().fitRequest + 1,
      });
      get().resetRunState();
    },

    setWorkflowName: (workflowName) => set({ workflowName }),
    setViewport: (viewport) => set({ viewport }),

    onNodesChange: (changes) => {
      if (changes.some((change) => change.type === "remove")) remember();
      set({ nodes: applyNodeChanges(changes, get().nodes) });
    },

    onEdgesChange: (changes) => {
      if (changes.some((change) => change.type === "remove")) remember();
      set({ edges: applyEdgeChanges(changes, get().edges) });
    },

    isValidConnection: (connection) => {
      const { catalog, nodes, subgraphs } = get();
      if (!catalog || connection.source === connection.target) return false;
      const specOf = (id: string) =>
        nodeSpecOf(catalog, subgraphs, nodes.find((node) => node.id === id)?.data);
      const { outputType, inputType } = portTypes(
        specOf(connection.source),
        portName(connection.sourceHandle),
        specOf(connection.target),
        portName(connection.targetHandle),
      );
      if (!outputType || !inputType) return false;
      return canConnect(catalog.types, outputType, inputType);
    },

    connect: (connection) => {
      if (!get().isValidConnection(connection)) return;
      remember();
      const output = portName(connection.sourceHandle);
      const input = portName(connection.targetHandle);
      // An input takes one link: a new one replaces the old.
      const kept = get().edges.filter(
        (edge) => !(edge.target === connection.target && edge.targetHandle === connection.targetHandle),
      );
      const edge: GraphEdge = {
        ...connection,
        id: edgeId(connection.source, output, connection.target, input),
      };
      set({ edges: addEdge<GraphEdge>(edge, kept) });
      get().clearValidation(connection.target);
    },

    addNode: (nodeType, position) => {
      const catalog = get().catalog;
      const spec = catalog?.nodes[nodeType];
      if (!catalog || !spec) return null;
      remember();
      const taken = new Set(get().nodes.map((node) => node.id));
      const id = uniqueNodeId(nodeType.split(".").at(-1) ?? "node", taken);
      const node: GraphNode = {
        id,
        type: NODE_KIND,
        position,
        selected: true,
        data: { nodeType, values: initialValues(catalog, spec), randomize: {} },
      };
      set({ nodes: [...get().nodes.map((n) => ({ ...n, selected: false })), node] });
      return id;
    },

    setValue: (nodeId, input, value) => {
      const key = `${nodeId}\0${input}`;
      const last = get().lastEdit;
      const now = Date.now();
      if (!last || last.key !== key || now - last.at > EDIT_MERGE_MS) remember();
      set({
        lastEdit: { key, at: now },
        nodes: get().nodes.map((node) =>
          node.id === nodeId
            ? { ...node, data: { ...node.data, values: { ...node.data.values, [input]: value } } }
            : node,
        ),
      });
      get().clearValidation(nodeId, input);
    },

    setRandomize: (nodeId, input, on) => {
      remember();
      set({
        nodes: get().nodes.map((node) =>
          node.id === nodeId
            ? { ...node, data: { ...node.data, randomize: { ...node.data.randomize, [input]: on } } }
            : node,
        ),
      });
    },

    setTitle: (nodeId, title) => {
      remember();
      set({
        nodes: get().nodes.map((node) => {
          if (node.id !== nodeId) return node;
          const data: GraphNodeData = { ...node.data };
          if (title.trim()) data.title = title.trim();
          else delete data.title;
          return { ...node, data };
        }),
      });
    },

    deleteSelected: () => {
      const { nodes, edges } = get();
      const gone = new Set(
        nodes.filter((node) => node.selected && !isPseudoNode(node.data)).map((node) => node.id),
      );
      const keptEdges = edges.filter(
        (edge) => !edge.selected && !gone.has(edge.source) && !gone.has(edge.target),
      );
      if (gone.size === 0 && keptEdges.length === edges.length) return;
      remember();
      set({ nodes: nodes.filter((node) => !gone.has(node.id)), edges: keptEdges });
    },

    checkpoint: remember,

    undo: () => {
      const step = undo(get().undoStacks, snapshot());
      if (step) show(...step);
    },

    redo: () => {
      const step = redo(get().undoStacks, snapshot());
      if (step) show(...step);
    },

    copy: () => {
      const clipboard = copySelection(get().nodes, get().edges);
      if (clipboard) set({ clipboard, pasteCount: 0 });
      return clipboard !== null;
    },

    paste: () => {
      const clipboard = get().clipboard;
      if (!clipboard) return;
      remember();
      const pasteCount = get().pasteCount + 1;
      const taken = new Set(get().nodes.map((node) => node.id));
      const pasted = pasteClipboard(clipboard, taken, 40 * pasteCount);
      set({
        pasteCount,
        nodes: [...get().nodes.map((node) => ({ ...node, selected: false })), ...pasted.nodes],
        edges: [...get().edges, ...pasted.edges],
      });
    },
  };
};
