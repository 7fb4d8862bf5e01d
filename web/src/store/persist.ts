// The editor state survives a reload: the current document is kept in localStorage.
import type { EditorState } from "./index";
import type { StoreApi } from "zustand";

const DOCUMENT_KEY = "graphflow.editor.document";
const NAME_KEY = "graphflow.editor.name";
const SAVE_DELAY_MS = 300;

export function restoredDocument(): { doc: unknown; name: string } | null {
  try {
    const text = localStorage.getItem(DOCUMENT_KEY);
    if (!text) return null;
    return { doc: JSON.parse(text) as unknown, name: localStorage.getItem(NAME_KEY) ?? "untitled" };
  } catch {
    return null;
  }
}

/** Writes the document shortly after each change of the graph; returns the unsubscribe. */
export function persistEditor(store: StoreApi<EditorState>): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const save = () => {
    const state = store.getState();
    if (!state.catalog) return;
    try {
      localStorage.setItem(DOCUMENT_KEY, JSON.stringify(state.currentDocument()));
      localStorage.setItem(NAME_KEY, state.workflowName);
    } catch {
      // storage full or disabled: the editor still works, it just will not restore
    }
  };
  const unsubscribe = store.subscribe((state, previous) => {
    if (
      state.nodes === previous.nodes &&
      state.edges === previous.edges &&
      state.subgraphs === previous.subgraphs &&
      state.viewport === previous.viewport &&
      state.workflowName === previous.workflowName
    ) {
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(save, SAVE_DELAY_MS);
  });
  window.addEventListener("beforeunload", save);
  return () => {
    unsubscribe();
    window.removeEventListener("beforeunload", save);
  };
}
