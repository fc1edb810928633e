/**
 * One headless Chromium per test file, with Mermaid's browser bundle loaded
 * into a blank page. Tests render Mermaid text and parse SVG in the same
 * page, so they check what a real browser makes of the output.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium, type Browser, type Page } from 'playwright-core';

export const chromiumPath = '/usr/bin/chromium';

const require = createRequire(import.meta.url);

/** Where mermaid's self-contained browser bundle is. */
export const mermaidBundle = require.resolve('mermaid/dist/mermaid.min.js');

export interface BrowserPage {
  page: Page;
  close(): Promise<void>;
}

/**
 * Launches Chromium and opens a page with mermaid loaded. Fails with a clear
 * message when Chromium is missing: .ci/run installs it, so a missing binary
 * is a broken environment, not a reason to skip.
 */
export async function openBrowserPage(): Promise<BrowserPage> {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Chromium is missing at ${chromiumPath}: install Debian's chromium package (.ci/run does) to run the graph export tests.`,
    );
  }
  const browser: Browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><html><body><div id="out"></div></body></html>');
    await page.addScriptTag({ path: mermaidBundle });
    await page.evaluate(() => {
      (globalThis as any).mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
    });
    return { page, close: () => browser.close() };
  } catch (err) {
    await browser.close();
    throw err;
  }
}

export interface MermaidResult {
  svg?: string;
  error?: string;
  /** Text content of the rendered SVG. */
  text?: string;
}

let counter = 0;

/** Renders Mermaid text with `mermaid.render`; returns the SVG or the error message. */
export async function renderMermaid(page: Page, text: string): Promise<MermaidResult> {
  counter += 1;
  return page.evaluate(
    async ({ text, id }) => {
      const mermaid = (globalThis as any).mermaid;
      try {
        const { svg } = await mermaid.render(id, text);
        const doc = new (globalThis as any).DOMParser().parseFromString(svg, 'image/svg+xml');
        return { svg, text: doc.documentElement.textContent ?? '' };
      } catch (err) {
        return { error: String((err as Error)?.message ?? err) };
      }
    },
    { text, id: `m${counter}` },
  );
}
