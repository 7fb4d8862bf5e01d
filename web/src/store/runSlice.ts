// What the server reports: per-node run state, validation problems, queue counts, notices.
import type { StateCreator } from "zustand";
import { ApiError, getJob, queuePrompt, type GraphError } from "../api/client";
import type { NodeUi, PreviewFrame, ServerEvent } from "../api/events";
import { locateProblems, withoutProblemsOf, type NodeProblems } from "../graph/problems";
import { randomizedNodes, randomizedSubgraphs } from "../graph/seeds";
import type { EditorState } from "./index";

export type NodeStatus = "queued" | "running" | "cached" | "done" | "failed" | "interrupted";

export interface NodeRun {
  status: NodeStatus;
  progress?: { value: number; total: number };
  /** Object URL of the latest live preview. */
  preview?: string;
  ui?: NodeUi;
  message?: string;
  seconds?: number;
}

export type { NodeProblems };

export interface Notice {
  id: number;
  kind: "info" | "error";
  text: string;
}

export interface RunSlice {
  clientId: string;
  connected: boolean;
  queueCounts: { pending: number; running: number };
  /** Bumped on queue changes and finished jobs, so the panels refresh. */
  queueVersion: number;
  historyVersion: number;
  activeJob: string | null;
  nodeRuns: Record<string, NodeRun>;
  /** The last validation errors as the server sent them (with subgraph paths). */
  validationErrors: GraphError[];
  /** Those errors on the nodes of the graph on screen, and the rest. */
  problems: Record<string, NodeProblems>;
  generalProblems: string[];
  notices: Notice[];

  setConnected(connected: boolean): void;
  handleEvent(event: ServerEvent): void;
  handlePreview(frame: PreviewFrame): void;
  resetRunState(): void;
  setValidation(errors: GraphError[]): void;
  clearValidation(nodeId: string, input?: string): void;
  /** Lists problems that belong to no node of the graph (e.g. a file that cannot be imported). */
  showProblems(messages: string[]): void;
  notify(kind: Notice["kind"], text: string): void;
  dismiss(id: number): void;
  /** Randomises seeds marked so, then sends the workflow to the queue. */
  queueWorkflow(): Promise<string | null>;
}

let noticeCounter = 0;
const CLIENT_KEY = "graphflow.clientId";

/** One websocket client id per tab, kept over reloads so a running job's events still come. */
function tabClientId(): string {
  const fresh = `editor-${Math.random().toString(36).slice(2, 12)}`;
  if (typeof sessionStorage === "undefined") return fresh;
  const known = sessionStorage.getItem(CLIENT_KEY);
  if (known) return known;
  sessionStorage.setItem(CLIENT_KEY, fresh);
  return fresh;
}

function dropPreview(run: NodeRun | undefined): void {
  if (run?.preview) URL.revokeObjectURL(run.preview);
}

