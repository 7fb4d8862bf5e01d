// The editor's one store: the graph being edited and what the server reports about it.
import { create } from "zustand";
import { createGraphSlice, type GraphSlice } from "./graphSlice";
import { createRunSlice, type RunSlice } from "./runSlice";
import { createSubgraphSlice, type SubgraphSlice } from "./subgraphSlice";

export type EditorState = GraphSlice & SubgraphSlice & RunSlice;

export const createEditorStore = () =>
  create<EditorState>()((...args) => ({
    ...createGraphSlice(...args),
    ...createSubgraphSlice(...args),
    ...createRunSlice(...args),
  }));

export const useEditor = createEditorStore();
