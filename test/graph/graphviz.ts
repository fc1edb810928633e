/**
 * Runs Graphviz's real `dot` on DOT text. .ci/run installs Graphviz, so a
 * missing binary fails the test with a message instead of skipping it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const dotPath = '/usr/bin/dot';

export interface DotResult {
  code: number | null;
  svg: string;
  stderr: string;
}

/** `dot -Tsvg` on the given text. */
export function runDot(text: string): DotResult {
  if (!existsSync(dotPath)) {
    throw new Error(
      `Graphviz is missing at ${dotPath}: install Debian's graphviz package (.ci/run does) to run the DOT export tests.`,
    );
  }
  const result = spawnSync(dotPath, ['-Tsvg'], { input: text, encoding: 'utf8', timeout: 20_000 });
  if (result.error) throw result.error;
  return { code: result.status, svg: result.stdout, stderr: result.stderr };
}

/** The text of every `<text>` element in Graphviz's SVG, entities decoded. */
export function svgTexts(svg: string): string[] {
  const texts: string[] = [];
  for (const match of svg.matchAll(/<text\b[^>]*>([\s\S]*?)<\/text>/g)) {
    texts.push(decodeEntities(match[1]!.replace(/<[^>]+>/g, '')));
  }
  return texts;
}

export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos|nbsp);/gi, (_, code: string) => {
    if (code[0] === '#') {
      const n = code[1] === 'x' || code[1] === 'X' ? parseInt(code.slice(2), 16) : Number(code.slice(1));
      return String.fromCodePoint(n);
    }
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' }[code.toLowerCase()]!;
  });
}

/**
 * Graphviz's SVG groups each node as `<g class="node"><title>name</title>
 * ... fill="..."`: the fill of the first shape of the named node.
 */
export function nodeFill(svg: string, name: string): string | undefined {
  const groups = svg.split(/<g id="[^"]*" class="node">/).slice(1);
  for (const group of groups) {
    const title = /<title>([\s\S]*?)<\/title>/.exec(group)?.[1];
    if (title !== undefined && decodeEntities(title) === name) {
      return /fill="([^"]*)"/.exec(group)?.[1];
    }
  }
  return undefined;
}
