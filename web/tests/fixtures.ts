// A small node catalog in the shape GET /api/nodes answers (types as graphflow/types.py has them).
import { parseCatalog, type RawCatalog } from "../src/api/catalog";

const literal = (name: string, color: string, accepts: string[] = []) => ({
  name,
  description: name,
  color,
  literal: true,
  accepts,
});
const opaque = (name: string, color: string) => ({
  name,
  description: name,
  color,
  literal: false,
  accepts: [],
});

export const rawCatalog = {
  types: [
    literal("INT", "#6fa8dc"),
    literal("FLOAT", "#76a5af", ["INT"]),
    literal("STRING", "#93c47d"),
    literal("BOOLEAN", "#e06666"),
    opaque("IMAGE", "#64b5f6"),
    opaque("LATENT", "#ff80ab"),
    literal("ANY", "#cccccc"),
  ],
  nodes: {
    "core.int": {
      id: "core.int",
      display_name: "Integer",
      category: "core/constants",
      description: "A whole number.",
      inputs: [{ name: "value", type: "INT", required: false, lazy: false, default: 0 }],
      outputs: [{ name: "int", type: "INT" }],
      output_node: false,
    },
    "core.add": {
      id: "core.add",
      display_name: "Add",
      category: "core/math",
      description: "a + b",
      inputs: [
        { name: "a", type: "FLOAT", required: false, lazy: false, default: 0.0 },
        { name: "b", type: "FLOAT", required: false, lazy: false, default: 0.0 },
      ],
      outputs: [{ name: "float", type: "FLOAT" }],
      output_node: false,
    },
    "core.show": {
      id: "core.show",
      display_name: "Show Value",
      category: "core/display",
      description: "Show a value.",
      inputs: [
        { name: "value", type: "ANY", required: true, lazy: false },
        { name: "label", type: "STRING", required: false, lazy: false, default: "" },
      ],
      outputs: [],
      output_node: true,
    },
    "image.example_photo": {
      id: "image.example_photo",
      display_name: "Example Photo",
      category: "image/io",
      description: "A bundled photo.",
      inputs: [
        {
          name: "photo",
          type: "STRING",
          required: false,
          lazy: false,
          default: "astronaut",
          choices: ["astronaut", "coffee"],
        },
        { name: "size", type: "INT", required: false, lazy: false, default: 0, min: 0, max: 4096, step: 8 },
      ],
      outputs: [{ name: "image", type: "IMAGE" }],
      output_node: false,
    },
    "image.load": {
      id: "image.load",
      display_name: "Load Image",
      category: "image/io",
      description: "Load a file of the input folder.",
      inputs: [{ name: "image", type: "STRING", required: true, lazy: false, choices: [] }],
      outputs: [
        { name: "image", type: "IMAGE" },
        { name: "mask", type: "IMAGE" },
      ],
      output_node: false,
    },
    "image.preview": {
      id: "image.preview",
      display_name: "Preview Image",
      category: "image/io",
      description: "Show images.",
      inputs: [{ name: "images", type: "IMAGE", required: true, lazy: false }],
      outputs: [],
      output_node: true,
    },
    "diffusion.sampler": {
      id: "diffusion.sampler",
      display_name: "Sampler",
      category: "diffusion/sampling",
      description: "Denoise latents.",
      inputs: [
        { name: "latent", type: "LATENT", required: true, lazy: false },
        { name: "seed", type: "INT", required: false, lazy: false, default: 0, min: 0, max: 9223372036854775807 },
        { name: "steps", type: "INT", required: false, lazy: false, default: 20, min: 1, max: 1000 },
        { name: "cfg", type: "FLOAT", required: false, lazy: false, default: 7.5, min: 0, max: 30, step: 0.1 },
        { name: "prompt", type: "STRING", required: false, lazy: false, default: "", multiline: true },
        { name: "karras", type: "BOOLEAN", required: false, lazy: false, default: false },
      ],
      outputs: [{ name: "latent", type: "LATENT" }],
      output_node: false,
    },
  },
} as unknown as RawCatalog;

export const catalog = parseCatalog(rawCatalog);
