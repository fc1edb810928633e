import type { AnyActorRef, Subscription } from 'xstate';
import { checkPlainData, type PlainDataProblem } from '../codec/plain-data.js';
import { EntityError, WorkflowError, toError } from '../errors.js';
import {
  dataNotPlain,
  diverged,
  finishedEarly,
  paramsDiverged,
  paramsInvalid,
  paramsNotPlain,
  actionUnknown,
  rebuildError,
  recordError,
  stepsExceeded,
  WorkflowStoppedError,
} from './errors.js';
import {
  RETURN,
  STEPS,
  TAKE,
  THROW,
  type StepCall,
  type ThrowEvent,
} from './events.js';
import { clockOf } from './action-call.js';
import { createContext, silentWhile, type StepSource } from './context.js';
import { Scopes } from './scopes.js';
import type { BranchHost } from './dag.js';
import type { WorkflowBinding, WorkflowSpec } from './spec.js';
import { TASK_CREATE_ACTION } from './task-context.js';
import type {
  StepKind,
  StepRecord,
  WorkflowContext,
  WorkflowEvent,
  WorkflowSnapshot,
} from './types.js';

/**
 * The live side of a workflow actor: runs the function from its first line
 * on every activation. While its calls are in the step log it answers them
 * from the log (replay); past the log it announces new steps, batched per
 * turn of the event loop into one journaled `steps` event, and waits for
 * their outcomes to show up in the snapshot.
 *
 * Determinism is checked, not assumed: a replayed call must have the kind
 * and name its step recorded, or the workflow fails with WORKFLOW_DIVERGED
 * naming the step, before the new code can act on the old journal.
 */

const runners = new WeakMap<AnyActorRef, Runner>();

/** The original error of a THROW event, kept live so the failure carries its stack. */
const thrown = new WeakMap<object, unknown>();

/** The error object a THROW event stands for, while the process that threw it lives. @internal */
export function thrownError(event: object): unknown {
  return thrown.get(event);
}

/** Starts the function of the workflow actor `root` (once per actor). @internal */
export function startRunner(
  spec: WorkflowSpec,
  binding: WorkflowBinding,
  root: AnyActorRef,
): void {
  if (runners.has(root)) return;
  const runner = new Runner(spec, binding, root);
  runners.set(root, runner);
  runner.run();
}

/** Stops the runner of `root`: its function is abandoned where it waits. @internal */
export function stopRunner(root: AnyActorRef): void {
  runners.get(root)?.stop();
  runners.delete(root);
}

/** A step taken: its index in the log, its id, its scope, and its record when replayed. */
interface Taken {
  i: number;
  id: string;
  scope: string;
  rec: StepRecord | undefined;
}

interface Waiter {
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** Bytes of a `steps` event beyond its steps (type and `from`). */
const stepsEventOverhead = 64;

class Runner implements StepSource, BranchHost {
  /** Which calls replay, per scope (see scopes.ts). */
  readonly scopes: Scopes;
  /** The step log index of the next new step. */
  private nextIndex: number;
  /** Recorded steps when this runner started. */
  private readonly replayLength: number;
  private batch: StepCall[] = [];
  private batchFrom = 0;
  private batchBytes = 0;
  private flushQueued = false;
  private readonly waiters = new Map<number, Waiter>();
  private readonly predicates = new Map<
    number,
    { test: (event: WorkflowEvent) => boolean; offered?: number }
  >();
  /** The function's view of ctx.data and its state name, rebuilt by replay. */
  readonly data = new Map<string, unknown>();
  state = 'running';
  private failed: Error | undefined;
  private stopped = false;
  private subscription: Subscription | undefined;
  private readonly ctx: WorkflowContext<never, never>;

  constructor(
    private readonly spec: WorkflowSpec,
    private readonly binding: WorkflowBinding,
    readonly root: AnyActorRef,
  ) {
    const snap = this.snapshot();
    this.replayLength = snap.steps.length;
    this.nextIndex = snap.steps.length;
    this.scopes = new Scopes(snap.steps);
    const trigger = snap.trigger!;
    const correlationId =
      [trigger.correlationId, trigger.correlationKey].find(
        (c) => typeof c === 'string',
      ) ?? snap.entity.id;
    const logger = silentWhile(
      binding.logger.child({
        workflow: spec.name,
        entityType: snap.entity.type,
        entityId: snap.entity.id,
        correlationId,
      }),
      () => this.scopes.replaying(),
    );
    this.ctx = createContext(this, spec, snap, logger);
  }

