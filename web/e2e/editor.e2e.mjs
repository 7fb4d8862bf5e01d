// End-to-end test of the editor: Debian's Chromium (through playwright-core) against a real
// `graphflow serve`. tests/web/test_editor_e2e.py starts the server and runs this script:
//
//   node e2e/editor.e2e.mjs --url http://127.0.0.1:PORT/ --artifacts DIR [--chromium PATH]
//
// Each step prints one line; a failure prints the step and the error, saves
// failure.png into the artifacts folder and exits 1.
import { e2eOptions, openBrowser, pageHelpers, runSteps } from "./pageHelpers.mjs";

const { options, base } = e2eOptions({
  "skip-txt2img": { type: "boolean", default: false },
});

const { browser, page, pageErrors } = await openBrowser(options.chromium);

const {
  byId,
  shot,
  check,
  until,
  nodeCount,
  edgeCount,
  idsOfType,
  storedDocument,
  drag,
  addFromPalette,
  moveNode,
  queueAndWait,
} = pageHelpers(page, options.artifacts);
const steps = [
  [
    "opens with the default txt2img workflow",
    async () => {
      await page.goto(base);
      await byId("node-sampler").waitFor({ timeout: 20_000 });
      check((await nodeCount()) === 10, `expected the 10 nodes of txt2img, got ${await nodeCount()}`);
      await until(async () => (await edgeCount()) === 16, "the 16 links of txt2img are drawn");
      await until(async () => (await byId("connection").textContent()).includes("live"), "websocket");
      await shot("01-default-workflow.png");
    },
  ],
  [
    "queues txt2img and shows progress, preview and the image in the output node",
    async () => {
      if (options["skip-txt2img"]) return;
      await byId("input-sampler-steps").fill("4");
      await byId("input-latent-batch_size").fill("1");
      await byId("input-sampler-seed-randomize").check();
      await byId("canvas").click({ position: { x: 5, y: 5 } });
      const progressSeen = byId("progress-sampler").waitFor({ timeout: 120_000 }).then(() => true);
      await queueAndWait("save", 120_000);
      check(await progressSeen, "the sampler showed no progress bar");
      check(
        (await byId("status-save").textContent()).includes("done"),
        "the save node is not marked done",
      );
      check(await byId("preview-sampler").isVisible(), "no live preview in the sampler node");
      const seed = Number(await byId("input-sampler-seed").inputValue());
      check(Number.isInteger(seed) && seed !== 0, `the random seed used is shown, got ${seed}`);
      globalThis.savedImage = await byId("images-save").locator("img").first().getAttribute("src");
      await shot("02-txt2img-done.png");
    },
  ],
  [
    "dropping a graphflow PNG on the canvas opens the workflow inside it",
    async () => {
      if (options["skip-txt2img"]) return;
      await byId("new-button").click();
      await until(async () => (await nodeCount()) === 0, "the canvas is empty after New");
      await page.evaluate(async (src) => {
        const blob = await (await fetch(src)).blob();
        const data = new DataTransfer();
        data.items.add(new File([blob], "made-by-graphflow.png", { type: "image/png" }));
        const canvas = document.querySelector('[data-testid="canvas"]');
        for (const type of ["dragover", "drop"]) {
          canvas.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
        }
      }, globalThis.savedImage);
      await until(async () => (await nodeCount()) === 10, "the PNG's 10 nodes are on the canvas");
      check((await byId("input-sampler-steps").inputValue()) === "4", "with the values that made it");
    },
  ],
  [
    "interrupts a running job, which the queue panel lists",
    async () => {
      if (options["skip-txt2img"]) return;
      await byId("input-sampler-steps").fill("1000");
      await byId("input-sampler-seed-randomize").check();
      await byId("tab-queue").click();
      await byId("canvas").click({ position: { x: 5, y: 5 } });
      await page.keyboard.press("Control+Enter");
      await until(
        async () => ((await byId("status-sampler").textContent().catch(() => "")) ?? "").includes("running"),
        "the sampler runs",
        60_000,
      );
      await byId("queue-running").waitFor({ timeout: 10_000 });
      await byId("interrupt-button").click();
      await byId("notice-info").filter({ hasText: "stopped" }).waitFor({ timeout: 30_000 });
      check(
        (await byId("status-sampler").textContent()).includes("interrupted"),
        "the sampler is marked interrupted",
      );
      await shot("02b-interrupted.png");
      await byId("tab-history").click();
    },
  ],
  [
    "adds nodes from the palette, with help text",
    async () => {
      await byId("new-button").click();
      await until(async () => (await nodeCount()) === 0, "the canvas is empty after New");
      await byId("palette-search").fill("example photo");
      await byId("palette-item-image.example_photo").hover();
      check(
        (await byId("palette-help").textContent()).length > 40,
        "the palette shows the node's docstring",
      );
      const photo = await addFromPalette("example photo", "image.example_photo");
      await moveNode(photo, 250, 150);
      const preview = await addFromPalette("preview", "image.preview");
      await moveNode(preview, 750, 150);
      const number = await addFromPalette("integer", "core.int");
      await moveNode(number, 250, 600);
      Object.assign(globalThis, { photo, preview, number });
      check((await nodeCount()) === 3, "three nodes on the canvas");
    },
  ],
  [
    "connects matching ports and refuses incompatible ones",
    async () => {
      const { photo, preview, number } = globalThis;
      await drag(byId(`handle-${photo}-out-image`), byId(`handle-${preview}-in-images`));
      await until(async () => (await edgeCount()) === 1, "IMAGE → IMAGE is connected");
      await drag(byId(`handle-${number}-out-int`), byId(`handle-${preview}-in-images`));
      await page.waitForTimeout(300);
      check((await edgeCount()) === 1, "INT → IMAGE must be refused");
      const doc = await storedDocument();
      check(
        JSON.stringify(doc.nodes[preview].inputs.images) === JSON.stringify({ link: [photo, "image"] }),
        "the preview's images input is linked to the photo",
      );
    },
  ],
  [
    "sets values with widgets",
    async () => {
      const { photo } = globalThis;
      await byId(`input-${photo}-photo`).selectOption({ label: "coffee" });
      await byId(`input-${photo}-size`).fill("64");
      await byId(`input-${photo}-size`).blur();
      await byId(`node-${photo}`).locator(".gf-node-title").dblclick();
      await byId(`title-input-${photo}`).fill("Coffee cup");
      await byId(`title-input-${photo}`).press("Enter");
      const doc = await storedDocument();
      check(doc.nodes[photo].title === "Coffee cup", "the node is renamed");
      check(doc.nodes[photo].inputs.photo === "coffee", "the dropdown value is kept");
      check(doc.nodes[photo].inputs.size === 64, "the number value is kept");
    },
  ],
  [
    "queues with Ctrl+Enter and shows the image in the output node and the gallery",
    async () => {
      const { preview } = globalThis;
      await byId("canvas").click({ position: { x: 5, y: 5 } });
      await queueAndWait(preview, 60_000);
      const size = await byId(`images-${preview}`)
        .locator("img")
        .first()
        .evaluate((element) => [element.naturalWidth, element.naturalHeight]);
      check(Math.max(...size) === 64, `the preview is the 64 px photo, got ${size}`);
      await byId("gallery").locator("img").first().waitFor({ timeout: 10_000 });
      await shot("03-photo-preview.png");
    },
  ],
  [
    "shows validation errors on the node input",
    async () => {
      const show = await addFromPalette("show value", "core.show");
      await moveNode(show, 750, 600);
      await page.keyboard.press("Control+Enter");
      const error = byId(`input-error-${show}-value`);
      await error.waitFor({ timeout: 10_000 });
      check((await error.textContent()).length > 5, "the problem is described");
      await shot("04-validation-error.png");
      globalThis.show = show;
    },
  ],
  [
    "marks a node that fails at run time, with its error",
    async () => {
      const { show } = globalThis;
      const divide = await addFromPalette("divide", "core.divide");
      await moveNode(divide, 500, 420);
      await byId(`input-${divide}-b`).fill("0");
      await drag(byId(`handle-${divide}-out-float`), byId(`handle-${show}-in-value`));
      await until(
        async () => (await byId(`input-error-${show}-value`).count()) === 0,
        "linking the input clears its problem",
      );
      await byId("canvas").click({ position: { x: 5, y: 5 } });
      await page.keyboard.press("Control+Enter");
      await until(
        async () => ((await byId(`status-${divide}`).textContent().catch(() => "")) ?? "").includes("failed"),
        "the divide node is marked failed",
        30_000,
      );
      check(
        (await byId(`node-${divide}`).textContent()).includes("ZeroDivisionError"),
        "the node shows the exception",
      );
      await byId("notice-error").filter({ hasText: "zero" }).waitFor({ timeout: 10_000 });
      await shot("04b-failed-node.png");
      await byId(`node-${divide}`).locator(".gf-node-title").click();
      await page.keyboard.press("Delete");
      await until(async () => (await nodeCount()) === 4, "the divide node is deleted");
    },
  ],
  [
    "deletes, undoes and redoes",
    async () => {
      const { show } = globalThis;
      await byId(`node-${show}`).locator(".gf-node-title").click();
      await page.keyboard.press("Delete");
      await until(async () => (await nodeCount()) === 3, "Delete removes the selected node");
      await page.keyboard.press("Control+z");
      await until(async () => (await nodeCount()) === 4, "Ctrl+Z brings it back");
      await page.keyboard.press("Control+Shift+z");
      await until(async () => (await nodeCount()) === 3, "Ctrl+Shift+Z removes it again");
    },
  ],
  [
    "copies and pastes a node",
    async () => {
      const { photo } = globalThis;
      await byId(`node-${photo}`).locator(".gf-node-title").click();
      await page.keyboard.press("Control+c");
      await page.keyboard.press("Control+v");
      await until(async () => (await idsOfType("image.example_photo")).length === 2, "a pasted copy");
      await page.keyboard.press("Control+z");
      await until(async () => (await nodeCount()) === 3, "undo removes the paste");
    },
  ],
  [
    "saves to the server, reloads, and opens the saved workflow",
    async () => {
      const { photo, preview } = globalThis;
      await byId("workflow-name").fill("e2e-photo");
      await byId("save-button").click();
      await byId("notice-info").filter({ hasText: "Saved" }).waitFor({ timeout: 10_000 });
      const saved = await page.evaluate(async () => (await fetch("api/workflows/e2e-photo")).json());
      check(saved.format === "graphflow/1", "saved as a graphflow/1 document");
      check(saved.nodes[photo]?.type === "image.example_photo", "the photo node is saved");
      check(Array.isArray(saved.editor?.positions?.[preview]), "positions are in the editor section");

      await page.reload();
      await byId(`node-${preview}`).waitFor({ timeout: 20_000 });
      check((await nodeCount()) === 3, "the reload restores the last editor state");

      await byId("new-button").click();
      await until(async () => (await nodeCount()) === 0, "New empties the canvas");
      await byId("open-button").click();
      await byId("workflow-item-e2e-photo").click();
      await until(async () => (await nodeCount()) === 3, "the saved workflow opens");
      await until(async () => (await edgeCount()) === 1, "with its link"); // drawn once measured
      check(
        (await byId(`input-${photo}-photo`).locator("option:checked").textContent()) === "coffee",
        "and its values",
      );
      await shot("05-reopened.png");
    },
  ],
  [
    "uploads an image into a load-image node",
    async () => {
      const load = await addFromPalette("load image", "image.load");
      const png = await page.evaluate(async () => {
        const canvas = document.createElement("canvas");
        canvas.width = 16;
        canvas.height = 12;
        canvas.getContext("2d").fillRect(0, 0, 8, 8);
        return canvas.toDataURL("image/png");
      });
      await byId(`input-${load}-image-file`).setInputFiles({
        name: "tiny upload.png",
        mimeType: "image/png",
        buffer: Buffer.from(png.split(",")[1], "base64"),
      });
      await until(
        async () =>
          ((await byId(`input-${load}-image`).locator("option:checked").textContent()) ?? "").endsWith(
            ".png",
          ),
        "the uploaded file is chosen",
      );
      await byId(`node-${load}`).locator("img.gf-thumb").waitFor({ timeout: 10_000 });
      await shot("06-upload.png");
    },
  ],
  [
    "the browser reported no errors",
    async () => {
      const real = pageErrors.filter(
        // the refused queue (validation step) is a 400 that Chromium logs as a console error
        (text) => !text.includes("status of 400"),
      );
      check(real.length === 0, `page errors:\n${real.join("\n")}`);
    },
  ],
];

await runSteps(steps, { browser, shot, failureShot: "failure.png" });
