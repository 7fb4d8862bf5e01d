import { describe, expect, it } from "vitest";
import { parseCatalog, type RawCatalog } from "../src/api/catalog";
import { choiceText } from "../src/graph/values";

const STRING = { name: "STRING", description: "", color: "#93c47d", literal: true, accepts: [] };

function loaderInput(extra: Record<string, unknown>) {
  const raw = {
    types: [STRING],
    nodes: {
      "diffusion.load_checkpoint": {
        id: "diffusion.load_checkpoint",
        inputs: [
          {
            name: "checkpoint",
            type: "STRING",
            required: true,
            lazy: false,
            choices: ["sd15.safetensors", "graphflow-tiny", "old.ckpt"],
            ...extra,
          },
        ],
        outputs: [],
      },
    },
  } as unknown as RawCatalog;
  const input = parseCatalog(raw).nodes["diffusion.load_checkpoint"]?.inputs[0];
  if (!input) throw new Error("no input");
  return input;
}

describe("choice labels", () => {
  it("shows each value with the label the server gave it", () => {
    const input = loaderInput({
      choice_labels: { "sd15.safetensors": "SD 1.x", "graphflow-tiny": "graphflow-tiny (embedded)" },
    });
    expect(input.choices?.map((choice) => choiceText(input, choice))).toEqual([
      "sd15.safetensors — SD 1.x",
      "graphflow-tiny — graphflow-tiny (embedded)",
      "old.ckpt",
    ]);
  });

  it("keeps the value itself as the choice (labels are only shown)", () => {
    const input = loaderInput({ choice_labels: { "sd15.safetensors": "SD 1.x" } });
    expect(input.choices?.[0]).toBe("sd15.safetensors");
  });

  it("shows plain values when the server sends no labels", () => {
    const input = loaderInput({});
    expect(input.choice_labels).toBeUndefined();
    expect(choiceText(input, "old.ckpt")).toBe("old.ckpt");
  });

  it("ignores labels that are not text", () => {
    const input = loaderInput({ choice_labels: { "old.ckpt": 3, "sd15.safetensors": "" } });
    expect(input.choice_labels).toBeUndefined();
    const listed = loaderInput({ choice_labels: ["SD 1.x"] });
    expect(listed.choice_labels).toBeUndefined();
  });

  it("finds labels of non-text values by their text", () => {
    const input = loaderInput({ choices: [1, 2], choice_labels: { "1": "one" } });
    expect(choiceText(input, 1)).toBe("1 — one");
    expect(choiceText(input, 2)).toBe("2");
  });
});
