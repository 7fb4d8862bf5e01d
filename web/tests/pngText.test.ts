import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { PngError, pngTextChunks, workflowFromPng } from "../src/lib/pngText";

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(kind: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, Buffer.from(kind, "latin1"), body, Buffer.alloc(4)]);
}

const png = (...chunks: Buffer[]) =>
  new Uint8Array(Buffer.concat([SIGNATURE, ...chunks, chunk("IEND", Buffer.alloc(0))]));
const nul = Buffer.from([0]);

describe("pngTextChunks", () => {
  it("reads tEXt, zTXt and compressed and plain iTXt entries", async () => {
    const bytes = png(
      chunk("IHDR", Buffer.alloc(13)),
      chunk("tEXt", Buffer.concat([Buffer.from("plain"), nul, Buffer.from("café", "latin1")])),
      chunk("zTXt", Buffer.concat([Buffer.from("packed"), nul, nul, deflateSync("zipped")])),
      chunk(
        "iTXt",
        Buffer.concat([Buffer.from("wide"), nul, Buffer.from([1, 0]), nul, nul, deflateSync("ünï")]),
      ),
      chunk(
        "iTXt",
        Buffer.concat([Buffer.from("raw"), nul, Buffer.from([0, 0]), Buffer.from("en"), nul, nul, Buffer.from("→")]),
      ),
    );
    expect(await pngTextChunks(bytes)).toEqual({
      plain: "café",
      packed: "zipped",
      wide: "ünï",
      raw: "→",
    });
  });

  it("refuses files that are not PNG, and truncated chunks", async () => {
    await expect(pngTextChunks(new Uint8Array([1, 2, 3]))).rejects.toThrow(PngError);
    const cut = png(chunk("tEXt", Buffer.from("key\0value"))).slice(0, 20);
    await expect(pngTextChunks(cut)).rejects.toThrow(/truncated/);
  });
});

describe("workflowFromPng", () => {
  it("returns the workflow graphflow embeds, or null without one", async () => {
    const workflow = { format: "graphflow/1", nodes: { a: { type: "core.int" } } };
    const text = Buffer.from(JSON.stringify(workflow));
    const bytes = png(
      chunk("iTXt", Buffer.concat([Buffer.from("graphflow_workflow"), nul, Buffer.from([1, 0]), nul, nul, deflateSync(text)])),
    );
    expect(await workflowFromPng(bytes)).toEqual(workflow);
    expect(await workflowFromPng(png())).toBeNull();
  });
});
