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
  /** The text of every element holding text directly (labels), whitespace-trimmed. */
  texts?: string[];
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
        const texts: string[] = [];
        for (const el of doc.querySelectorAll('*')) {
          if (el.tagName === 'style') continue;
          let own = '';
          for (const child of el.childNodes) if (child.nodeType === 3) own += child.textContent;
          if (own.trim() !== '') texts.push(own.trim());
        }
        return { svg, texts };
      } catch (err) {
        return { error: String((err as Error)?.message ?? err) };
      }
    },
    { text, id: `m${counter}` },
  );
}

export interface SvgStateBox {
  id: string;
  type: string;
  classes: string;
  x: number;
  y: number;
  width: number;
  height: number;
  /** Rendered width of the state's name, measured by the browser. */
  nameWidth: number;
}

export interface SvgInspection {
  /** The XML parser's complaint, when the document is not well-formed. */
  parseError?: string;
  texts: string[];
  states: SvgStateBox[];
  /** `class` of every transition group. */
  edges: { classes: string; event: string | null; texts: string[] }[];
}

/**
 * Parses SVG text with the browser's strict XML parser, then puts it in the
 * page so the browser measures the real text and shapes.
 */
export async function inspectSvg(page: Page, svg: string): Promise<SvgInspection> {
  return page.evaluate((svg) => {
    const g = globalThis as any;
    const doc = new g.DOMParser().parseFromString(svg, 'image/svg+xml');
    const error = doc.querySelector('parsererror');
    if (error) return { parseError: String(error.textContent), texts: [], states: [], edges: [] };
    const out = g.document.getElementById('out');
    out.innerHTML = '';
    out.appendChild(g.document.importNode(doc.documentElement, true));
    const root = out.querySelector('svg');
    const texts = [...root.querySelectorAll('text')].map((t: any) => String(t.textContent));
    const states = [...root.querySelectorAll('g[data-state-id]')].map((el: any) => {
      const shape = el.querySelector(':scope > rect, :scope > circle');
      const box = shape.getBBox();
      const name = el.querySelector(':scope > text.name');
      return {
        id: el.getAttribute('data-state-id'),
        type: el.getAttribute('data-type'),
        classes: el.getAttribute('class'),
        x: box.x, y: box.y, width: box.width, height: box.height,
        nameWidth: name ? name.getBBox().width : 0,
      };
    });
    const edges = [...root.querySelectorAll('g.tr')].map((el: any) => ({
      classes: String(el.getAttribute('class')),
      event: el.getAttribute('data-event'),
      texts: [...el.querySelectorAll('text')].map((t: any) => String(t.textContent)),
    }));
    return { texts, states, edges };
  }, svg);
}
