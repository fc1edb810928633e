import { assign, enqueueActions, setup } from 'xstate';
import { checkInteger } from '../shared/options.js';

/** Why a batch was emitted. */
export type BatchReason = 'full' | 'timeout' | 'flush';

/** One emitted batch; `seq` counts batches from 1 per machine instance. */
export interface Batch<TItem = unknown> {
  seq: number;
  items: TItem[];
  reason: BatchReason;
}

/** The event a batch machine emits (and sends to its parent, when it has one). */
export interface BatchEmitted<TItem = unknown> extends Batch<TItem> {
  type: 'BATCH';
}

/** Events a batch machine accepts. */
export type BatchEvent<TItem = unknown> =
  { type: 'ADD'; item: TItem } | { type: 'FLUSH' };

/**
 * Plain data only, so the machine can be an entity. `received` and `emitted`
 * count items; `received === emitted + items.length` always holds.
 */
export interface BatchContext<TItem = unknown> {
  /** Items waiting for the next batch, oldest first (at most `sizeMax`). */
  items: TItem[];
  /** Seq of the last emitted batch (0: none yet). */
  batchSeq: number;
  /** The last `historyMax` batches, oldest first. */
  batches: Batch<TItem>[];
  received: number;
  emitted: number;
}

export interface BatchMachineOptions {
  /** Items per batch; a batch is emitted as soon as it holds this many. 1..100 000. */
  sizeMax: number;
  /** Longest wait of the first item of a batch, in ms (an `after` timer). 1..2^31-1. */
  waitMs: number;
  /** Emitted batches kept in context for callers that read state. Default 8, 0..1 000. */
  historyMax?: number;
  /** Machine id. Default 'batch'. */
  id?: string;
}

/**
 * Defaults and bounds of the batch machine's options.
 *
 * @example
 * ```ts
 * import { batchDefaults, createBatchMachine } from 'shardchart/machines';
 * createBatchMachine({ sizeMax: batchDefaults.sizeMaxLimit, waitMs: 1_000 }); // the largest batches allowed
 * ```
 */
export const batchDefaults = {
  historyMax: 8,
  historyMaxLimit: 1_000,
  sizeMaxLimit: 100_000,
  waitMsLimit: 2_147_483_647,
} as const;

/**
 * Creates a batching (and debouncing) machine: `ADD` events collect items,
 * and a batch is emitted when it holds `sizeMax` items (`reason: 'full'`),
 * when `waitMs` have passed since its first item (`'timeout'`) or on `FLUSH`
 * (`'flush'`). No item is lost or repeated, no batch is larger than
 * `sizeMax`, and no item waits longer than `waitMs`.
 *
 * The wait is an XState `after` timer, so as a Shardchart entity it is
 * durable: it fires at its original deadline across passivation and
 * restarts. A batch is delivered three ways at once: `emit` (listen with
 * `actor.on('BATCH', …)`), `sendParent` when the machine runs invoked inside
 * another machine, and the context (`batchSeq`, the last `historyMax`
 * `batches`) for callers that read an entity's state.
 *
 * @example
 * ```ts
 * import { createActor } from 'xstate';
 * import { createBatchMachine } from 'shardchart/machines';
 *
 * const batcher = createActor(createBatchMachine<string>({ sizeMax: 2, waitMs: 1_000 }));
 * batcher.on('BATCH', (b) => console.log(b.reason, b.items)); // full [ 'a', 'b' ]
 * batcher.start();
 * batcher.send({ type: 'ADD', item: 'a' });
 * batcher.send({ type: 'ADD', item: 'b' });
 * ```
 */
export function createBatchMachine<TItem = unknown>(
  options: BatchMachineOptions,
) {
  const { sizeMax, waitMs } = options;
  const historyMax = options.historyMax ?? batchDefaults.historyMax;
  checkInteger(
    'createBatchMachine',
    'sizeMax',
    sizeMax,
    1,
    batchDefaults.sizeMaxLimit,
  );
  checkInteger(
    'createBatchMachine',
    'waitMs',
    waitMs,
    1,
    batchDefaults.waitMsLimit,
  );
  checkInteger(
    'createBatchMachine',
    'historyMax',
    historyMax,
    0,
    batchDefaults.historyMaxLimit,
  );

  return setup({
    types: {
      context: {} as BatchContext<TItem>,
      events: {} as BatchEvent<TItem>,
      emitted: {} as BatchEmitted<TItem>,
    },
    delays: { batchWait: waitMs },
    guards: {
      isFull: ({ context }) => context.items.length >= sizeMax,
      // `undefined` would not survive a msgpack round trip unchanged, so an
      // ADD without an item is not accepted rather than stored as a hole.
      hasItem: ({ event }) => event.type === 'ADD' && event.item !== undefined,
    },
    actions: {
      addItem: assign({
        items: ({ context, event }) =>
          event.type === 'ADD' ? [...context.items, event.item] : context.items,
        received: ({ context, event }) =>
          event.type === 'ADD' ? context.received + 1 : context.received,
      }),
      emitBatch: enqueueActions(
        ({ context, enqueue, self }, params: { reason: BatchReason }) => {
          if (context.items.length === 0) return;
          const batch: Batch<TItem> = {
            seq: context.batchSeq + 1,
            items: context.items,
            reason: params.reason,
          };
          enqueue.assign({
            items: [],
            batchSeq: batch.seq,
            batches:
              historyMax === 0
                ? []
                : [...context.batches, batch].slice(-historyMax),
            emitted: context.emitted + batch.items.length,
          });
          enqueue.emit({ type: 'BATCH', ...batch });
          // sendParent throws without a parent, and a root entity has none.
          // The check runs when the action is resolved; replay has no parent
          // either, and never executes the send, so it stays pure.
          if (self._parent) enqueue.sendParent({ type: 'BATCH', ...batch });
        },
      ),
    },
  }).createMachine({
    id: options.id ?? 'batch',
    context: {
      items: [],
      batchSeq: 0,
      batches: [],
      received: 0,
      emitted: 0,
    },
    initial: 'idle',
    states: {
      idle: {
        on: {
          ADD: { guard: 'hasItem', target: 'collecting', actions: 'addItem' },
        },
      },
      collecting: {
        // A full batch leaves at once: the timer of the next batch starts
        // with its own first item.
        always: {
          guard: 'isFull',
          target: 'idle',
          actions: { type: 'emitBatch', params: { reason: 'full' } },
        },
        after: {
          batchWait: {
            target: 'idle',
            actions: { type: 'emitBatch', params: { reason: 'timeout' } },
          },
        },
        on: {
          // Targetless: a later item must not restart the first item's timer.
          ADD: { guard: 'hasItem', actions: 'addItem' },
          FLUSH: {
            target: 'idle',
            actions: { type: 'emitBatch', params: { reason: 'flush' } },
          },
        },
      },
    },
  });
}
