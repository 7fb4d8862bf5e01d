// Short messages, and workflow problems that belong to no node (one per line, dismissable).
import { useEditor } from "../store";

export function Notices() {
  const notices = useEditor((state) => state.notices);
  const general = useEditor((state) => state.generalProblems);
  const dismiss = useEditor((state) => state.dismiss);
  const showProblems = useEditor((state) => state.showProblems);
  return (
    <div className="gf-notices">
      {general.length > 0 && (
        <div className="gf-notice gf-notice-error gf-problems" data-testid="general-problems">
          {general.map((message) => (
            <div key={message}>{message}</div>
          ))}
          <button
            type="button"
            aria-label="dismiss"
            data-testid="general-problems-dismiss"
            onClick={() => showProblems([])}
          >
            ×
          </button>
        </div>
      )}
      {notices.map((notice) => (
        <div
          key={notice.id}
          className={`gf-notice gf-notice-${notice.kind}`}
          data-testid={`notice-${notice.kind}`}
        >
          {notice.text}
          <button type="button" aria-label="dismiss" onClick={() => dismiss(notice.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
