/** Where a progress bar writes: a stream, and whether it is a terminal. */
export interface ProgressOutput {
  write(chunk: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressOptions {
  /** The count that means 100%. */
  total: number;
  /** Shown before the bar. */
  label: string;
  /** Default: process.stdout. */
  output?: ProgressOutput;
  /** Least time between two redraws on a terminal. Default 100. */
  redrawEveryMs?: number;
  /** Least time between two lines when not on a terminal. Default 2_000. */
  lineEveryMs?: number;
  /** Time source, for tests. Default Date.now. */
  now?: () => number;
}

export interface Progress {
  /** Reports `done` of `total`, with an optional note after the bar. */
  update(done: number, note?: string): void;
  /** Draws the final count and moves to a new line. Idempotent. */
  finish(done: number, note?: string): void;
}

const barWidthMax = 30;

/**
 * A one-line progress bar. On a terminal it redraws in place (throttled so a
 * hot loop can call `update` freely); piped into a file or CI log it prints a
 * plain line every few seconds instead, because carriage returns would turn
 * the log into one unreadable line.
 *
 * @example
 * ```ts
 * const progress = createProgress({ total: 3_000, label: 'orders' });
 * for (let i = 1; i <= 3_000; i++) progress.update(i, `${i * 3} events`);
 * progress.finish(3_000);
 * ```
 */
export function createProgress(options: ProgressOptions): Progress {
  const output = options.output ?? process.stdout;
  const now = options.now ?? Date.now;
  const tty = output.isTTY === true;
  const intervalMs = tty
    ? (options.redrawEveryMs ?? 100)
    : (options.lineEveryMs ?? 2_000);
  const total = Math.max(1, options.total);
  let lastDrawAt = -Infinity;
  let finished = false;

  const render = (done: number, note: string | undefined): string => {
    const ratio = Math.min(1, Math.max(0, done / total));
    const percent = `${Math.floor(ratio * 100)}%`.padStart(4);
    const count = `${done}/${options.total}`;
    const tail = note ? `  ${note}` : '';
    if (!tty) return `${options.label} ${percent} ${count}${tail}`;
    const fixed = options.label.length + percent.length + count.length + 5;
    const columns = output.columns ?? 80;
    const width = Math.max(
      10,
      Math.min(barWidthMax, columns - fixed - tail.length),
    );
    const filled = Math.round(ratio * width);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const line = `${options.label} ${bar} ${percent} ${count}${tail}`;
    // Never wrap: a wrapped line cannot be redrawn with a carriage return.
    return line.length > columns - 1 ? line.slice(0, columns - 1) : line;
  };

  const draw = (line: string): void => {
    // `\x1b[K` clears what a longer previous line left behind.
    output.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  };

  return {
    update(done, note) {
      if (finished) return;
      const t = now();
      if (t - lastDrawAt < intervalMs) return;
      lastDrawAt = t;
      draw(render(done, note));
    },
    finish(done, note) {
      if (finished) return;
      finished = true;
      draw(render(done, note));
      if (tty) output.write('\n');
    },
  };
}