  private snapshot(): WorkflowSnapshot {
    return this.root.getSnapshot() as WorkflowSnapshot;
  }

  /** Whether the system gave this workflow its routing and task services. */
  get routed(): boolean {
    return this.binding.actions?.resolve(TASK_CREATE_ACTION) !== undefined;
  }

  run(): void {
    this.subscription = this.root.subscribe({
      next: (snap: WorkflowSnapshot) => this.onSnapshot(snap),
      // The system reports the actor's errors; without a handler XState
      // would report them again as unhandled.
      error: () => undefined,
    });
    // A pending predicate wait may already have its event in the inbox.
    void Promise.resolve()
      .then(() => this.spec.fn(this.ctx))
      .then(
        (output) => this.finish(output),
        (error: unknown) => this.finishWithError(error),
      );
  }

  stop(): void {
    this.stopped = true;
    this.subscription?.unsubscribe();
    this.waiters.clear();
    this.predicates.clear();
    this.batch = [];
  }

  // ---------------------------------------------------------------- steps

  /**
   * Takes the next step of the current scope for a call of `kind`/`name`
   * (and, for an action, the hash of its params). A replayed step must
   * match its record; the first mismatch fails the workflow.
   */
  private next(kind: StepKind, name: string, paramsHash?: string): Taken {
    if (this.failed) throw this.failed;
    if (this.stopped) throw new WorkflowStoppedError();
    const { scope, id, recorded } = this.scopes.take();
    if (recorded !== undefined) {
      const rec = this.snapshot().steps[recorded]!;
      if (rec.kind !== kind || rec.name !== name)
        this.fail(diverged(id, rec, { kind, name }));
      if (
        paramsHash !== undefined &&
        rec.ph !== undefined &&
        rec.ph !== paramsHash
      )
        this.fail(paramsDiverged(id, name));
      return { i: recorded, id, scope, rec };
    }
    const i = this.nextIndex;
    if (i >= this.spec.stepsMax) this.fail(stepsExceeded(this.spec.stepsMax));
    this.nextIndex++;
    return { i, id, scope, rec: undefined };
  }

  /** A step that only marks a point (a parallel's start, a DAG's settle order); returns its id. */
  mark(kind: 'parallel' | 'dag' | 'dag.settle', name: string): string {
    const { i, id, scope, rec } = this.next(kind, name);
    if (rec === undefined) this.push(i, { kind, name }, scope);
    return id;
  }

  /** The next recorded step of the current scope, not taken. */
  peekRecorded(): StepRecord | undefined {
    const i = this.scopes.peek();
    return i === undefined ? undefined : this.snapshot().steps[i];
  }

  /** A step that completes at once: replayed from its record, or made and recorded. */
  syncStep(kind: 'now' | 'random' | 'uuid', make: () => unknown): unknown {
    const { i, scope, rec } = this.next(kind, '');
    if (rec !== undefined) return rec.result;
    const value = make();
    this.push(i, { kind, name: '', value }, scope);
    return value;
  }

  setState(name: string): void {
    if (typeof name !== 'string' || name.length === 0) {
      throw new TypeError(
        `ctx.setState expects a non-empty state name; got ${JSON.stringify(name)}.`,
      );
    }
    const { i, scope, rec } = this.next('state', name);
    if (rec === undefined) this.push(i, { kind: 'state', name }, scope);
    this.state = name;
  }

  setData(key: string, value: unknown): void {
    if (typeof key !== 'string' || key.length === 0)
      throw new TypeError(
        `ctx.data.set expects a non-empty string key; got ${JSON.stringify(key)}.`,
      );
    if (!this.scopes.replaying()) {
      const problem = this.plainProblem(value, {
        kind: 'data',
        name: key,
        value,
      });
      if (problem) throw dataNotPlain(key, problem);
    }
    const { i, scope, rec } = this.next('data', key);
    if (rec === undefined)
      this.push(i, { kind: 'data', name: key, value }, scope);
    // The journal wins over the code: a replayed write takes the value it recorded.
    this.data.set(key, rec === undefined ? value : rec.result);
  }

  deleteData(key: string): void {
    const { i, scope, rec } = this.next('data.delete', key);
    if (rec === undefined)
      this.push(i, { kind: 'data.delete', name: key }, scope);
    this.data.delete(key);
  }

