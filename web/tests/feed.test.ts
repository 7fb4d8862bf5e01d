import { describe, expect, it } from "vitest";
import { unpackMessage } from "../src/api/events";

describe("unpackMessage", () => {
  it("gives a plain message as one event", () => {
    const text = JSON.stringify({ type: "job_done", data: { job_id: "j", status: "done", error: null } });
    expect(unpackMessage(text)).toEqual([JSON.parse(text)]);
  });

  it("unpacks a batched events message in order", () => {
    const started = { type: "node_started", data: { job_id: "j", node: "a", node_type: "core.add" } };
    const finished = { type: "node_finished", data: { job_id: "j", node: "a", seconds: 0.1, ui: null } };
    const text = JSON.stringify({ type: "events", data: { job_id: "j", events: [started, finished] } });
    expect(unpackMessage(text)).toEqual([started, finished]);
  });

  it("drops a batch without an event list and throws on text that is not JSON", () => {
    expect(unpackMessage(JSON.stringify({ type: "events", data: {} }))).toEqual([]);
    expect(() => unpackMessage("{not json")).toThrow();
  });
});
