// Keyboard: Ctrl+Enter queue, Ctrl+Z / Ctrl+Shift+Z (or Ctrl+Y) undo/redo, Ctrl+C / Ctrl+V,
// Ctrl+G collapse the selection into a subgraph, Delete. Text fields keep their own undo,
// copy and delete.
import { useEffect } from "react";
import { useEditor } from "./store";

function typingInto(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

export function useShortcuts(): void {
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      const editor = useEditor.getState();
      const mod = event.ctrlKey || event.metaKey;
      const key = event.key.toLowerCase();
      if (mod && key === "enter") {
        event.preventDefault();
        void editor.queueWorkflow();
        return;
      }
      if (typingInto(event.target)) return;
      if (mod && key === "z") {
        event.preventDefault();
        if (event.shiftKey) editor.redo();
        else editor.undo();
      } else if (mod && key === "y") {
        event.preventDefault();
        editor.redo();
      } else if (mod && key === "c") {
        if (window.getSelection()?.toString()) return; // copying page text
        if (editor.copy()) event.preventDefault();
      } else if (mod && key === "g") {
        event.preventDefault();
        editor.collapseSelected();
      } else if (mod && key === "v") {
        event.preventDefault();
        editor.paste();
      } else if (key === "delete" || key === "backspace") {
        event.preventDefault();
        editor.deleteSelected();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
}
