// The websocket event feed (docs/api.md, "GET /ws"): JSON text frames and binary previews.
import type { ImageRef } from "./client";

export interface NodeUi {
  images?: ImageRef[];
  text?: string[];
  [key: string]: unknown;
}

export type ServerEvent =
  | { type: "status"; data: { queue?: { pending?: number; running?: number }; client_id?: string } }
  | { type: "run_started"; data: { job_id: string; planned: string[] } }
  | { type: "node_cached"; data: { job_id: string; node: string } }
  | { type: "node_started"; data: { job_id: string; node: string; node_type?: string } }
  | { type: "progress"; data: { job_id: string; node: string; value: number; total: number } }
  | { type: "node_finished"; data: { job_id: string; node: string; seconds: number; ui: NodeUi | null } }
  | {
      type: "run_failed";
      data: { job_id: string; node: string; exception_type: string; message: string };
    }
  | { type: "run_interrupted"; data: { job_id: string; node: string } }
  | { type: "run_finished"; data: { job_id: string; executed: number; cached: number; seconds: number } }
  | {
      type: "job_done";
      data: { job_id: string; status: string; error: { code: string; message: string } | null };
    }
  | { type: "pong"; data: Record<string, never> };

/** One text frame of the feed → its events. The editor asks for the batched feed
 * (`/ws?batch=1`): consecutive events of a job come as one `events` message, so a
 * 10,000-node run is a few dozen frames instead of 20,000. */
export function unpackMessage(text: string): ServerEvent[] {
  const message = JSON.parse(text) as ServerEvent | { type: "events"; data: { events?: unknown } };
  if (message.type !== "events") return [message as ServerEvent];
  const events = (message.data as { events?: unknown }).events;
  return Array.isArray(events) ? (events as ServerEvent[]) : [];
}

export interface PreviewFrame {
  jobId: string;
  node: string;
  width: number;
  height: number;
  /** The encoded image (JPEG). */
  image: Blob;
}

/** Decodes `[4-byte big-endian header length][JSON header][image bytes]`. */
export function parsePreviewFrame(buffer: ArrayBuffer): PreviewFrame | null {
  if (buffer.byteLength < 4) return null;
  const length = new DataView(buffer).getUint32(0, false);
  if (4 + length > buffer.byteLength) return null;
  let header: { type?: string; data?: Record<string, unknown> };
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  } catch {
    return null;
  }
  if (header.type !== "preview" || !header.data) return null;
  const data = header.data;
  const format = typeof data.format === "string" ? data.format : "jpeg";
  return {
    jobId: String(data.job_id ?? ""),
    node: String(data.node ?? ""),
    width: Number(data.width ?? 0),
    height: Number(data.height ?? 0),
    image: new Blob([new Uint8Array(buffer, 4 + length)], { type: `image/${format}` }),
  };
}

export interface FeedHandlers {
  onEvent(event: ServerEvent): void;
  onPreview(frame: PreviewFrame): void;
  onConnection(connected: boolean): void;
}

/** Keeps a websocket to the server open, reconnecting with a growing delay. */
export class EventFeed {
  private socket: WebSocket | null = null;
  private retry = 500;
  private closed = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly url: string,
    private readonly handlers: FeedHandlers,
  ) {}

  open(): void {
    this.closed = false;
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      this.retry = 500;
      this.handlers.onConnection(true);
    };
    socket.onmessage = (message: MessageEvent<string | ArrayBuffer>) => {
      if (typeof message.data === "string") {
        let events: ServerEvent[];
        try {
          events = unpackMessage(message.data);
        } catch {
          return; // a malformed frame is dropped; the next status or job_done brings us back in step
        }
        for (const event of events) this.handlers.onEvent(event);
      } else {
        const frame = parsePreviewFrame(message.data);
        if (frame) this.handlers.onPreview(frame);
      }
    };
    socket.onclose = () => {
      this.handlers.onConnection(false);
      if (this.closed) return;
      this.timer = setTimeout(() => this.open(), this.retry);
      this.retry = Math.min(this.retry * 2, 10_000);
    };
    this.socket = socket;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.socket?.close();
  }
}
