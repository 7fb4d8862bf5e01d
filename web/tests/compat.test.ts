import { describe, expect, it } from "vitest";
import { groupByCategory } from "../src/api/catalog";
import { canConnect, portTypes } from "../src/graph/compat";
import { catalog } from "./fixtures";

describe("canConnect follows the server's one rule", () => {
  it("links equal types", () => {
    expect(canConnect(catalog.types, "IMAGE", "IMAGE")).toBe(true);
  });
  it("links anything to and from ANY", () => {
    expect(canConnect(catalog.types, "LATENT", "ANY")).toBe(true);
    expect(canConnect(catalog.types, "ANY", "IMAGE")).toBe(true);
  });
  it("lets an input take the types it declares in accepts (FLOAT accepts INT)", () => {
    expect(canConnect(catalog.types, "INT", "FLOAT")).toBe(true);
  });
  it("is not symmetric: INT does not accept FLOAT", () => {
    expect(canConnect(catalog.types, "FLOAT", "INT")).toBe(false);
  });
  it("refuses unrelated types", () => {
    expect(canConnect(catalog.types, "INT", "IMAGE")).toBe(false);
    expect(canConnect(catalog.types, "IMAGE", "LATENT")).toBe(false);
  });
  it("refuses an unknown input type unless the names are equal", () => {
    expect(canConnect(catalog.types, "INT", "MYSTERY")).toBe(false);
    expect(canConnect(catalog.types, "MYSTERY", "MYSTERY")).toBe(true);
  });
});

describe("portTypes", () => {
  it("finds the types of an output and an input by node spec and port name", () => {
    expect(portTypes(catalog.nodes["core.int"], "int", catalog.nodes["core.add"], "a")).toEqual({
      outputType: "INT",
      inputType: "FLOAT",
    });
  });
  it("leaves unknown ports undefined", () => {
    expect(portTypes(catalog.nodes["core.int"], "nope", undefined, "a")).toEqual({
      outputType: undefined,
      inputType: undefined,
    });
  });
});

describe("groupByCategory", () => {
  it("groups the palette by category, sorted", () => {
    const groups = groupByCategory(catalog);
    expect(groups.map(([category]) => category)).toEqual([
      "core/constants",
      "core/display",
      "core/math",
      "diffusion/sampling",
      "image/io",
    ]);
    expect(groups.at(-1)?.[1].map((spec) => spec.display_name)).toEqual([
      "Example Photo",
      "Load Image",
      "Preview Image",
    ]);
  });
  it("searches names, ids and help text with every word", () => {
    expect(groupByCategory(catalog, "photo").flatMap(([, specs]) => specs.map((s) => s.id))).toEqual([
      "image.example_photo",
    ]);
    expect(groupByCategory(catalog, "image show")).toEqual([
      ["image/io", [catalog.nodes["image.preview"]]],
    ]);
    expect(groupByCategory(catalog, "zebra")).toEqual([]);
  });
});
