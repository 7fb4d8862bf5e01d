// The editor: loads the node catalog and the last (or default) workflow, follows the server.
import { ReactFlowProvider } from "@xyflow/react";
import { useEffect, useState } from "react";
import { fetchCatalog, socketUrl } from "./api/client";
import { EventFeed } from "./api/events";
import { Canvas } from "./components/Canvas";
import { Notices } from "./components/Notices";
import { Palette } from "./components/Palette";
import { SidePanel } from "./components/SidePanel";
import { Toolbar } from "./components/Toolbar";
import defaultWorkflow from "../../workflows/txt2img.json";
import { useEditor } from "./store";
import { persistEditor, restoredDocument } from "./store/persist";
import { useShortcuts } from "./useShortcuts";

async function start(): Promise<void> {
  const editor = useEditor.getState();
  editor.setCatalog(await fetchCatalog());
  const restored = restoredDocument();
  try {
    if (restored) editor.loadDocument(restored.doc, restored.name);
    else editor.loadDocument(defaultWorkflow, "txt2img");
  } catch (error) {
    editor.notify("error", `The last workflow could not be restored: ${String(error)}`);
    editor.loadDocument(defaultWorkflow, "txt2img");
  }
  // The load itself is not an undoable step.
  useEditor.setState({ undoStacks: { past: [], future: [] } });
}

export function App() {
  const [failure, setFailure] = useState<string | null>(null);
  useShortcuts();

  useEffect(() => {
    const editor = useEditor.getState();
    const feed = new EventFeed(socketUrl(editor.clientId), {
      onEvent: (event) => useEditor.getState().handleEvent(event),
      onPreview: (frame) => useEditor.getState().handlePreview(frame),
      onConnection: (connected) => useEditor.getState().setConnected(connected),
    });
    feed.open();
    let stopPersisting = () => {};
    let cancelled = false;
    start()
      .then(() => {
        if (!cancelled) stopPersisting = persistEditor(useEditor);
      })
      .catch((error: unknown) => setFailure(error instanceof Error ? error.message : String(error)));
    return () => {
      cancelled = true;
      feed.close();
      stopPersisting();
    };
  }, []);

  return (
    <ReactFlowProvider>
      <div className="gf-app" data-testid="editor">
        <Toolbar />
        {failure && (
          <div className="gf-notice gf-notice-error">
            Cannot reach the graphflow server: {failure}
          </div>
        )}
        <main className="gf-main">
          <Palette />
          <Canvas />
          <SidePanel />
        </main>
        <Notices />
      </div>
    </ReactFlowProvider>
  );
}
