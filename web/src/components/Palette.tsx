// The node palette: every node type by category, searchable, with its docstring as help.
import { useReactFlow } from "@xyflow/react";
import { useMemo, useState } from "react";
import { groupByCategory, type NodeSpec } from "../api/catalog";
import { useEditor } from "../store";
import { PALETTE_DRAG_TYPE } from "./Canvas";

export function Palette() {
  const catalog = useEditor((state) => state.catalog);
  const addNode = useEditor((state) => state.addNode);
  const flow = useReactFlow();
  const [search, setSearch] = useState("");
  const [focused, setFocused] = useState<NodeSpec | null>(null);
  const groups = useMemo(
    () => (catalog ? groupByCategory(catalog, search) : []),
    [catalog, search],
  );

  const add = (spec: NodeSpec) => {
    // New nodes land in the middle of the visible canvas, a little apart from each other.
    const box = document.querySelector(".gf-canvas")?.getBoundingClientRect();
    const centre = box
      ? { x: box.left + box.width / 2, y: box.top + box.height / 3 }
      : { x: 400, y: 300 };
    const centreInFlow = flow.screenToFlowPosition(centre);
    let position = { x: centreInFlow.x - 140, y: centreInFlow.y };
    // Step aside from nodes already there, so a new node never hides another one.
    const taken = useEditor.getState().nodes.map((node) => node.position);
    const near = (p: { x: number; y: number }) =>
      taken.some((t) => Math.abs(t.x - p.x) < 40 && Math.abs(t.y - p.y) < 40);
    for (let tries = 0; near(position) && tries < 50; tries += 1) {
      position = { x: position.x + 40, y: position.y + 40 };
    }
    addNode(spec.id, position);
  };

  return (
    <aside className="gf-palette" data-testid="palette">
      <input
        type="search"
        placeholder="Search nodes…"
        data-testid="palette-search"
        value={search}
        onChange={(event) => setSearch(event.target.value)}
        onKeyDown={(event) => {
          const first = groups[0]?.[1][0];
          if (event.key === "Enter" && first) add(first);
        }}
      />
      <div className="gf-palette-list">
        {groups.map(([category, specs]) => (
          <section key={category}>
            <h3>{category}</h3>
            {specs.map((spec) => (
              <button
                type="button"
                key={spec.id}
                className="gf-palette-item"
                data-testid={`palette-item-${spec.id}`}
                title={spec.description}
                draggable
                onDragStart={(event) => {
                  event.dataTransfer.setData(PALETTE_DRAG_TYPE, spec.id);
                  event.dataTransfer.effectAllowed = "copy";
                }}
                onMouseEnter={() => setFocused(spec)}
                onFocus={() => setFocused(spec)}
                onClick={() => add(spec)}
              >
                {spec.display_name}
              </button>
            ))}
          </section>
        ))}
        {catalog && groups.length === 0 && <p className="gf-muted">No node matches.</p>}
        {!catalog && <p className="gf-muted">Loading nodes…</p>}
      </div>
      <div className="gf-palette-help" data-testid="palette-help">
        {focused ? (
          <>
            <strong>{focused.display_name}</strong> <code>{focused.id}</code>
            <p>{focused.description}</p>
          </>
        ) : (
          <p className="gf-muted">Point at a node for its help; click or drag it to add it.</p>
        )}
      </div>
    </aside>
  );
}
