// Text chunks of a PNG (tEXt, zTXt, iTXt), read in the browser: graphflow's saved images carry
// their workflow there (graphflow/pngmeta.py writes it under WORKFLOW_KEY).
export const WORKFLOW_KEY = "graphflow_workflow";

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export class PngError extends Error {}

export function isPng(bytes: Uint8Array): boolean {
  return SIGNATURE.every((value, index) => bytes[index] === value);
}

async function inflate(data: Uint8Array): Promise<Uint8Array> {
  // PNG compresses text with zlib, which DecompressionStream calls "deflate".
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function splitAtNul(data: Uint8Array, from = 0): [Uint8Array, Uint8Array] {
  const nul = data.indexOf(0, from);
  if (nul < 0) throw new PngError("damaged text chunk (no keyword end)");
  return [data.subarray(from, nul), data.subarray(nul + 1)];
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** All text entries of a PNG (later duplicates win). */
export async function pngTextChunks(bytes: Uint8Array): Promise<Record<string, string>> {
  if (!isPng(bytes)) throw new PngError("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const texts: Record<string, string> = {};
  let offset = SIGNATURE.length;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset, false);
    const kind = latin1.decode(bytes.subarray(offset + 4, offset + 8));
    const body = bytes.subarray(offset + 8, offset + 8 + length);
    if (body.length !== length) throw new PngError("truncated PNG chunk");
    offset += 12 + length;
    if (kind === "IEND") break;
    if (kind !== "tEXt" && kind !== "zTXt" && kind !== "iTXt") continue;
    const [key, rest] = splitAtNul(body);
    const name = latin1.decode(key);
    if (kind === "tEXt") texts[name] = latin1.decode(rest);
    else if (kind === "zTXt") texts[name] = latin1.decode(await inflate(rest.subarray(1)));
    else {
      const compressed = rest[0] === 1;
      const [, afterLanguage] = splitAtNul(rest, 2);
      const [, text] = splitAtNul(afterLanguage);
      texts[name] = utf8.decode(compressed ? await inflate(text) : text);
    }
  }
  return texts;
}

/** The workflow embedded in a PNG made by graphflow, parsed; null when it has none. */
export async function workflowFromPng(bytes: Uint8Array): Promise<unknown> {
  const text = (await pngTextChunks(bytes))[WORKFLOW_KEY];
  return text === undefined ? null : (JSON.parse(text) as unknown);
}
