import type { AnyStateMachine } from 'xstate';
import type { Logger } from 'pino';
import type { PlainDataLimits } from '../codec/plain-data.js';
import type { DeadLetter, Store } from '../persistence/types.js';
import type { Clock } from './clock.js';
import type { EntityHost } from './entity-host.js';
import type { FlushQueue } from './journal-writer.js';
import type { Publishing } from './outbox.js';
import type { EntityState, RestartPolicy, SystemStats, TimerResume } from './types.js';

/** An entity type with every option resolved. @internal */
export interface ResolvedEntityType {
  name: string;
  machine: AnyStateMachine;
  input: (id: string) => unknown;
  timerResume: TimerResume;
  rejectUnhandled: boolean;
}

/** Options with defaults applied. @internal */
export interface ResolvedOptions {
  snapshotEvery: number;
  passivateAfterMs: number;
  liveEntitiesMax: number;
  mailboxDepthMax: number;
  dedupeWindow: number;
  eventBytesMax: number;
  restart: RestartPolicy;
}

/** What an entity host needs from its system. @internal */
export interface EntityRuntime {
  readonly store: Store;
  readonly clock: Clock;
  readonly options: ResolvedOptions;
  readonly stats: SystemStats;
  readonly log: Logger;
  readonly xstateLogger: (...args: unknown[]) => void;
  readonly contextLimits: PlainDataLimits;
  readonly eventLimits: PlainDataLimits;
  readonly stopping: boolean;
  /** Unique per createActorSystem call; tags snapshots (see StoredSnapshot.run). */
  readonly runId: string;
  /** Writers waiting for the system's next flush. */
  readonly flushes: FlushQueue;
  /** A host moves in the recency list at most once per this many ms (see EntityHost.markActive). */
  readonly recencyStepMs: number;
  /** Where published messages go (see publish.ts). */
  readonly publishing: Publishing;
  hasListeners(k: string): boolean;
  emit(k: string, state: EntityState): void;
  touch(host: EntityHost): void;
  onActivated(host: EntityHost): void;
  onPassivated(host: EntityHost, wakeAt: number | null): void;
  /** The host the system now holds for `host`'s entity (creating one if needed). */
  successor(host: EntityHost): EntityHost;
  /** A live entity's actor stopped (failure or passivation). */
  onDeactivated(): void;
  deadLetter(letter: DeadLetter): Promise<void>;
}

/** Named defaults, in one place. */
export const defaults = {
  snapshotEvery: 100,
  passivateAfterMs: 60_000,
  liveEntitiesMax: 100_000,
  mailboxDepthMax: 1_000,
  dedupeWindow: 128,
  eventBytesMax: 65_536,
  contextBytesMax: 4_194_304,
  depthMax: 64,
  restart: { attemptsMax: 5, backoffMs: 100 },
  backoffMsMax: 30_000,
  entityIdLengthMax: 512,
} as const;
