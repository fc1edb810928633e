/**
 * CRC-32 (IEEE 802.3, the zlib and PNG polynomial) for record checksums.
 * Node 20.15+ ships `zlib.crc32`, implemented natively; older Node 20
 * releases get a table-driven fallback that produces the same values.
 *
 * @internal Shared with `codec.ts` and tests only.
 */
import * as zlib from 'node:zlib';

type Crc32 = (data: Uint8Array) => number;

const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

let table: Uint32Array | undefined;

/** @internal The portable implementation, exported so tests can compare it with the native one. */
export function crc32Portable(data: Uint8Array): number {
  if (table === undefined) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    crc = (table[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** @internal CRC-32 of `data` as an unsigned 32-bit integer. */
export const crc32: Crc32 =
  typeof native === 'function' ? (data) => native(data) : crc32Portable;
