import { AsyncLocalStorage } from 'node:async_hooks';
import type { StepRecord } from './types.js';

/**
 * Step numbering that does not depend on timing. A workflow function is
 * sequential code, so its calls come in the same order on every run; but
 * branches that run at the same time (`ctx.parallel`, the steps of
 * `ctx.dag`) interleave by when their steps complete, which a replay does
 * not reproduce. Each branch therefore gets its own scope, and a call is
 * known by its scope and its position in it (`3:1.0`: the first call of
 * branch 1 of the parallel step 3). Replay matches calls to records per
 * scope; the journal's own order across scopes does not matter.
 *
 * The current scope follows the code through `await` by AsyncLocalStorage,
 * so a branch that uses the outer `ctx` is still numbered in its branch.
 */
export class Scopes {
  private readonly storage = new AsyncLocalStorage<string>();
  /** Scope -> indexes in the step log of its recorded calls, in order. */
  private readonly recorded = new Map<string, number[]>();
  /** Scope -> calls taken so far. */
  private readonly taken = new Map<string, number>();
  private unreplayed = 0;

  constructor(steps: readonly StepRecord[]) {
    steps.forEach((rec, i) => {
      const scope = rec.scope ?? '';
      const list = this.recorded.get(scope);
      if (list === undefined) this.recorded.set(scope, [i]);
      else list.push(i);
    });
    this.unreplayed = steps.length;
  }

  /** The scope of the code running now ('' for the function itself). */
  current(): string {
    return this.storage.getStore() ?? '';
  }

  /** Runs `fn` (and everything it awaits) in `scope`. */
  run<T>(scope: string, fn: () => T): T {
    return this.storage.run(scope, fn);
  }

  /**
   * Takes the next call of the current scope: its id, and the index of its
   * record in the step log when it was recorded before (a replay).
   */
  take(): { scope: string; id: string; recorded: number | undefined } {
    const scope = this.current();
    const n = this.taken.get(scope) ?? 0;
    this.taken.set(scope, n + 1);
    const recorded = this.recorded.get(scope)?.[n];
    if (recorded !== undefined) this.unreplayed--;
    return { scope, id: scope === '' ? String(n) : `${scope}.${n}`, recorded };
  }

  /** The index of the next recorded call of the current scope, without taking it. */
  peek(): number | undefined {
    const scope = this.current();
    return this.recorded.get(scope)?.[this.taken.get(scope) ?? 0];
  }

  /** Whether the current scope still has recorded calls to replay. */
  replaying(): boolean {
    return this.peek() !== undefined;
  }

  /** Recorded calls no run has reached yet, in every scope. */
  get left(): number {
    return this.unreplayed;
  }
}

/** The scope of branch `branch` of the step `id` (a parallel or a DAG). */
export function branchScope(id: string, branch: string | number): string {
  return `${id}:${branch}`;
}
