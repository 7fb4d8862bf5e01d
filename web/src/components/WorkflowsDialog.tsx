// The workflows saved on the server (/api/workflows): open or delete one.
import { useEffect, useState } from "react";
import { deleteWorkflow, listWorkflows, loadWorkflow, type SavedWorkflow } from "../api/client";
import { useEditor } from "../store";

export function WorkflowsDialog({ onClose }: { onClose(): void }) {
  const [items, setItems] = useState<SavedWorkflow[] | null>(null);
  const loadDocument = useEditor((state) => state.loadDocument);
  const notify = useEditor((state) => state.notify);

  const refresh = () =>
    listWorkflows()
      .then((list) => setItems(list.workflows))
      .catch((error: Error) => notify("error", error.message));
  useEffect(() => {
    void refresh();
  }, []);

  const open = async (name: string) => {
    try {
      loadDocument(await loadWorkflow(name), name.replace(/\.json$/, ""));
      notify("info", `Opened ${name}.`);
      onClose();
    } catch (error) {
      notify("error", error instanceof Error ? error.message : String(error));
    }
  };

  return (
    <div className="gf-dialog-backdrop" onClick={onClose}>
      <div className="gf-dialog" data-testid="workflows-dialog" onClick={(e) => e.stopPropagation()}>
        <header>
          <h2>Saved workflows</h2>
          <button type="button" onClick={onClose} aria-label="close">
            ×
          </button>
        </header>
        {items === null && <p className="gf-muted">Loading…</p>}
        {items?.length === 0 && <p className="gf-muted">Nothing saved on the server yet.</p>}
        <ul>
          {items?.map((item) => (
            <li key={item.name}>
              <button
                type="button"
                className="gf-link"
                data-testid={`workflow-item-${item.name.replace(/\.json$/, "")}`}
                onClick={() => void open(item.name)}
              >
                {item.name.replace(/\.json$/, "")}
              </button>
              <small>{new Date(item.modified * 1000).toLocaleString()}</small>
              <button
                type="button"
                title="Delete from the server"
                onClick={() =>
                  void deleteWorkflow(item.name)
                    .then(refresh)
                    .catch((error: Error) => notify("error", error.message))
                }
              >
                delete
              </button>
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}
