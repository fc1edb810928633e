/**
 * The DAG planner: checks a dependency graph of steps and orders it into
 * topological groups. It depends on nothing but the error classes, so the
 * DAG machine (machines/dag, which re-exports it) and workflow functions
 * (`ctx.dag`) both use it; it lives in the core because the core may not
 * import machines.
 */
import { ConfigError, DefinitionError } from '../errors.js';

/** What the planner needs of a step. */
export interface PlanStep {
  id: string;
  /** Ids of the steps that must finish first. */
  dependsOn?: readonly string[];
}

/**
 * Orders steps into groups: every step's dependencies are in earlier
 * groups, and each group holds the steps whose dependencies are all in
 * earlier groups (so a group's steps could run at the same time). Within a
 * group, steps keep their definition order.
 *
 * Throws `DefinitionError` `DAG_DEPENDENCY_MISSING` when a step depends on
 * an id that no step has, `DAG_CYCLE` when steps depend on each other in a
 * cycle (the message and `details.cycle` name it, `a -> b -> a` read as
 * "a depends on b, which depends on a"), and `ConfigError` for duplicate or
 * malformed ids.
 *
 * @example
 * ```ts
 * import { executionPlan } from 'shardchart/machines';
 *
 * executionPlan([
 *   { id: 'fetch' },
 *   { id: 'resize', dependsOn: ['fetch'] },
 *   { id: 'scan', dependsOn: ['fetch'] },
 *   { id: 'publish', dependsOn: ['resize', 'scan'] },
 * ]);
 * // [['fetch'], ['resize', 'scan'], ['publish']]
 * ```
 */
export function executionPlan(steps: readonly PlanStep[]): string[][] {
  const index = checkIds(steps);
  for (const s of steps) {
    for (const dep of s.dependsOn ?? []) {
      if (!index.has(dep)) {
        throw new DefinitionError(
          'DAG_DEPENDENCY_MISSING',
          `Step "${s.id}" depends on "${dep}", which is not a step of this DAG; add a step "${dep}" or remove it from "${s.id}".dependsOn.`,
          { details: { step: s.id, dependency: dep } },
        );
      }
    }
  }
  const cycle = findCycle(steps, index);
  if (cycle) {
    const text = cycle.join(' -> ');
    throw new DefinitionError(
      'DAG_CYCLE',
      `The steps depend on each other in a cycle: ${text} (read "->" as "depends on"); remove one of these dependencies.`,
      { details: { cycle } },
    );
  }
  // Kahn's algorithm, one group per round; iterative, so a long chain
  // cannot overflow the stack.
  const waitingOn = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const s of steps) {
    const deps = new Set(s.dependsOn ?? []);
    waitingOn.set(s.id, deps.size);
    for (const d of deps) {
      const list = dependents.get(d);
      if (list) list.push(s.id);
      else dependents.set(d, [s.id]);
    }
  }
  const byIndex = (a: string, b: string) => index.get(a)! - index.get(b)!;
  const groups: string[][] = [];
  let current = steps.filter((s) => waitingOn.get(s.id) === 0).map((s) => s.id);
  while (current.length > 0) {
    groups.push(current);
    const next: string[] = [];
    for (const id of current) {
      for (const d of dependents.get(id) ?? []) {
        const left = waitingOn.get(d)! - 1;
        waitingOn.set(d, left);
        if (left === 0) next.push(d);
      }
    }
    current = next.sort(byIndex);
  }
  return groups;
}

function checkIds(steps: readonly PlanStep[]): Map<string, number> {
  if (!Array.isArray(steps)) {
    throw new ConfigError(
      `executionPlan: steps must be an array of { id, dependsOn? }; got ${typeof steps}.`,
      { details: { option: 'steps' } },
    );
  }
  const index = new Map<string, number>();
  steps.forEach((step: unknown, i) => {
    // Read as unknown: the steps may come from configuration, not typed code.
    const s = step as { id?: unknown; dependsOn?: unknown } | null;
    if (
      typeof s !== 'object' ||
      s === null ||
      typeof s.id !== 'string' ||
      s.id === ''
    ) {
      throw new ConfigError(
        `executionPlan: step ${i} must be an object with a non-empty string id.`,
        {
          details: { option: 'steps', index: i },
        },
      );
    }
    const id = s.id;
    if (index.has(id)) {
      throw new ConfigError(
        `executionPlan: step id "${id}" is used twice; step ids must be unique.`,
        {
          details: { option: 'steps', id },
        },
      );
    }
    const deps = s.dependsOn;
    if (
      deps !== undefined &&
      (!Array.isArray(deps) || deps.some((d: unknown) => typeof d !== 'string'))
    ) {
      throw new ConfigError(
        `executionPlan: step "${id}".dependsOn must be an array of step ids.`,
        {
          details: { option: 'steps', id },
        },
      );
    }
    index.set(id, i);
  });
  return index;
}

/**
 * A cycle as a closed list of ids (`[a, b, a]`), or undefined. Depth-first,
 * iterative so a long chain cannot overflow the stack; steps and their
 * dependencies are visited in definition order, so the cycle reported is
 * stable.
 */
function findCycle(
  steps: readonly PlanStep[],
  index: Map<string, number>,
): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  for (const root of steps) {
    if (state.has(root.id)) continue;
    const path: string[] = [root.id];
    const next: number[] = [0];
    state.set(root.id, 'open');
    while (path.length > 0) {
      const id = path.at(-1)!;
      const deps = steps[index.get(id)!]!.dependsOn ?? [];
      const i = next.at(-1)!;
      if (i >= deps.length) {
        state.set(id, 'done');
        path.pop();
        next.pop();
        continue;
      }
      next[next.length - 1] = i + 1;
      const dep = deps[i]!;
      const seen = state.get(dep);
      if (seen === 'open') return [...path.slice(path.indexOf(dep)), dep];
      if (seen === 'done') continue;
      state.set(dep, 'open');
      path.push(dep);
      next.push(0);
    }
  }
  return undefined;
}
