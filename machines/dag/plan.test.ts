/**
 * The DAG planner: topological groups on random acyclic graphs, and the
 * errors for missing dependencies and cycles (which must name a real cycle).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  DefinitionError,
  isShardchartError,
} from '../../src/errors.js';
import { propertyRuns } from '../retry/test-support.js';
import { createDagMachine } from './dag-machine.js';
import { executionPlan, type PlanStep } from './plan.js';

/** A random DAG: step i depends only on lower indices; listed in a random order. */
const dag = fc
  .integer({ min: 1, max: 12 })
  .chain((n) =>
    fc.tuple(
      fc.tuple(
        ...Array.from({ length: n }, (_, i) =>
          fc.subarray(Array.from({ length: i }, (_, k) => `s${k}`)),
        ),
      ),
      fc.shuffledSubarray(
        Array.from({ length: n }, (_, i) => i),
        { minLength: n, maxLength: n },
      ),
    ),
  )
  .map(([deps, order]) =>
    order.map((i): PlanStep => ({ id: `s${i}`, dependsOn: deps[i]! })),
  );

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('dag plan', () => {
  it('plan - groups steps by dependency depth, keeping definition order inside a group', () => {
    expect(
      executionPlan([
        { id: 'publish', dependsOn: ['resize', 'scan'] },
        { id: 'fetch' },
        { id: 'scan', dependsOn: ['fetch'] },
        { id: 'resize', dependsOn: ['fetch', 'fetch'] },
      ]),
    ).toEqual([['fetch'], ['scan', 'resize'], ['publish']]);
  });

  it('plan - on any acyclic graph: each step once, dependencies in earlier groups, each step as early as possible', () => {
    fc.assert(
      fc.property(dag, (steps) => {
        const groups = executionPlan(steps);
        const groupOf = new Map(
          groups.flatMap((g, i) => g.map((id) => [id, i] as const)),
        );
        expect(groups.flat().sort()).toEqual(steps.map((s) => s.id).sort());
        for (const s of steps) {
          const deps = s.dependsOn ?? [];
          const earliest =
            deps.length === 0
              ? 0
              : 1 + Math.max(...deps.map((d) => groupOf.get(d)!));
          expect(groupOf.get(s.id)).toBe(earliest);
        }
        for (const g of groups) {
          const positions = g.map((id) => steps.findIndex((s) => s.id === id));
          expect(positions).toEqual([...positions].sort((a, b) => a - b));
        }
      }),
      { numRuns: propertyRuns(100) },
    );
  });

  it('plan - a back edge makes a cycle, reported as a real closed path of dependencies', () => {
    fc.assert(
      fc.property(dag, fc.nat(), fc.nat(), (steps, x, y) => {
        // Make some step depend on one of its transitive dependents (or itself).
        const from = steps[x % steps.length]!;
        const reach = new Set<string>([from.id]);
        for (let grew = true; grew;) {
          grew = false;
          for (const s of steps) {
            if (
              !reach.has(s.id) &&
              (s.dependsOn ?? []).some((d) => reach.has(d))
            ) {
              reach.add(s.id);
              grew = true;
            }
          }
        }
        const targets = [...reach];
        const to = targets[y % targets.length]!;
        const cyclic = steps.map((s) =>
          s.id === from.id
            ? { ...s, dependsOn: [...(s.dependsOn ?? []), to] }
            : s,
        );
        const err = thrown(() => executionPlan(cyclic));
        expect(isShardchartError(err, 'DAG_CYCLE')).toBe(true);
        const cycle = (err as DefinitionError).details!.cycle as string[];
        expect(cycle[0]).toBe(cycle.at(-1));
        expect((err as Error).message).toContain(cycle.join(' -> '));
        for (let i = 0; i + 1 < cycle.length; i++) {
          expect(cyclic.find((s) => s.id === cycle[i])!.dependsOn).toContain(
            cycle[i + 1],
          );
        }
      }),
      { numRuns: propertyRuns(100) },
    );
  });

  it('plan - names the cycle a -> b -> c -> a, and a self-dependency a -> a', () => {
    const err = thrown(() =>
      executionPlan([
        { id: 'a', dependsOn: ['b'] },
        { id: 'b', dependsOn: ['c'] },
        { id: 'c', dependsOn: ['a'] },
        { id: 'd' },
      ]),
    ) as DefinitionError;
    expect(err).toBeInstanceOf(DefinitionError);
    expect(err.code).toBe('DAG_CYCLE');
    expect(err.message).toContain('a -> b -> c -> a');
    expect(err.details).toEqual({ cycle: ['a', 'b', 'c', 'a'] });
    expect(
      (
        thrown(() =>
          executionPlan([{ id: 'a', dependsOn: ['a'] }]),
        ) as DefinitionError
      ).details,
    ).toEqual({ cycle: ['a', 'a'] });
  });

  it('plan - a missing dependency is DAG_DEPENDENCY_MISSING; bad ids are CONFIG_INVALID', () => {
    const err = thrown(() =>
      executionPlan([{ id: 'a', dependsOn: ['ghost'] }]),
    ) as DefinitionError;
    expect(err.code).toBe('DAG_DEPENDENCY_MISSING');
    expect(err.details).toEqual({ step: 'a', dependency: 'ghost' });
    expect(err.message).toContain('"ghost"');
    expect(() => executionPlan([{ id: 'a' }, { id: 'a' }])).toThrow(
      ConfigError,
    );
    expect(() => executionPlan([{ id: '' }])).toThrow(ConfigError);
  });

  it('plan - the machine factory refuses the same definitions at creation', () => {
    const run = async () => 1;
    expect(() =>
      createDagMachine({
        concurrencyMax: 1,
        steps: [
          { id: 'a', dependsOn: ['b'], run },
          { id: 'b', dependsOn: ['a'], run },
        ],
      }),
    ).toThrow(
      expect.objectContaining({
        code: 'DAG_CYCLE',
        message: expect.stringContaining('a -> b -> a'),
      }),
    );
    expect(() =>
      createDagMachine({
        concurrencyMax: 1,
        steps: [{ id: 'a', dependsOn: ['x'], run }],
      }),
    ).toThrow(expect.objectContaining({ code: 'DAG_DEPENDENCY_MISSING' }));
    expect(() =>
      createDagMachine({ concurrencyMax: 0, steps: [{ id: 'a', run }] }),
    ).toThrow(/concurrencyMax/);
    expect(() =>
      createDagMachine({
        concurrencyMax: 1,
        steps: [{ id: 'a', run, onError: 'panic' as never }],
      }),
    ).toThrow(/onError/);
    expect(() =>
      createDagMachine({
        concurrencyMax: 1,
        steps: [{ id: 'a', run, retry: { then: 'retry' as never } }],
      }),
    ).toThrow(/retry.then/);
    expect(() => createDagMachine({ concurrencyMax: 1, steps: [] })).toThrow(
      /non-empty/,
    );
  });
});
