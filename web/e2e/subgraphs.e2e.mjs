// End-to-end test of subgraphs in the editor: Debian's Chromium (through playwright-core)
// against a real `graphflow serve`, which tests/web/test_editor_e2e.py starts:
//
//   node e2e/subgraphs.e2e.mjs --url http://127.0.0.1:PORT/ --artifacts DIR [--chromium PATH]
//
// workflows/subgraph_math.json is uploaded and run; two of its nodes are collapsed into a new
// subgraph and it runs the same; its Megapixels subgraph is opened (and the one nested in it),
// edited, closed through the breadcrumb and run with the edit; a problem inside the subgraph
// shows on the inner node and on the outer one; the result is saved as e2e-subgraph.
// Each step prints one line; a failure prints the step and the error, saves
// subgraph-failure.png into the artifacts folder and exits 1.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { e2eOptions, openBrowser, pageHelpers, runSteps } from "./pageHelpers.mjs";

const WORKFLOW = fileURLToPath(new URL("../../workflows/subgraph_math.json", import.meta.url));

const { options, base } = e2eOptions();

const { browser, page, pageErrors } = await openBrowser(options.chromium);
const { byId, shot, check, until, nodeCount, edgeCount, storedDocument, addFromPalette } =
  pageHelpers(page, options.artifacts);

const nodeIds = () =>
  page.$$eval(".react-flow__node [data-testid^='node-']", (elements) =>
    elements.map((element) => element.dataset.testid.replace(/^node-/, "")).sort(),
  );
const text = async (testId) => ((await byId(testId).count()) > 0 ? await byId(testId).textContent() : "");

/** Queues with Ctrl+Enter and waits for the job in the history, then for node `show` to
 * report `wanted`. */
async function runShows(show, wanted) {
  const jobs = byId("history-job");
  const before = await jobs.count();
  await byId("canvas").click({ position: { x: 5, y: 5 } });
  await page.keyboard.press("Control+Enter");
  await until(async () => (await jobs.count()) > before, "the job is in the history", 60_000);
  await until(async () => {
    const status = await text(`status-${show}`);
    return /done|cached/.test(status) && (await text(`text-${show}`)).includes(wanted);
  }, `node ${show} shows ${wanted}`, 60_000);
}

/** The canvas alone, notices dismissed, for docs/editor.md. */
async function canvasShot(name) {
  const dismiss = page.locator(".gf-notice button[aria-label='dismiss']");
  while ((await dismiss.count()) > 0) await dismiss.first().click();
  await byId("canvas").screenshot({ path: join(options.artifacts, name) });
}

