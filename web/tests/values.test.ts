import { describe, expect, it } from "vitest";
import type { InputSpec } from "../src/api/catalog";
import { initialValues, parseNumber, randomSeed, widgetKind } from "../src/graph/values";
import { catalog } from "./fixtures";

const spec = (id: string) => {
  const found = catalog.nodes[id];
  if (!found) throw new Error(id);
  return found;
};
const input = (id: string, name: string): InputSpec => {
  const found = spec(id).inputs.find((item) => item.name === name);
  if (!found) throw new Error(name);
  return found;
};
const kind = (id: string, name: string) => widgetKind(catalog, spec(id), input(id, name));

describe("widgetKind", () => {
  it("gives each input a fitting widget", () => {
    expect(kind("image.example_photo", "photo")).toBe("choice");
    expect(kind("image.example_photo", "size")).toBe("slider");
    expect(kind("diffusion.sampler", "seed")).toBe("seed");
    expect(kind("diffusion.sampler", "steps")).toBe("slider");
    expect(kind("diffusion.sampler", "cfg")).toBe("slider");
    expect(kind("diffusion.sampler", "prompt")).toBe("multiline");
    expect(kind("diffusion.sampler", "karras")).toBe("boolean");
    expect(kind("core.show", "label")).toBe("text");
    expect(kind("core.int", "value")).toBe("number");
  });
  it("offers upload for the file input of a load-image node", () => {
    expect(kind("image.load", "image")).toBe("image");
  });
  it("gives linked-only types no widget", () => {
    expect(kind("diffusion.sampler", "latent")).toBe("none");
    expect(kind("image.preview", "images")).toBe("none");
  });
});

describe("initialValues", () => {
  it("starts from defaults and leaves link-only and required ANY inputs unset", () => {
    expect(initialValues(catalog, spec("diffusion.sampler"))).toEqual({
      seed: 0,
      steps: 20,
      cfg: 7.5,
      prompt: "",
      karras: false,
    });
    expect(initialValues(catalog, spec("core.show"))).toEqual({ label: "" });
  });
});

describe("parseNumber", () => {
  it("clamps to the input's range and rounds INT input text", () => {
    const steps = input("diffusion.sampler", "steps");
    expect(parseNumber(steps, "5000")).toBe(1000);
    expect(parseNumber(steps, "0")).toBe(1);
    expect(parseNumber(steps, "12.7")).toBe(12);
    expect(parseNumber(input("diffusion.sampler", "cfg"), "4.25")).toBe(4.25);
    expect(parseNumber(steps, "abc")).toBeUndefined();
  });
});

describe("randomSeed", () => {
  it("stays within the seed range and a JS number's exact integers", () => {
    const seed = input("diffusion.sampler", "seed");
    expect(randomSeed(seed, () => 0)).toBe(0);
    const high = randomSeed(seed, () => 0.999999);
    expect(Number.isSafeInteger(high)).toBe(true);
    expect(high).toBeGreaterThan(0);
  });
});
