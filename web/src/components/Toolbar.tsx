// The top bar: queue and interrupt, undo/redo, and workflow files (server, download, upload).
import { useRef, useState } from "react";
import { interrupt, saveWorkflow } from "../api/client";
import { isPseudoNode } from "../graph/subgraphs";
import { openWorkflowFile } from "../lib/openWorkflow";
import { downloadWorkflow } from "../lib/workflowFiles";
import { useEditor } from "../store";
import { WorkflowsDialog } from "./WorkflowsDialog";

export function Toolbar() {
  const name = useEditor((state) => state.workflowName);
  const counts = useEditor((state) => state.queueCounts);
  const connected = useEditor((state) => state.connected);
  const canUndo = useEditor((state) => state.undoStacks.past.length > 0);
  const canRedo = useEditor((state) => state.undoStacks.future.length > 0);
  const canCollapse = useEditor((state) => state.nodes.some((node) => node.selected && !isPseudoNode(node.data)));
  const actions = useEditor.getState();
  const [dialog, setDialog] = useState(false);
  const chooser = useRef<HTMLInputElement>(null);

  const fail = (error: unknown) =>
    actions.notify("error", error instanceof Error ? error.message : String(error));

  const save = async () => {
    try {
      const result = await saveWorkflow(name, actions.currentDocument());
      actions.notify("info", `Saved ${result.name} on the server.`);
    } catch (error) {
      fail(error);
    }
  };

  return (
    <header className="gf-toolbar">
      <strong className="gf-brand">graphflow</strong>
      <button
        type="button"
        className="gf-primary"
        data-testid="queue-button"
        title="Queue the workflow (Ctrl+Enter)"
        onClick={() => void actions.queueWorkflow()}
      >
        Queue
      </button>
      <button
        type="button"
        data-testid="interrupt-button"
        title="Stop the running job"
        disabled={counts.running === 0}
        onClick={() => void interrupt().catch(fail)}
      >
        Interrupt
      </button>
      <span className="gf-counts" data-testid="queue-counts">
        {counts.running} running · {counts.pending} pending
      </span>
      <span className="gf-sep" />
      <button type="button" title="Undo (Ctrl+Z)" disabled={!canUndo} onClick={actions.undo}>
        Undo
      </button>
      <button type="button" title="Redo (Ctrl+Shift+Z)" disabled={!canRedo} onClick={actions.redo}>
        Redo
      </button>
      <button
        type="button"
        data-testid="collapse-button"
        title="Collapse the selected nodes into a subgraph (Ctrl+G)"
        disabled={!canCollapse}
        onClick={() => actions.collapseSelected()}
      >
        Collapse
      </button>
      <span className="gf-sep" />
      <button type="button" data-testid="new-button" onClick={actions.clearGraph}>
        New
      </button>
      <input
        className="gf-name"
        data-testid="workflow-name"
        aria-label="workflow name"
        value={name}
        onChange={(event) => actions.setWorkflowName(event.target.value)}
      />
      <button type="button" data-testid="save-button" onClick={() => void save()}>
        Save
      </button>
      <button type="button" data-testid="open-button" onClick={() => setDialog(true)}>
        Open…
      </button>
      <button
        type="button"
        data-testid="download-button"
        onClick={() => downloadWorkflow(actions.currentDocument(), name)}
      >
        Download
      </button>
      <button
        type="button"
        data-testid="upload-button"
        title="Open a workflow JSON file or a PNG made by graphflow"
        onClick={() => chooser.current?.click()}
      >
        Upload…
      </button>
      <input
        ref={chooser}
        type="file"
        hidden
        accept=".json,application/json,image/png"
        data-testid="upload-file"
        onChange={async (event) => {
          const file = event.target.files?.[0];
          event.target.value = "";
          if (!file) return;
          await openWorkflowFile(file, actions);
        }}
      />
      <span
        className={`gf-connection ${connected ? "gf-online" : "gf-offline"}`}
        data-testid="connection"
        title={connected ? "connected to the server" : "not connected to the server"}
      >
        {connected ? "● live" : "○ offline"}
      </span>
      {dialog && <WorkflowsDialog onClose={() => setDialog(false)} />}
    </header>
  );
}
