// Finished jobs, newest first: a gallery of their images, their outcome, their workflow.
import { useEffect, useState } from "react";
import { deleteJob, getHistory, getJob, viewUrl, type ImageRef, type JobRecord } from "../api/client";
import { useEditor } from "../store";

const HISTORY_SIZE = 30;

/** The images the output nodes of a job reported (ui data `images`). */
export function jobImages(job: JobRecord): ImageRef[] {
  const images: ImageRef[] = [];
  for (const ui of Object.values(job.outputs ?? {})) {
    const list = (ui as { images?: unknown }).images;
    if (!Array.isArray(list)) continue;
    for (const item of list as ImageRef[]) {
      if (item && typeof item.filename === "string") images.push(item);
    }
  }
  return images;
}

function when(seconds: number | null): string {
  return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "";
}

export function HistoryPanel() {
  const version = useEditor((state) => state.historyVersion);
  const notify = useEditor((state) => state.notify);
  const loadDocument = useEditor((state) => state.loadDocument);
  const [jobs, setJobs] = useState<JobRecord[] | null>(null);
  const [large, setLarge] = useState<ImageRef | null>(null);
  const [refresh, setRefresh] = useState(0);

  useEffect(() => {
    let live = true;
    getHistory(HISTORY_SIZE)
      .then((page) => live && setJobs(page.jobs))
      .catch((error: Error) => notify("error", error.message));
    return () => {
      live = false;
    };
  }, [version, refresh, notify]);

  const openWorkflow = async (jobId: string) => {
    try {
      const job = await getJob(jobId);
      loadDocument(job.workflow, `job-${jobId.slice(0, 8)}`);
    } catch (error) {
      notify("error", error instanceof Error ? error.message : String(error));
    }
  };

  if (!jobs) return <p className="gf-muted">Loading…</p>;
  // A cached output node reports the same file again: the gallery shows each file once.
  const seen = new Set<string>();
  const gallery = jobs
    .flatMap((job) => jobImages(job))
    .map((image) => ({ key: viewUrl(image), image }))
    .filter(({ key }) => !seen.has(key) && Boolean(seen.add(key)));
  return (
    <div className="gf-history" data-testid="history-panel">
      <h3>Gallery</h3>
      {gallery.length === 0 && <p className="gf-muted">No images yet.</p>}
      <div className="gf-gallery" data-testid="gallery">
        {gallery.map(({ key, image }) => (
          <img
            key={key}
            src={viewUrl(image)}
            alt={image.filename}
            title={image.filename}
            onClick={() => setLarge(image)}
          />
        ))}
      </div>
      <h3>Jobs</h3>
      {jobs.length === 0 && <p className="gf-muted">No finished jobs.</p>}
      {jobs.map((job) => (
        <div key={job.job_id} className={`gf-job gf-job-${job.status}`} data-testid="history-job">
          <span className={`gf-badge gf-badge-${job.status}`}>{job.status}</span>
          <code>{job.job_id.slice(0, 8)}</code> {when(job.finished_at)}
          {job.timings?.total_seconds != null && ` · ${job.timings.total_seconds.toFixed(1)}s`}
          {job.error && <div className="gf-problem">{job.error.message}</div>}
          <div>
            <button type="button" onClick={() => void openWorkflow(job.job_id)}>
              open workflow
            </button>
            <button
              type="button"
              onClick={() =>
                void deleteJob(job.job_id)
                  .then(() => setRefresh(refresh + 1))
                  .catch((error: Error) => notify("error", error.message))
              }
            >
              forget
            </button>
          </div>
        </div>
      ))}
      {large && (
        <div className="gf-dialog-backdrop" onClick={() => setLarge(null)}>
          <img className="gf-lightbox" src={viewUrl(large)} alt={large.filename} />
        </div>
      )}
    </div>
  );
}
