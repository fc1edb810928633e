/**
 * The codec area: plain-data checks, msgpack encoding and decoding for
 * untrusted bytes, and the envelope and record framings built on them.
 */
export {
  ENVELOPE_VERSION,
  decode,
  decodeEnvelope,
  decodeRecord,
  defaultDecodeLimits,
  encode,
  encodeEnvelope,
  encodeRecord,
  type DecodeLimits,
} from './codec.js';
export {
  checkPlainData,
  type PlainDataLimits,
  type PlainDataProblem,
} from './plain-data.js';
