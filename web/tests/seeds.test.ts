import { describe, expect, it } from "vitest";
import { documentToGraph } from "../src/graph/document";
import { randomizedNodes, randomizedSubgraphs } from "../src/graph/seeds";
import type { Subgraphs } from "../src/graph/subgraphs";
import { catalog } from "./fixtures";

const half = () => 0.5;
const subgraphs: Subgraphs = {
  sampling: {
    inputs: [{ name: "latent", type: "LATENT" }],
    outputs: [{ name: "latent", from: ["sampler", "latent"] }],
    nodes: {
      sampler: { type: "diffusion.sampler", inputs: { latent: { link: ["$in", "latent"] }, seed: 1, steps: 4 } },
    },
    editor: { randomize: { sampler: ["seed"] } },
  },
};

describe("seeds randomised before a queue", () => {
  it("inside subgraph definitions, by their editor.randomize marks", () => {
    const fresh = randomizedSubgraphs(subgraphs, catalog, new Set(), half);
    expect(fresh.sampling?.nodes.sampler?.inputs).toEqual({
      latent: { link: ["$in", "latent"] },
      seed: 2 ** 31,
      steps: 4,
    });
    expect(subgraphs.sampling?.nodes.sampler?.inputs?.seed).toBe(1); // a new object, not an edit
  });

  it("not in a definition that is open (its graph on screen is randomised instead)", () => {
    expect(randomizedSubgraphs(subgraphs, catalog, new Set(["sampling"]), half)).toBe(subgraphs);
  });

  it("on nodes marked so, keeping the same array when none is", () => {
    const { nodes } = documentToGraph(
      {
        format: "graphflow/1",
        nodes: { sampler: { type: "diffusion.sampler", inputs: { seed: 3 } }, n: { type: "core.int", inputs: {} } },
        editor: { randomize: { sampler: ["seed"] } },
      },
      catalog,
    );
    expect(randomizedNodes(nodes, catalog, {}, half)[0]?.data.values.seed).toBe(2 ** 31);
    const unmarked = nodes.slice(1);
    expect(randomizedNodes(unmarked, catalog, {}, half)).toBe(unmarked);
  });
});
