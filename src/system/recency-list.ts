/** A node of a {@link RecencyList}: the list's links live on the item itself. */
export interface RecencyNode<T extends RecencyNode<T>> {
  older: T | undefined;
  newer: T | undefined;
}

/**
 * The hosts of a system from least to most recently used, as an intrusive
 * doubly linked list: marking a host used on every send is two pointer
 * moves, where keeping a Map in recency order (delete, then set) costs a
 * hash lookup and leaves a deleted slot behind that the Map later rehashes.
 *
 * Eviction walks it from the least recently used end; the idle sweep walks
 * the same way and stops at the first host active since its cutoff.
 */
export class RecencyList<T extends RecencyNode<T>> {
  /** Least recently used. */
  oldest: T | undefined = undefined;
  /** Most recently used. */
  newest: T | undefined = undefined;

  /** Adds `node` (not in the list) as the most recently used. */
  add(node: T): void {
    node.older = this.newest;
    node.newer = undefined;
    if (this.newest === undefined) this.oldest = node;
    else this.newest.newer = node;
    this.newest = node;
  }

  /** Takes `node` (in the list) out; its own links are cleared. */
  remove(node: T): void {
    const { older, newer } = node;
    if (older === undefined) this.oldest = newer;
    else older.newer = newer;
    if (newer === undefined) this.newest = older;
    else newer.older = older;
    node.older = undefined;
    node.newer = undefined;
  }

  /** Marks `node` the most recently used; a node not in the list stays out. */
  touch(node: T): void {
    if (this.newest === node) return;
    // Not in the list (a host dropped after passivation): nothing to move.
    if (node.newer === undefined) return;
    this.remove(node);
    this.add(node);
  }
}
