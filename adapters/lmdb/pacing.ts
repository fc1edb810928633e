/**
 * When to hand the lmdb adapter's next batch to lmdb-js: at once, so that
 * two groups of callers take turns on the disk, or after the batch being
 * committed has been answered, so that all callers share one commit.
 *
 * Callers answered by a commit run (the engine applies their next events)
 * before they write again. If that takes longer than a commit, the disk
 * would sit idle meanwhile: two groups that alternate do better, one running
 * while the other's commit is on disk, at two commits per round of all
 * callers. If a commit takes longer (a slow or busy disk), two commits per
 * round cost more than the idle time they save, and one group is better.
 * So the pacer measures both, per caller, and picks the cheaper: with `n`
 * callers, two groups pay off when `n` callers run longer than a commit.
 */

/** Weight of a new sample in the running estimates. */
const WEIGHT = 0.2;

export class CommitPacer {
  /** A commit's own duration (excluding waiting for the one before). */
  private commitMs = 0;
  /** How long one answered caller runs before its next write arrives. */
  private runMsPerOp = 0;
  private lastDecidedAt = 0;
  /** When the disk went idle with nothing to write, and for how many callers. */
  private idleSince: number | undefined;
  private idleOps = 0;

  /**
   * Whether `ops` callers (the writes of a round, in one or two batches)
   * are better served by two alternating groups than by one.
   */
  twoGroups(ops: number): boolean {
    return this.runMsPerOp * ops > this.commitMs;
  }

  /** A batch is handed to lmdb-js at `now`. */
  handedOver(now: number): void {
    if (this.idleSince !== undefined && this.idleOps > 0) {
      this.runMsPerOp = mix(
        this.runMsPerOp,
        (now - this.idleSince) / this.idleOps,
      );
    }
    this.idleSince = undefined;
  }

  /**
   * The commit of a batch of `ops` writes, handed over at `handedAt`, is
   * known at `now`; `idle` when nothing else is committing or waiting.
   */
  decided(handedAt: number, now: number, ops: number, idle: boolean): void {
    // A batch queued behind another started its commit when that one ended.
    this.commitMs = mix(this.commitMs, now - Math.max(handedAt, this.lastDecidedAt));
    this.lastDecidedAt = now;
    if (idle) {
      this.idleSince = now;
      this.idleOps = ops;
    }
  }
}

function mix(estimate: number, sample: number): number {
  return estimate === 0 ? sample : estimate + WEIGHT * (sample - estimate);
}
