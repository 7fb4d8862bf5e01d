// Which colour is which port type.
import { useState } from "react";
import { useEditor } from "../store";

export function TypeLegend() {
  const catalog = useEditor((state) => state.catalog);
  const [open, setOpen] = useState(false);
  if (!catalog) return null;
  return (
    <div className="gf-legend" data-testid="type-legend">
      <button type="button" onClick={() => setOpen(!open)}>
        {open ? "hide" : "port types"}
      </button>
      {open && (
        <ul>
          {Object.values(catalog.types).map((type) => (
            <li key={type.name} title={type.description}>
              <span className="gf-swatch" style={{ background: type.color }} />
              {type.name}
              {type.accepts.length > 0 && <small> (accepts {type.accepts.join(", ")})</small>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
