/**
 * The dedupe window of one entity: the ids of the events it applied most
 * recently, checked on every send that carries an id.
 *
 * Comparing the new id against each remembered id string loads every one of
 * them (each a separate object, rarely in cache) and compares characters:
 * that scan was about 3% of a send. The window therefore keeps a small hash
 * beside each id, interleaved in one array `[hash, id, hash, id, ...]`,
 * oldest first: a miss reads only the array, and an id string is loaded
 * only when its hash matches. One array, as before, so a live entity's heap
 * stays the same; the snapshot keeps the plain `eventIds: string[]` format.
 */

/** `[hash0, id0, hash1, id1, ...]`, oldest first. */
export type EventIdWindow = (number | string)[];

/**
 * A 30-bit string hash (a small integer in V8, so the array stays compact).
 * Ids are at most 256 characters (checkEventId), so this stays cheap; a
 * send computes it once for the check and the remembering.
 */
export function hashEventId(id: string): number {
  let h = id.length;
  for (let i = 0; i < id.length; i++) h = (Math.imul(h, 31) + id.charCodeAt(i)) | 0;
  return h & 0x3fffffff;
}

/*
 * Arrays here are created at their exact size where possible: one grown by
 * push() from empty reserves 17 or more slots, and an entity that has seen
 * one event would carry the spare ones for as long as it lives.
 */

/** Builds a window from stored ids (oldest first), keeping the last `max`. */
export function toEventIdWindow(ids: readonly string[], max: number): EventIdWindow {
  const start = Math.max(0, ids.length - max);
  const window: EventIdWindow = new Array<number | string>(2 * (ids.length - start));
  for (let i = start, j = 0; i < ids.length; i++, j += 2) {
    window[j] = hashEventId(ids[i]!);
    window[j + 1] = ids[i]!;
  }
  return window;
}

/** The ids of a window, oldest first (the snapshot format). */
export function eventIdsOf(window: EventIdWindow): string[] {
  const ids = new Array<string>(window.length >> 1);
  for (let i = 1, j = 0; i < window.length; i += 2, j++) ids[j] = window[i] as string;
  return ids;
}

/** Whether `id` (whose hashEventId is `h`) is in the window. */
export function hasEventId(window: EventIdWindow, id: string, h: number): boolean {
  for (let i = 0; i < window.length; i += 2) {
    if (window[i] === h && window[i + 1] === id) return true;
  }
  return false;
}

/**
 * Remembers `id` (whose hashEventId is `h`) as the newest; the oldest falls
 * out past `max` ids. Returns the window, a new array when it was empty.
 */
export function rememberEventId(window: EventIdWindow, id: string, h: number, max: number): EventIdWindow {
  if (window.length === 0) return [h, id];
  window.push(h, id);
  if (window.length > 2 * max) {
    window.shift();
    window.shift();
  }
  return window;
}
