// Helpers the editor's end-to-end steps share: locating, waiting, dragging like a person.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

/** The command line every e2e script takes (`--url`, `--artifacts`, `--chromium`, and the
 * script's own `extra` options): the options, with the artifacts folder made and `base` the
 * server's URL ending in "/". */
export function e2eOptions(extra = {}) {
  const { values: options } = parseArgs({
    options: {
      url: { type: "string" },
      artifacts: { type: "string", default: "e2e-artifacts" },
      chromium: { type: "string", default: "/usr/bin/chromium" },
      ...extra,
    },
  });
  if (!options.url) throw new Error("--url is required");
  mkdirSync(options.artifacts, { recursive: true });
  return { options, base: options.url.endsWith("/") ? options.url : `${options.url}/` };
}

/** Debian's Chromium, headless with the flags the tests use, and one 1600×1000 page whose
 * page errors and console errors are collected in `pageErrors`. */
export async function openBrowser(executablePath) {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") pageErrors.push(`console: ${message.text()}`);
  });
  return { browser, page, pageErrors };
}

/** Runs `[name, async fn]` steps in order, one line each; the first failure prints its stack,
 * saves `failureShot`, and the process exits 1 (0 when every step passed). */
export async function runSteps(steps, { browser, shot, failureShot }) {
  let failed = false;
  for (const [name, run] of steps) {
    const started = Date.now();
    try {
      await run();
      console.log(`ok    ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    } catch (error) {
      failed = true;
      console.log(`FAIL  ${name}\n${error instanceof Error ? error.stack : error}`);
      await shot(failureShot).catch(() => {});
      break;
    }
  }
  await browser.close();
  process.exit(failed ? 1 : 0);
}

/** Everything a step needs, bound to one page and one artifacts folder. */
export function pageHelpers(page, artifacts) {
  const byId = (testId) => page.getByTestId(testId);
  const shot = (name) => page.screenshot({ path: join(artifacts, name) });

  function check(condition, message) {
    if (!condition) throw new Error(message);
  }

  /** Waits until `probe()` returns a truthy value (polling), or fails with `message`. */
  async function until(probe, message, timeout = 10_000) {
    const end = Date.now() + timeout;
    for (;;) {
      const value = await probe();
      if (value) return value;
      if (Date.now() > end) throw new Error(`timed out: ${message}`);
      await page.waitForTimeout(100);
    }
  }

  const nodeCount = () => page.locator(".react-flow__node").count();
  const edgeCount = () => page.locator(".react-flow__edge").count();
  const idsOfType = (type) =>
    page.$$eval(`[data-node-type="${type}"]`, (elements) =>
      elements.map((element) => element.dataset.testid.replace(/^node-/, "")),
    );

  /** The document the editor keeps in localStorage (written shortly after each change). */
  async function storedDocument() {
    await page.waitForTimeout(500);
    return page.evaluate(() => JSON.parse(localStorage.getItem("graphflow.editor.document")));
  }

  async function center(locator) {
    const box = await locator.boundingBox();
    check(box, "element is not visible");
    return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
  }

  /** Drags with the mouse, in small steps, as a person would. */
  async function drag(from, to) {
    const start = await center(from);
    const end = typeof to.x === "number" ? to : await center(to);
    await page.mouse.move(start.x, start.y);
    await page.mouse.down();
    await page.mouse.move(start.x + 5, start.y + 5, { steps: 2 });
    await page.mouse.move(end.x, end.y, { steps: 12 });
    await page.mouse.up();
  }

  async function addFromPalette(search, nodeType) {
    const before = await idsOfType(nodeType);
    await byId("palette-search").fill(search);
    await byId(`palette-item-${nodeType}`).click();
    const after = await until(async () => {
      const ids = await idsOfType(nodeType);
      return ids.length > before.length ? ids : null;
    }, `a ${nodeType} node appears`);
    return after.find((id) => !before.includes(id));
  }

  /** Moves a node by dragging its header to a point of the canvas. */
  async function moveNode(id, x, y) {
    const canvas = await byId("canvas").boundingBox();
    await drag(byId(`node-${id}`).locator(".gf-node-title"), { x: canvas.x + x, y: canvas.y + y });
  }

  async function queueAndWait(nodeId, timeout) {
    await page.keyboard.press("Control+Enter");
    const image = byId(`images-${nodeId}`).locator("img").first();
    await image.waitFor({ timeout });
    await until(
      () => image.evaluate((element) => element.complete && element.naturalWidth > 0),
      `the image of ${nodeId} loads`,
    );
  }


  return {
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
  };
}