const steps = [
  [
    "opens the editor and uploads subgraph_math.json: the subgraph node is one node with typed ports",
    async () => {
      await page.goto(base);
      await byId("node-sampler").waitFor({ timeout: 20_000 });
      await until(async () => (await byId("connection").textContent()).includes("live"), "websocket");
      await byId("upload-file").setInputFiles(WORKFLOW);
      await byId("node-size").waitFor({ timeout: 20_000 });
      check((await nodeCount()) === 5, `the 5 nodes of subgraph_math, got ${await nodeCount()}`);
      const size = byId("node-size");
      check((await size.getAttribute("data-node-type")) === "subgraph", "size is a subgraph node");
      check((await size.locator(".gf-node-title").textContent()) === "Megapixels", "titled Megapixels");
      for (const port of ["in-width", "in-height", "out-megapixels", "out-pixels"]) {
        await byId(`handle-size-${port}`).waitFor({ timeout: 5_000 });
      }
      check(
        (await byId("handle-size-in-width").getAttribute("title")) === "width: INT",
        "the width port is typed INT",
      );
      await until(async () => (await edgeCount()) === 4, "the 4 links are drawn");
    },
  ],
  [
    "runs the workflow as uploaded",
    async () => {
      await runShows("show_mp", "2.07");
      check((await text("text-show_px")).includes("2073600"), "the pixel count is shown");
      await until(
        async () => /done|cached/.test(await text("status-size")),
        "the subgraph node shows the state of its inner nodes",
      );
    },
  ],
  [
    "collapses the width and height nodes into a new subgraph (Collapse button) that runs the same",
    async () => {
      await byId("node-width").locator(".gf-node-title").click();
      await byId("node-height").locator(".gf-node-title").click({ modifiers: ["Shift"] });
      await byId("collapse-button").click();
      await byId("node-subgraph").waitFor({ timeout: 5_000 });
      const ids = await nodeIds();
      check(JSON.stringify(ids) === '["show_mp","show_px","size","subgraph"]', `nodes now ${ids}`);
      await until(async () => (await edgeCount()) === 4, "the subgraph's two outputs feed size");
      // two "int" outputs: each is named after the node it comes from
      for (const port of ["out-width", "out-height"]) await byId(`handle-subgraph-${port}`).waitFor();
      const stored = await storedDocument();
      check(stored.subgraphs.subgraph.outputs.length === 2, "the new subgraph has two outputs");
      check(
        JSON.stringify(Object.keys(stored.subgraphs.subgraph.nodes)) === '["width","height"]',
        "the collapsed nodes are inside the new subgraph",
      );
      await runShows("show_mp", "2.07");
      await byId("workflow-name").fill("e2e-subgraph");
      await canvasShot("subgraph-01-collapsed.png");
    },
  ],
  [
    "double-clicking a subgraph node opens it, nested ones too, with a breadcrumb back",
    async () => {
      await byId("node-size").locator(".gf-output").first().dblclick();
      await byId("breadcrumb").waitFor({ timeout: 5_000 });
      const ids = await nodeIds();
      check(
        JSON.stringify(ids) === '["$in",":out","area","rounded","scaled","whole"]',
        `the inner graph of Megapixels, got ${ids}`,
      );
      check((await text("breadcrumb-current")) === "Megapixels", "the breadcrumb names the subgraph");
      await until(async () => (await edgeCount()) === 7, "the 7 inner links are drawn");
      await byId("open-subgraph-area").click();
      await byId("node-product").waitFor({ timeout: 5_000 });
      check((await byId("breadcrumb").textContent()).includes("Megapixels › Area"), "two deep");
      await page.waitForTimeout(300); // the view is fitted to the inner graph
      await canvasShot("subgraph-02-nested.png");
      await byId("breadcrumb-1").click();
      await byId("node-rounded").waitFor({ timeout: 5_000 });
      await byId("input-rounded-b").fill("10");
      await byId("canvas").click({ position: { x: 5, y: 5 } });
    },
  ],
  [
    "going back writes the edit into the definition, and the run uses it",
    async () => {
      await byId("breadcrumb-0").click();
      await byId("node-size").waitFor({ timeout: 5_000 });
      check((await byId("breadcrumb").count()) === 0, "no breadcrumb on the workflow itself");
      const stored = await storedDocument();
      const b = stored.subgraphs.megapixels.nodes.rounded.inputs.b;
      check(b === 10, `the definition holds the edited value, got ${b}`);
      await runShows("show_mp", "20.7");
    },
  ],
  [
    "a problem inside a subgraph shows on the inner node, and on the subgraph node outside",
    async () => {
      await byId("open-subgraph-size").click();
      await byId("node-rounded").waitFor({ timeout: 5_000 });
      const show = await addFromPalette("show value", "core.show");
      await page.keyboard.press("Control+Enter");
      await byId(`input-error-${show}-value`).waitFor({ timeout: 20_000 });
      await byId("breadcrumb-0").click();
      const outer = byId("node-error-size");
      await outer.waitFor({ timeout: 5_000 });
      const message = await outer.first().textContent();
      check(message.includes(`in ${show}, input value`), `the outer node names the inner one: ${message}`);
      await byId("open-subgraph-size").click();
      await byId(`node-${show}`).locator(".gf-node-title").click();
      await page.keyboard.press("Delete");
      await until(async () => (await byId(`node-${show}`).count()) === 0, "the inner node is deleted");
      await byId("breadcrumb-0").click();
      await runShows("show_mp", "20.7");
    },
  ],
  [
    "saves the workflow with its subgraphs on the server",
    async () => {
      await byId("save-button").click();
      await byId("notice-info").filter({ hasText: "Saved e2e-subgraph" }).waitFor({ timeout: 10_000 });
      await shot("subgraph-03-saved.png");
    },
  ],
  [
    "the browser reported no errors",
    async () => {
      // the refused queue (validation_failed, 400) is logged by Chromium as a console error
      const real = pageErrors.filter((line) => !line.includes("status of 400"));
      check(real.length === 0, `page errors:\n${real.join("\n")}`);
    },
  ],
];

await runSteps(steps, { browser, shot, failureShot: "subgraph-failure.png" });