  action(name: string, params: unknown): Promise<unknown> {
    try {
      const ph = paramsHash(params);
      if (this.scopes.replaying())
        return this.outcome(this.next('action', name, ph).i);
      // A call refused before it runs takes no step: validation is
      // deterministic, so the replay refuses it the same way.
      const action = this.binding.actions?.resolve(name);
      if (action === undefined)
        throw actionUnknown(name, this.binding.actions?.names() ?? []);
      let value = params;
      if (action.check !== undefined) {
        const checked = action.check(params);
        if (checked instanceof Promise) {
          throw new WorkflowError(
            'ACTION_PARAMS_INVALID',
            `The params schema of action "${name}" validates asynchronously; a workflow records its calls in order, so use a schema that validates synchronously.`,
            { details: { action: name, issues: [] } },
          );
        }
        if (!checked.ok) throw paramsInvalid(name, checked.issues);
        value = checked.value;
      }
      const call: StepCall = { kind: 'action', name, params: value, ph };
      const problem = this.plainProblem(value, call);
      if (problem) throw paramsNotPlain(name, problem);
      const { i, id, scope } = this.next('action', name, ph);
      call.id = id;
      this.push(i, call, scope);
      return this.outcome(i);
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  sleep(ms: number): Promise<void> {
    try {
      checkDelay('ctx.sleep', ms);
      const { i, scope, rec } = this.next('sleep', '');
      if (rec === undefined)
        this.push(
          i,
          { kind: 'sleep', name: '', ms, at: clockOf(this.root).now() },
          scope,
        );
      return this.outcome(i) as Promise<void>;
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  waitFor(
    match: unknown,
    options: { timeoutMs?: number } | undefined,
  ): Promise<unknown> {
    try {
      const timeoutMs = options?.timeoutMs;
      if (timeoutMs !== undefined)
        checkDelay('ctx.events.waitFor timeoutMs', timeoutMs);
      let types: string[] | undefined;
      let predicate: ((event: WorkflowEvent) => boolean) | undefined;
      if (typeof match === 'function')
        predicate = match as (event: WorkflowEvent) => boolean;
      else {
        types =
          typeof match === 'string'
            ? [match]
            : Array.isArray(match)
              ? [...(match as unknown[]).map(String)]
              : [];
        if (
          types.length === 0 ||
          types.some((t) => t.length === 0 || t.startsWith('xstate.'))
        ) {
          throw new TypeError(
            `ctx.events.waitFor expects an event type, a non-empty array of them or a predicate; got ${JSON.stringify(match)}.`,
          );
        }
      }
      const name = types === undefined ? '(predicate)' : types.join('|');
      const { i, scope, rec } = this.next('wait', name);
      if (rec === undefined) {
        const call: StepCall = { kind: 'wait', name };
        if (types !== undefined) call.types = types;
        if (timeoutMs !== undefined) {
          call.ms = timeoutMs;
          call.at = clockOf(this.root).now();
        }
        this.push(i, call, scope);
      }
      if (predicate !== undefined && rec?.done !== true) {
        this.predicates.set(i, { test: predicate });
        // Announce the wait now, so a take for it comes after it.
        this.flush();
        this.offer(this.snapshot());
      }
      return this.outcome(i);
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  /** The outcome of step `i`: at once when recorded, else when the snapshot shows it. */
  private outcome(i: number): Promise<unknown> {
    const rec = this.snapshot().steps[i];
    if (rec?.done) return settle(rec);
    return new Promise((resolve, reject) =>
      this.waiters.set(i, { resolve, reject }),
    );
  }

  /** Every snapshot: settle the steps it completed, offer the inbox to predicate waits. */
  private onSnapshot(snap: WorkflowSnapshot): void {
    if (this.stopped) return;
    for (const [i, waiter] of this.waiters) {
      const rec = snap.steps[i];
      if (rec?.done) {
        this.waiters.delete(i);
        this.predicates.delete(i);
        settle(rec).then(waiter.resolve, waiter.reject);
      }
    }
    if (this.predicates.size > 0) this.offer(snap);
  }

  /** Tries the inbox against each open predicate wait; a match is taken by a journaled event. */
  private offer(snap: WorkflowSnapshot): void {
    for (const [i, wait] of this.predicates) {
      if (!snap.open.includes(i)) continue;
      for (const entry of snap.inbox) {
        let accepted: boolean;
        try {
          accepted = wait.test(entry.event) === true;
        } catch (error) {
          this.predicates.delete(i);
          this.root.send({ type: TAKE, step: i, error: recordError(error) });
          break;
        }
        if (!accepted) continue;
        // One offer per entry: the take may still be on its way.
        if (wait.offered !== entry.n) {
          wait.offered = entry.n;
          this.root.send({ type: TAKE, step: i, n: entry.n });
        }
        break;
      }
    }
  }

  // --------------------------------------------------------------- batching

  private push(i: number, call: StepCall, scope: string): void {
    if (scope !== '') call.scope = scope;
    const bytes = checkPlainData(call, this.binding.limits).bytes;
    if (
      this.batch.length > 0 &&
      this.batchBytes + bytes + stepsEventOverhead >
        this.binding.limits.bytesMax
    )
      this.flush();
    if (this.batch.length === 0) {
      this.batchFrom = i;
      this.batchBytes = 0;
    }
    this.batch.push(call);
    this.batchBytes += bytes;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    if (this.batch.length === 0 || this.stopped) return;
    const steps = this.batch;
    this.batch = [];
    this.root.send({ type: STEPS, from: this.batchFrom, steps });
  }

  /** A problem that would keep `call` out of the journal, before it takes a step. */
  private plainProblem(
    value: unknown,
    call: StepCall,
  ): PlainDataProblem | undefined {
    // Paths are reported from the value the caller gave; the size counts
    // the whole step as it will be journaled.
    const { problem } = checkPlainData(value, this.binding.limits);
    if (problem) return problem;
    const { bytes } = checkPlainData(call, this.binding.limits);
    if (bytes + stepsEventOverhead > this.binding.limits.bytesMax) {
      return {
        kind: 'too-large',
        path: '$',
        reason: `it takes about ${bytes} bytes and one journaled event holds at most ${this.binding.limits.bytesMax} (eventBytesMax); keep a reference instead of the data.`,
      };
    }
    return undefined;
  }

  // ----------------------------------------------------------------- ending

  private finish(output: unknown): void {
    if (this.stopped || this.failed) return;
    this.flush();
    if (this.scopes.left > 0) {
      this.report(
        finishedEarly(this.replayLength - this.scopes.left, this.replayLength),
      );
      return;
    }
    const { problem } = checkPlainData(output, this.binding.limits);
    if (problem) {
      this.report(
        new EntityError(
          'CONTEXT_NOT_SERIALIZABLE',
          `Workflow "${this.spec.name}" returned a value that cannot be journaled: ${problem.path}: ${problem.reason} Return plain data.`,
          { details: { path: problem.path, kind: problem.kind } },
        ),
      );
      return;
    }
    this.root.send({ type: RETURN, output });
  }

  private finishWithError(error: unknown): void {
    if (this.stopped || error instanceof WorkflowStoppedError) return;
    if (this.failed) return;
    this.flush();
    this.report(error);
  }

  /** Fails the workflow with `error` and throws it into the function. */
  private fail(error: Error): never {
    this.report(error);
    throw error;
  }

  private report(error: unknown): void {
    if (this.failed || this.stopped) return;
    this.failed = error instanceof Error ? error : new Error(String(error));
    const event: ThrowEvent = { type: THROW, error: recordError(error) };
    thrown.set(event, error);
    this.root.send(event);
  }
}

function settle(rec: StepRecord): Promise<unknown> {
  if (rec.error !== undefined) return Promise.reject(rebuildError(rec.error));
  if (rec.kind === 'wait' && rec.timedOut) return Promise.resolve(undefined);
  return Promise.resolve(rec.kind === 'sleep' ? undefined : rec.result);
}

function checkDelay(what: string, ms: unknown): asserts ms is number {
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) {
    throw new TypeError(
      `${what} expects a whole number of ms >= 0; got ${JSON.stringify(ms)}.`,
    );
  }
}

/**
 * A short hash of an action's params (FNV-1a over canonical JSON), kept
 * with its step so a replay that reaches the same action with other params
 * is caught instead of handed another call's result.
 */
export function paramsHash(params: unknown): string {
  const text = canonicalJson(params) ?? 'undefined';
  let h = 0x811c9dc5;
  for (let k = 0; k < text.length; k++) {
    h ^= text.charCodeAt(k);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(36);
}

function canonicalJson(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value))
    return `[${value.map((v) => canonicalJson(v) ?? 'null').join(',')}]`;
  const keys = Object.keys(value).sort();
  const parts: string[] = [];
  for (const key of keys) {
    const v = canonicalJson((value as Record<string, unknown>)[key]);
    if (v !== undefined) parts.push(`${JSON.stringify(key)}:${v}`);
  }
  return `{${parts.join(',')}}`;
}
