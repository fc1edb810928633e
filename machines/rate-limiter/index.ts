export {
  createRateLimiterMachine,
  rateLimiterDefaults,
} from './rate-limiter-machine.js';
export type {
  RateLimitAnswer,
  RateLimitDecision,
  RateLimiterContext,
  RateLimiterMachineOptions,
  RateLimitRejection,
  RateLimitRequest,
} from './rate-limiter-machine.js';
export type { Bucket } from './token-bucket.js';
