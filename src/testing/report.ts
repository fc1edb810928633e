/**
 * Turning a failing run into a short story: shrink the step list further
 * (every single step that can go, goes), then print it with what failed,
 * the seed and path that replay it, and the steps as a regression example.
 *
 * @internal
 */
import type { CheckFailure, CheckStep } from './types.js';
import { show } from './compare.js';

/** Re-runs spent on shrinking at most, on top of fast-check's own shrinking. */
const MINIMIZE_RUNS_MAX = 400;

/** What makes two failures "the same bug" while shrinking. */
export function failureSignature(f: CheckFailure): string {
  switch (f.kind) {
    case 'invariant':
      return `invariant:${f.name}`;
    case 'divergence':
      return 'divergence';
    case 'error':
      return `error:${f.side}`;
  }
}

/**
 * Removes steps while the run still fails the same way: halves, quarters,
 * … then single steps, repeated until no single step can be removed (the
 * result is 1-minimal), within MINIMIZE_RUNS_MAX runs. Two clock jumps are
 * also tried as one (time passing in one jump, at the later one's place),
 * which can make more steps removable; and a forced passivation is tried
 * unforced.
 */
export async function minimize(
  steps: readonly CheckStep[],
  stillFails: (candidate: readonly CheckStep[]) => Promise<boolean>,
): Promise<CheckStep[]> {
  let cur = [...steps];
  let budget = MINIMIZE_RUNS_MAX;
  const attempt = async (candidate: CheckStep[]): Promise<boolean> => {
    if (budget <= 0) return false;
    budget--;
    if (!(await stillFails(candidate))) return false;
    cur = candidate;
    return true;
  };
  for (let size = Math.floor(cur.length / 2); size > 1; size = Math.floor(size / 2)) {
    for (let i = 0; i < cur.length; ) {
      if (!(await attempt([...cur.slice(0, i), ...cur.slice(i + size)]))) i += size;
    }
  }
  const removeSingles = async (): Promise<void> => {
    for (let changed = true; changed && budget > 0; ) {
      changed = false;
      for (let i = 0; i < cur.length; ) {
        if (await attempt([...cur.slice(0, i), ...cur.slice(i + 1)])) changed = true;
        else i++;
      }
    }
  };
  await removeSingles();
  for (let merged = true; merged && budget > 0; ) {
    merged = false;
    outer: for (let i = 0; i < cur.length; i++) {
      const a = cur[i]!;
      if (a.kind !== 'advance') continue;
      for (let j = i + 1; j < cur.length; j++) {
        const b = cur[j]!;
        if (b.kind !== 'advance') continue;
        const candidate = [...cur];
        candidate[j] = { kind: 'advance', ms: a.ms + b.ms };
        candidate.splice(i, 1);
        if (await attempt(candidate)) {
          merged = true;
          await removeSingles();
          break outer;
        }
      }
    }
  }
  for (let i = 0; i < cur.length; i++) {
    const s = cur[i]!;
    if (s.kind === 'passivate' && s.force) {
      await attempt([...cur.slice(0, i), { kind: 'passivate', force: false }, ...cur.slice(i + 1)]);
    }
  }
  return cur;
}

/** `send {"type":"ADD"}`, `advance 1000 ms`, `passivate (force)`, `restart`. */
export function stepLabel(step: CheckStep): string {
  switch (step.kind) {
    case 'send':
      return `send ${show(step.event, 200)}`;
    case 'advance':
      return `advance ${step.ms} ms`;
    case 'passivate':
      return step.force ? 'passivate (force)' : 'passivate';
    case 'restart':
      return 'restart';
  }
}

function describeFailure(f: CheckFailure, total: number): string {
  const at = f.index === 0 ? 'in the initial state' : `at step ${f.index} of ${total}`;
  switch (f.kind) {
    case 'invariant':
      return [
        `invariant "${f.name}" does not hold ${at}${f.error ? ` (it threw: ${f.error})` : ''}, after event ${show(f.event, 200)}.`,
        `  state: ${show(f.state)}`,
      ].join('\n');
    case 'divergence':
      return [
        `the ${f.where} differs from plain XState ${at}, first at ${f.path}.`,
        `  plain:  ${show(f.plain)}`,
        `  entity: ${show(f.entity)}`,
        ...(f.note ? [`  note: ${f.note}`] : []),
      ].join('\n');
    case 'error':
      return `the ${f.side === 'plain' ? 'plain XState actor' : 'entity'} failed ${at}: ${f.message}`;
  }
}

interface FailureReport {
  failure: CheckFailure;
  steps: readonly CheckStep[];
  originalLength: number;
  snapshotEvery: number;
  seed: number;
  path: string;
}

/** The CheckFailedError message. */
export function formatFailure(r: FailureReport): string {
  const lines = [`checkMachine found a counterexample: ${describeFailure(r.failure, r.steps.length)}`];
  lines.push(
    r.steps.length === 0
      ? 'No steps are needed (the initial state already fails).'
      : `Steps (shrunk to ${r.steps.length} from ${r.originalLength}; entity snapshotEvery ${r.snapshotEvery}):`,
  );
  r.steps.forEach((s, i) => lines.push(`  ${i + 1}. ${stepLabel(s)}`));
  lines.push(`Replay: checkMachine(machine, { ...sameOptions, seed: ${r.seed}, path: ${JSON.stringify(r.path)} })`);
  lines.push(`Or keep it as a regression: checkMachine(machine, { ...sameOptions, examples: [${show(r.steps, 4_000)}] })`);
  return lines.join('\n');
}
