// Where the canvas is: the workflow, or a subgraph opened in it (click a step to go back).
import { useEditor } from "../store";

export function Breadcrumb() {
  const openPath = useEditor((state) => state.openPath);
  const name = useEditor((state) => state.workflowName);
  const closeSubgraph = useEditor((state) => state.closeSubgraph);
  if (openPath.length === 0) return null;
  const steps = [name, ...openPath.map((frame) => frame.title)];
  return (
    <nav className="gf-breadcrumb" data-testid="breadcrumb" aria-label="open subgraphs">
      {steps.map((title, level) =>
        level < openPath.length ? (
          <span key={level}>
            <button
              type="button"
              data-testid={`breadcrumb-${level}`}
              title={level === 0 ? "Back to the workflow" : "Back to this subgraph"}
              onClick={() => closeSubgraph(level)}
            >
              {title}
            </button>
            {" › "}
          </span>
        ) : (
          <strong key={level} data-testid="breadcrumb-current">
            {title}
          </strong>
        ),
      )}
    </nav>
  );
}
