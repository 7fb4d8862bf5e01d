// The typed HTTP client: openapi-fetch over the types generated from docs/openapi.json.
import createClient from "openapi-fetch";
import { parseCatalog, type Catalog } from "./catalog";
import type { components, paths } from "./schema";
import type { WorkflowDocument } from "../graph/document";

export type GraphError = components["schemas"]["GraphError"];
export type JobSummary = components["schemas"]["JobSummary"];
export type JobRecord = components["schemas"]["JobRecord"];
export type QueueListing = components["schemas"]["QueueListing"];
export type UploadResult = components["schemas"]["UploadResult"];
export type SavedWorkflow = components["schemas"]["WorkflowList"]["workflows"][number];
export type WorkflowImport = components["schemas"]["WorkflowImport"];
type Workflow = components["schemas"]["Workflow"];

/** An output file as output nodes report it in their ui data. */
export interface ImageRef {
  filename: string;
  subfolder?: string;
  type?: string;
}

const TOKEN_KEY = "graphflow.token";

/** A server started with --auth-token is opened as /?token=...; the token is kept per tab. */
function authToken(): string | null {
  const fromUrl = new URLSearchParams(window.location.search).get("token");
  if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl);
  return fromUrl ?? sessionStorage.getItem(TOKEN_KEY);
}

const token = typeof window === "undefined" ? null : authToken();
// The dev server (npm run dev) talks to a separate `graphflow serve --allow-origin ...`.
export const apiBase: string = import.meta.env.DEV
  ? ((import.meta.env.VITE_GRAPHFLOW_URL as string | undefined) ?? "http://127.0.0.1:8188")
  : "";

const api = createClient<paths>({
  baseUrl: apiBase,
  headers: token ? { Authorization: `Bearer ${token}` } : {},
});

/** A refused request: the server's error code and message, and graph errors if any. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly errors: GraphError[] = [],
  ) {
    super(message);
  }
}

function failure(response: Response, body: unknown): ApiError {
  const error = (body as { error?: { code?: string; message?: string; errors?: GraphError[] } })
    ?.error;
  return new ApiError(
    response.status,
    error?.code ?? "http_error",
    error?.message ?? `${response.status} ${response.statusText}`,
    error?.errors ?? [],
  );
}

async function unwrap<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (error !== undefined || data === undefined) throw failure(response, error);
  return data;
}

export async function fetchCatalog(): Promise<Catalog> {
  return parseCatalog(await unwrap(api.GET("/api/nodes")));
}

export function queuePrompt(workflow: WorkflowDocument, clientId: string) {
  return unwrap(
    api.POST("/api/prompt", {
      body: { workflow: workflow as Workflow, client_id: clientId, priority: 0 },
    }),
  );
}

export const getQueue = () => unwrap(api.GET("/api/queue"));
export const cancelJob = (jobId: string) =>
  unwrap(api.DELETE("/api/queue/{job_id}", { params: { path: { job_id: jobId } } }));
export const clearQueue = () => unwrap(api.POST("/api/queue/clear"));
export const interrupt = () => unwrap(api.POST("/api/interrupt", { body: {} }));
export const getHistory = (limit: number) =>
  unwrap(api.GET("/api/history", { params: { query: { limit, offset: 0 } } }));
export const getJob = (jobId: string) =>
  unwrap(api.GET("/api/history/{job_id}", { params: { path: { job_id: jobId } } }));
export const deleteJob = (jobId: string) =>
  unwrap(api.DELETE("/api/history/{job_id}", { params: { path: { job_id: jobId } } }));

export const listWorkflows = () => unwrap(api.GET("/api/workflows"));
export async function loadWorkflow(name: string): Promise<unknown> {
  return unwrap(api.GET("/api/workflows/{name}", { params: { path: { name } } }));
}
export const saveWorkflow = (name: string, doc: WorkflowDocument) =>
  unwrap(
    api.PUT("/api/workflows/{name}", { params: { path: { name } }, body: doc as Workflow }),
  );
export const deleteWorkflow = (name: string) =>
  unwrap(api.DELETE("/api/workflows/{name}", { params: { path: { name } } }));

/** Uploads an image into the input folder; `name` is what a load-image node takes. */
export async function uploadImage(file: File): Promise<UploadResult> {
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("type", "input");
  const response = await fetch(`${apiBase}/api/upload/image`, {
    method: "POST",
    body: form,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
  const body: unknown = await response.json().catch(() => null);
  if (!response.ok) throw failure(response, body);
  return body as UploadResult;
}

/** Reads a workflow of any format the server knows (a parsed JSON document, or a PNG's bytes)
 *  as graphflow/1 (POST /api/workflow/import); refusals are ApiErrors listing every problem. */
export async function importWorkflow(source: Uint8Array | object): Promise<WorkflowImport> {
  const png = source instanceof Uint8Array;
  const response = await fetch(`${apiBase}/api/workflow/import`, {
    method: "POST",
    body: png ? new Blob([source as BlobPart], { type: "image/png" }) : JSON.stringify(source),
    headers: {
      "Content-Type": png ? "image/png" : "application/json",
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
  });
  const body: unknown = await response.json().catch(() => null);
  if (!response.ok) throw failure(response, body);
  return body as WorkflowImport;
}

/** The URL of a file in the output / input / temp folder (for <img src>). */
export function viewUrl(image: ImageRef): string {
  const query = new URLSearchParams({
    filename: image.filename,
    type: image.type ?? "output",
    subfolder: image.subfolder ?? "",
  });
  if (token) query.set("token", token);
  return `${apiBase}/api/view?${query.toString()}`;
}

/** The websocket URL of the event feed for this client. */
export function socketUrl(clientId: string): string {
  const base = apiBase ? new URL(apiBase) : new URL(window.location.href);
  const url = new URL("/ws", base);
  url.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("client_id", clientId);
  url.searchParams.set("batch", "1"); // runs of job events as one message (events.ts)
  if (token) url.searchParams.set("token", token);
  return url.toString();
}
