// End-to-end test of opening ComfyUI workflows in the editor: Debian's Chromium (through
// playwright-core) against a real `graphflow serve`, which tests/web/test_editor_e2e.py starts:
//
//   node e2e/comfy-import.e2e.mjs --url http://127.0.0.1:PORT/ --artifacts DIR [--chromium PATH]
//
// A ComfyUI UI-format workflow is uploaded through the toolbar's file chooser (the server
// imports it), its nodes are checked on the canvas and it is queued; then one naming a class
// type graphflow does not have is dropped on the canvas and the problems panel must name it.
// Each step prints one line; a failure prints the step and the error, saves
// comfy-failure.png into the artifacts folder and exits 1.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { e2eOptions, openBrowser, pageHelpers, runSteps } from "./pageHelpers.mjs";

const UI_WORKFLOW = fileURLToPath(
  new URL("../../workflows/comfy/txt2img_ui.json", import.meta.url),
);

const { options, base } = e2eOptions();

const { browser, page, pageErrors } = await openBrowser(options.chromium);

const { byId, shot, check, until, nodeCount, edgeCount, queueAndWait } = pageHelpers(
  page,
  options.artifacts,
);
const comfyUi = JSON.parse(readFileSync(UI_WORKFLOW, "utf8"));
// The id of the first node of each ComfyUI class type (the positive prompt for CLIPTextEncode).
const ids = Object.fromEntries(comfyUi.nodes.toReversed().map((node) => [node.type, String(node.id)]));
const graphNodes = comfyUi.nodes.filter((node) => node.type !== "Note").length;

/** Drops `text` on the canvas as the file `name`, as the browser does for a dragged file. */
async function dropFile(name, text) {
  await page.evaluate(
    ({ name, text }) => {
      const data = new DataTransfer();
      data.items.add(new File([text], name, { type: "application/json" }));
      const canvas = document.querySelector('[data-testid="canvas"]');
      for (const type of ["dragover", "drop"]) {
        canvas.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
      }
    },
    { name, text },
  );
}

const steps = [
  [
    "opens the editor",
    async () => {
      await page.goto(base);
      await byId("node-sampler").waitFor({ timeout: 20_000 });
      await until(async () => (await byId("connection").textContent()).includes("live"), "websocket");
      await byId("new-button").click();
      await until(async () => (await nodeCount()) === 0, "the canvas is empty after New");
    },
  ],
  [
    "uploading a ComfyUI UI workflow imports it, with a notice and its nodes on the canvas",
    async () => {
      await byId("upload-file").setInputFiles(UI_WORKFLOW);
      const notice = byId("notice-info").filter({ hasText: "Imported ComfyUI UI workflow" });
      await notice.waitFor({ timeout: 20_000 });
      const text = await notice.textContent();
      check(
        text.includes(`(${comfyUi.nodes.length} nodes → ${graphNodes}) from txt2img_ui.json`),
        `the notice says what was read, got "${text}"`,
      );
      await until(async () => (await nodeCount()) === graphNodes, `the ${graphNodes} nodes are drawn`);
      await until(
        async () => (await edgeCount()) === comfyUi.links.length,
        `the ${comfyUi.links.length} links are drawn`,
      );
      const sampler = byId(`node-${ids.KSampler}`);
      check(
        (await sampler.getAttribute("data-node-type")) === "comfy.k_sampler",
        "the KSampler became a comfy.k_sampler node",
      );
      check(
        (await sampler.locator(".gf-node-title").textContent()) === "KSampler",
        "the sampler node is titled KSampler",
      );
      const [, steps] = comfyUi.nodes.find((node) => node.type === "KSampler").widgets_values.slice(1);
      check(
        (await byId(`input-${ids.KSampler}-steps`).inputValue()) === String(steps),
        "the sampler keeps the workflow's steps",
      );
      check(
        (await byId(`input-${ids.CLIPTextEncode}-text`).inputValue()) === "a red sneaker",
        "the prompt keeps the workflow's text",
      );
      check(
        (await byId("workflow-name").inputValue()) === "txt2img_ui",
        "the document is named after the file",
      );
      check((await byId("general-problems").count()) === 0, "no problems are listed");
      await shot("comfy-01-imported.png");
    },
  ],
  [
    "queues the imported workflow with Ctrl+Enter and shows its images",
    async () => {
      const save = ids.SaveImage;
      await byId(`input-${ids.KSampler}-steps`).fill("4");
      await byId("canvas").click({ position: { x: 5, y: 5 } });
      await queueAndWait(save, 180_000);
      const batch = comfyUi.nodes.find((node) => node.type === "EmptyLatentImage").widgets_values;
      const images = byId(`images-${save}`).locator("img");
      await until(async () => (await images.count()) === batch[2], `the ${batch[2]} images of the batch`);
      const size = await images.first().evaluate((element) => [element.naturalWidth, element.naturalHeight]);
      check(size[0] === batch[0] && size[1] === batch[1], `a ${batch[0]}×${batch[1]} image, got ${size}`);
      check((await byId(`status-${save}`).textContent()).includes("done"), "the save node is done");
      await shot("comfy-02-run-done.png");
    },
  ],
  [
    "dropping a ComfyUI workflow with an unknown class type lists it in the problems panel",
    async () => {
      const unknown = structuredClone(comfyUi);
      unknown.nodes.find((node) => node.type === "VAEDecode").type = "FancyUpscalerXL";
      const before = await nodeCount();
      await dropFile("unknown-node.json", JSON.stringify(unknown));
      const panel = byId("general-problems");
      await panel.waitFor({ timeout: 20_000 });
      const text = await panel.textContent();
      check(text.includes("unknown-node.json"), `the panel names the file, got "${text}"`);
      check(
        text.includes(`FancyUpscalerXL (node ${ids.VAEDecode})`),
        `the panel names the unknown class type and its node, got "${text}"`,
      );
      await byId("notice-error").filter({ hasText: "unknown-node.json" }).waitFor({ timeout: 10_000 });
      check((await nodeCount()) === before, "the canvas keeps the workflow that was open");
      const lines = await panel.locator(":scope > div").evaluateAll((rows) =>
        rows.map((row) => row.getBoundingClientRect().top),
      );
      check(lines.length === 2 && lines[1] > lines[0], `one problem per line, got tops ${lines}`);
      await shot("comfy-03-unknown-class.png");
    },
  ],
  [
    "the problems panel closes with its button, and opening a good workflow clears it",
    async () => {
      const panel = byId("general-problems");
      await byId("general-problems-dismiss").click();
      await until(async () => (await panel.count()) === 0, "the dismissed panel is gone");
      const unknown = structuredClone(comfyUi);
      unknown.nodes[0].type = "FancyUpscalerXL";
      await dropFile("unknown-again.json", JSON.stringify(unknown));
      await panel.waitFor({ timeout: 20_000 });
      await dropFile("txt2img_ui.json", JSON.stringify(comfyUi));
      await byId("notice-info").filter({ hasText: "from txt2img_ui.json" }).first().waitFor();
      await until(async () => (await panel.count()) === 0, "the import clears the old problems");
    },
  ],
  [
    "the browser reported no errors",
    async () => {
      // the refused import is a 422 that Chromium logs as a console error
      const real = pageErrors.filter((text) => !text.includes("status of 422"));
      check(real.length === 0, `page errors:\n${real.join("\n")}`);
    },
  ],
];

await runSteps(steps, { browser, shot, failureShot: "comfy-failure.png" });
