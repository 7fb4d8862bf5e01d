// Running and pending jobs, with cancel and interrupt.
import { useEffect, useState } from "react";
import { cancelJob, clearQueue, getQueue, interrupt, type QueueListing } from "../api/client";
import { useEditor } from "../store";

export function QueuePanel() {
  const version = useEditor((state) => state.queueVersion);
  const notify = useEditor((state) => state.notify);
  const [queue, setQueue] = useState<QueueListing | null>(null);

  useEffect(() => {
    let live = true;
    getQueue()
      .then((listing) => live && setQueue(listing))
      .catch((error: Error) => notify("error", error.message));
    return () => {
      live = false;
    };
  }, [version, notify]);

  const fail = (error: Error) => notify("error", error.message);
  if (!queue) return <p className="gf-muted">Loading…</p>;
  return (
    <div className="gf-queue" data-testid="queue-panel">
      <h3>Running</h3>
      {queue.running.length === 0 && <p className="gf-muted">Nothing is running.</p>}
      {queue.running.map((job) => (
        <div key={job.job_id} className="gf-job" data-testid="queue-running">
          <code>{job.job_id.slice(0, 8)}</code> {job.node_count} nodes
          <button type="button" onClick={() => void interrupt().catch(fail)}>
            interrupt
          </button>
        </div>
      ))}
      <h3>
        Pending
        {queue.pending.length > 0 && (
          <button type="button" onClick={() => void clearQueue().catch(fail)}>
            clear all
          </button>
        )}
      </h3>
      {queue.pending.length === 0 && <p className="gf-muted">The queue is empty.</p>}
      {queue.pending.map((job) => (
        <div key={job.job_id} className="gf-job" data-testid="queue-pending">
          #{(job.position ?? 0) + 1} <code>{job.job_id.slice(0, 8)}</code> {job.node_count} nodes
          <button type="button" onClick={() => void cancelJob(job.job_id).catch(fail)}>
            cancel
          </button>
        </div>
      ))}
    </div>
  );
}
