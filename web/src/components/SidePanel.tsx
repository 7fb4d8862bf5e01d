// The right-hand panel: the queue, or the history with its gallery.
import { useState } from "react";
import { HistoryPanel } from "./HistoryPanel";
import { QueuePanel } from "./QueuePanel";

export function SidePanel() {
  const [tab, setTab] = useState<"queue" | "history" | null>("history");
  return (
    <aside className={`gf-side ${tab ? "" : "gf-collapsed"}`}>
      <nav>
        {(["queue", "history"] as const).map((name) => (
          <button
            type="button"
            key={name}
            data-testid={`tab-${name}`}
            className={tab === name ? "gf-active" : ""}
            onClick={() => setTab(tab === name ? null : name)}
          >
            {name}
          </button>
        ))}
      </nav>
      {tab === "queue" && <QueuePanel />}
      {tab === "history" && <HistoryPanel />}
    </aside>
  );
}