export const createRunSlice: StateCreator<EditorState, [], [], RunSlice> = (set, get) => {
  const updateRun = (node: string, change: Partial<NodeRun>) => {
    const runs = get().nodeRuns;
    const current = runs[node] ?? { status: "queued" };
    set({ nodeRuns: { ...runs, [node]: { ...current, ...change } } });
  };

  // A cached output node sends no node_finished, so its images come from the job's record.
  const fillCachedResults = async (jobId: string) => {
    try {
      const record = await getJob(jobId);
      for (const [node, ui] of Object.entries(record.outputs ?? {})) {
        const run = get().nodeRuns[node];
        if (run && !run.ui) updateRun(node, { ui: ui as NodeUi });
      }
    } catch {
      // the record was deleted meanwhile: nothing to show
    }
  };

  return {
    clientId: tabClientId(),
    connected: false,
    queueCounts: { pending: 0, running: 0 },
    queueVersion: 0,
    historyVersion: 0,
    activeJob: null,
    nodeRuns: {},
    validationErrors: [],
    problems: {},
    generalProblems: [],
    notices: [],

    setConnected: (connected) => set({ connected }),

    handleEvent: (event) => {
      switch (event.type) {
        case "status":
          set({
            queueCounts: {
              pending: event.data.queue?.pending ?? 0,
              running: event.data.queue?.running ?? 0,
            },
            queueVersion: get().queueVersion + 1,
          });
          return;
        case "run_started": {
          Object.values(get().nodeRuns).forEach(dropPreview);
          const nodeRuns: Record<string, NodeRun> = {};
          for (const node of event.data.planned) nodeRuns[node] = { status: "queued" };
          set({ nodeRuns, activeJob: event.data.job_id });
          return;
        }
        case "node_cached":
          updateRun(event.data.node, { status: "cached" });
          return;
        case "node_started":
          updateRun(event.data.node, { status: "running", progress: undefined });
          return;
        case "progress":
          updateRun(event.data.node, {
            status: "running",
            progress: { value: event.data.value, total: event.data.total },
          });
          return;
        case "node_finished":
          updateRun(event.data.node, {
            status: "done",
            seconds: event.data.seconds,
            ...(event.data.ui ? { ui: event.data.ui } : {}),
          });
          return;
        case "run_failed":
          updateRun(event.data.node, {
            status: "failed",
            message: `${event.data.exception_type}: ${event.data.message}`,
          });
          return;
        case "run_interrupted":
          if (event.data.node) updateRun(event.data.node, { status: "interrupted" });
          return;
        case "job_done": {
          // Nodes still waiting when a job ends never ran: they show no state.
          const nodeRuns = Object.fromEntries(
            Object.entries(get().nodeRuns).filter(([, run]) => run.status !== "queued"),
          );
          set({ nodeRuns, activeJob: null, historyVersion: get().historyVersion + 1 });
          void fillCachedResults(event.data.job_id);
          const error = event.data.error;
          if (event.data.status === "failed" && error) get().notify("error", error.message);
          if (event.data.status === "cancelled") get().notify("info", "The run was stopped.");
          return;
        }
        default:
          return;
      }
    },

    handlePreview: (frame) => {
      dropPreview(get().nodeRuns[frame.node]);
      updateRun(frame.node, { preview: URL.createObjectURL(frame.image) });
    },

    resetRunState: () => {
      Object.values(get().nodeRuns).forEach(dropPreview);
      set({ nodeRuns: {}, validationErrors: [], problems: {}, generalProblems: [] });
    },

    setValidation: (errors) => {
      const opened = get().openPath.map((frame) => frame.nodeId);
      const shown = new Set(get().nodes.map((node) => node.id));
      const { problems, general } = locateProblems(errors, opened, shown);
      set({ validationErrors: errors, problems, generalProblems: general });
    },

    showProblems: (messages) => set({ generalProblems: messages }),

    clearValidation: (nodeId, input) => {
      if (!get().problems[nodeId]) return;
      const opened = get().openPath.map((frame) => frame.nodeId);
      const errors = withoutProblemsOf(get().validationErrors, opened, nodeId, input);
      const generalProblems = get().generalProblems; // an edit does not answer those
      get().setValidation(errors);
      set({ generalProblems });
    },

    notify: (kind, text) => {
      noticeCounter += 1;
      const notice = { id: noticeCounter, kind, text };
      set({ notices: [...get().notices, notice].slice(-4) });
      setTimeout(() => get().dismiss(notice.id), kind === "info" ? 4000 : 15000);
    },

    dismiss: (id) => set({ notices: get().notices.filter((notice) => notice.id !== id) }),

    queueWorkflow: async () => {
      const { catalog, nodes, subgraphs, openPath } = get();
      if (!catalog) return null;
      // Fresh seeds everywhere in the document, without an undo step.
      const open = new Set(openPath.map((frame) => frame.subgraphId));
      const frames = openPath.map((frame) => {
        const parentNodes = randomizedNodes(frame.parent.nodes, catalog, subgraphs);
        return parentNodes === frame.parent.nodes ? frame : { ...frame, parent: { ...frame.parent, nodes: parentNodes } };
      });
      set({
        nodes: randomizedNodes(nodes, catalog, subgraphs),
        subgraphs: randomizedSubgraphs(subgraphs, catalog, open),
        ...(frames.some((frame, index) => frame !== openPath[index]) ? { openPath: frames } : {}),
      });
      try {
        const accepted = await queuePrompt(get().currentDocument(), get().clientId);
        set({ validationErrors: [], problems: {}, generalProblems: [] });
        const where = accepted.position === 0 ? "runs next" : `position ${accepted.position}`;
        get().notify("info", `Queued (${where}).`);
        return accepted.job_id;
      } catch (error) {
        if (error instanceof ApiError && error.errors.length > 0) {
          get().setValidation(error.errors);
          get().notify("error", `${error.message}: see the marked nodes.`);
        } else {
          get().notify("error", error instanceof Error ? error.message : String(error));
        }
        return null;
      }
    },
  };
};

const STATUS_ORDER: NodeStatus[] = ["failed", "running", "interrupted", "queued", "done", "cached"];

/** The flat id prefix of the nodes on screen ("" for the workflow, "12:" inside node 12). */
export function runPrefix(openPath: { nodeId: string }[]): string {
  return openPath.map((frame) => `${frame.nodeId}:`).join("");
}

/** One state for a subgraph node from the states of its inner nodes (flat ids `id:...`):
 * the first of failed, running, interrupted, queued, done, cached that one of them is in. */
export function subgraphStatus(runs: Record<string, NodeRun>, id: string): NodeStatus | undefined {
  const prefix = `${id}:`;
  const found = new Set<NodeStatus>();
  for (const [node, run] of Object.entries(runs)) if (node.startsWith(prefix)) found.add(run.status);
  return STATUS_ORDER.find((status) => found.has(status));
}
