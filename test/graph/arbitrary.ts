/**
 * Random statecharts for property tests of the exports: nested compound
 * and parallel states, finals, both history kinds, transitions between any
 * two states, and keys, ids and event names drawn from characters that
 * break naive escaping in Mermaid, DOT, HTML and XML.
 */
import fc from 'fast-check';
import { createMachine, type AnyStateMachine } from 'xstate';

/** Characters that mean something in at least one output format. */
const nasty = [...`"'<>&;:#{}[]|%\\-/*=.,()!?\`$~^ `, 'é', 'Ω', '→', '😀'];
const plain = [...'abcxyzABQ019_'];

/** A short name, with at least one plain character so it is never blank. */
const name = fc
  .tuple(
    fc.constantFrom(...plain),
    fc.array(fc.constantFrom(...plain, ...nasty), { maxLength: 8 }),
  )
  .map(([first, rest]) => (first + rest.join('')).replace(/\s+/g, ' ').trim());

interface Shape {
  kind: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  children: Shape[];
}

const shape: fc.Arbitrary<Shape> = fc.letrec<{ node: Shape }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant<Shape>({ kind: 'atomic', children: [] }),
    fc.constant<Shape>({ kind: 'final', children: [] }),
    fc
      .tuple(
        fc.constantFrom<'compound' | 'parallel'>('compound', 'parallel'),
        fc.array(tie('node'), { minLength: 1, maxLength: 3 }),
        fc.boolean(),
      )
      .map(([kind, children, withHistory]) => ({
        kind,
        // A parallel region that is final would end the parallel state at
        // once; keep regions simple or compound.
        children: [
          ...(kind === 'parallel'
            ? children.map((c) =>
                c.kind === 'final'
                  ? { kind: 'atomic' as const, children: [] }
                  : c,
              )
            : children),
          ...(withHistory ? [{ kind: 'history' as const, children: [] }] : []),
        ],
      })),
  ),
})).node;

export interface GeneratedMachine {
  machine: AnyStateMachine;
  /** Every state's key (the label a diagram shows), root and history states excluded. */
  keys: string[];
}

/**
 * A machine built from a random shape. Every state gets an explicit,
 * unique id (`<n> <junk>`) so transitions can target any state by `#id`.
 */
export const arbitraryMachine: fc.Arbitrary<GeneratedMachine> = fc
  .record({
    top: fc.array(shape, { minLength: 1, maxLength: 4 }),
    names: fc.array(name, { minLength: 64, maxLength: 64 }),
    events: fc.array(name, { minLength: 1, maxLength: 5 }),
    edges: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.boolean()), {
      maxLength: 12,
    }),
  })
  .map(({ top, names, events, edges }) => {
    let counter = 0;
    const ids: string[] = [];
    const keys: string[] = [];
    const configs: Record<string, unknown>[] = [];
    const build = (s: Shape, deep: boolean): Record<string, unknown> => {
      const n = counter++;
      // XState reads `.` and `\\` in a `#id` target as path syntax, so ids
      // leave them out; keys keep them.
      const config: Record<string, unknown> = {
        id: `${n} ${names[n % names.length]!.replace(/[.\\]/g, '')}`,
      };
      if (s.kind === 'history') {
        config.type = 'history';
        config.history = deep ? 'deep' : 'shallow';
        return config;
      }
      ids.push(config.id as string);
      configs.push(config);
      if (s.kind === 'final') config.type = 'final';
      if (s.kind === 'compound' || s.kind === 'parallel') {
        if (s.kind === 'parallel') config.type = 'parallel';
        const states: Record<string, unknown> = {};
        s.children.forEach((child, i) => {
          const key = `${names[(n + i + 7) % names.length]!}${i}`;
          if (child.kind !== 'history') keys.push(key);
          states[key] = build(child, i % 2 === 0);
        });
        config.states = states;
        if (s.kind === 'compound') {
          const first = Object.entries(states).find(
            ([, c]) => (c as { type?: string }).type !== 'history',
          );
          if (first) config.initial = first[0];
          else {
            // A compound state needs a state to start in.
            states.start = { id: `${counter++} start` };
            keys.push('start');
            ids.push(`${counter - 1} start`);
            config.initial = 'start';
          }
        }
      }
      return config;
    };
    const rootStates: Record<string, unknown> = {};
    top.forEach((s, i) => {
      const key = `${names[(i * 5 + 3) % names.length]!}${i}`;
      keys.push(key);
      rootStates[key] = build(s, true);
    });
    for (const [from, to, event, guarded] of edges) {
      const source = configs[from % configs.length]!;
      if (source.type === 'final') continue;
      const on = (source.on ??= {}) as Record<string, unknown[]>;
      const type = events[event % events.length]!;
      (on[type] ??= []).push({
        target: `#${ids[to % ids.length]!}`,
        ...(guarded ? { guard: names[(from + to) % names.length] } : {}),
      });
    }
    const machine = createMachine({
      id: `m ${names[0]!}`,
      initial: Object.keys(rootStates)[0]!,
      states: rootStates as never,
    });
    // Shrunk counterexamples print as the machine config, not as XState's
    // cyclic object graph.
    return {
      machine,
      keys,
      [fc.toStringMethod]: () => `machine ${JSON.stringify(machine.config)}`,
    };
  });
