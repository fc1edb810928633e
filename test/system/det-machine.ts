/**
 * The machine of the determinism tests (embedded and clustered) and its
 * event generator: parallel regions, deep and shallow history, guards,
 * `assign` from context and event, eventless transitions, a `raise`, delayed
 * transitions with equal deadlines in two regions, and a final state.
 */
import fc from 'fast-check';
import { assign, raise, setup } from 'xstate';

// The machine under test.

export interface Ctx {
  entityId: string;
  entityType: string;
  total: number;
  steps: number;
  highs: number;
  ticks: number;
  notes: string[];
}

export type Ev =
  | { type: 'START' }
  | { type: 'NEXT' }
  | { type: 'PAUSE' }
  | { type: 'RESUME_DEEP' }
  | { type: 'RESUME_SHALLOW' }
  | { type: 'ADD'; amount: number }
  | { type: 'NOTE'; text: string; tag?: { level: number; flags: boolean[] } }
  | { type: 'DRAIN' }
  | { type: 'FINISH' }
  | { type: 'HIGH' };

const BUDGET_LIMIT = 40;

export const machine = setup({
  types: {
    context: {} as Ctx,
    input: {} as { entityId: string; entityType: string },
    events: {} as Ev,
    output: {} as { total: number; steps: number; highs: number },
  },
  guards: {
    positive: ({ event }) => event.type === 'ADD' && event.amount > 0,
    totalEven: ({ context }) => context.total % 2 === 0,
    enoughSteps: ({ context }) => context.steps >= 3,
    isHigh: ({ context }) => context.total >= 10,
    overBudget: ({ context }) => context.total >= BUDGET_LIMIT,
  },
  actions: {
    tick: assign({ ticks: ({ context }) => context.ticks + 1 }),
    note: assign({
      notes: ({ context }, params: { text: string }) => [
        ...context.notes,
        params.text,
      ],
    }),
  },
}).createMachine({
  id: 'det',
  context: ({ input }) => ({
    entityId: input.entityId,
    entityType: input.entityType,
    total: 0,
    steps: 0,
    highs: 0,
    ticks: 0,
    notes: [],
  }),
  initial: 'running',
  states: {
    running: {
      type: 'parallel',
      states: {
        flow: {
          initial: 'idle',
          states: {
            idle: { on: { START: 'working' } },
            working: {
              initial: 'step1',
              states: {
                step1: { on: { NEXT: 'step2' } },
                step2: {
                  initial: 'a',
                  states: {
                    a: { on: { NEXT: 'b' } },
                    b: { on: { NEXT: '#det.running.flow.working.step3' } },
                  },
                },
                step3: {
                  after: {
                    1000: {
                      target: 'step1',
                      actions: [
                        'tick',
                        { type: 'note', params: { text: 'step3-timeout' } },
                      ],
                    },
                  },
                  on: { NEXT: { target: 'step1', guard: 'totalEven' } },
                },
                deepHist: { type: 'history', history: 'deep' },
                shallowHist: { type: 'history', history: 'shallow' },
              },
              on: {
                PAUSE: 'paused',
                ADD: {
                  guard: 'positive',
                  actions: assign({
                    total: ({ context, event }) => context.total + event.amount,
                    steps: ({ context }) => context.steps + 1,
                  }),
                },
              },
            },
            paused: {
              after: {
                3000: {
                  target: 'idle',
                  actions: { type: 'note', params: { text: 'pause-expired' } },
                },
              },
              on: {
                RESUME_DEEP: 'working.deepHist',
                RESUME_SHALLOW: 'working.shallowHist',
              },
            },
          },
        },
        meter: {
          initial: 'low',
          states: {
            low: {
              always: { guard: 'isHigh', target: 'high' },
              on: {
                ADD: {
                  guard: 'positive',
                  actions: assign({
                    total: ({ context, event }) => context.total + event.amount,
                  }),
                },
              },
            },
            high: {
              entry: raise({ type: 'HIGH' }),
              always: { guard: 'overBudget', target: '#det.finished' },
              after: {
                // Same delay as step3's: both can be pending with one deadline.
                1000: {
                  actions: [
                    'tick',
                    { type: 'note', params: { text: 'high-timeout' } },
                  ],
                },
              },
              on: {
                DRAIN: {
                  target: 'low',
                  actions: assign({ total: 0 }),
                },
                ADD: {
                  guard: 'positive',
                  actions: assign({
                    total: ({ context, event }) => context.total + event.amount,
                  }),
                },
              },
            },
          },
        },
      },
      on: {
        HIGH: {
          actions: assign({ highs: ({ context }) => context.highs + 1 }),
        },
        NOTE: {
          actions: assign({
            notes: ({ context, event }) => [
              ...context.notes,
              event.tag ? `${event.text}#${event.tag.level}` : event.text,
            ],
          }),
        },
        FINISH: { guard: 'enoughSteps', target: 'finished' },
      },
    },
    finished: { type: 'final' },
  },
  output: ({ context }) => ({
    total: context.total,
    steps: context.steps,
    highs: context.highs,
  }),
});

export type DetMachine = typeof machine;

/** Events a test sends (HIGH is raised by the machine itself). */
export type EventSpec = Exclude<Ev, { type: 'HIGH' }>;

export const eventArb: fc.Arbitrary<EventSpec> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ type: 'NEXT' } as const) },
  { weight: 2, arbitrary: fc.constant({ type: 'START' } as const) },
  { weight: 2, arbitrary: fc.constant({ type: 'PAUSE' } as const) },
  { weight: 2, arbitrary: fc.constant({ type: 'RESUME_DEEP' } as const) },
  { weight: 2, arbitrary: fc.constant({ type: 'RESUME_SHALLOW' } as const) },
  {
    weight: 3,
    arbitrary: fc
      .integer({ min: -3, max: 9 })
      .map((amount) => ({ type: 'ADD', amount }) as const),
  },
  {
    weight: 1,
    arbitrary: fc
      .record(
        {
          text: fc.string({ maxLength: 6, unit: 'binary' }),
          tag: fc.record({
            level: fc.integer({ min: -5, max: 5 }),
            flags: fc.array(fc.boolean(), { maxLength: 3 }),
          }),
        },
        { requiredKeys: ['text'] },
      )
      .map((r) => ({ type: 'NOTE', ...r }) as const),
  },
  { weight: 1, arbitrary: fc.constant({ type: 'DRAIN' } as const) },
  { weight: 1, arbitrary: fc.constant({ type: 'FINISH' } as const) },
);
