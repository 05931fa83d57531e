// Reconnect delays: exponential backoff with full jitter.
//
// Pure functions, used by the client (fanout.js) between reconnect attempts.
// "Full jitter" draws each delay uniformly from [0, min(cap, base * 2^n)], so
// thousands of pages that lost the same engine at the same moment spread
// their reconnects over the whole window instead of arriving in waves.

/** Defaults of the reconnect schedule, in milliseconds. */
export const BACKOFF_DEFAULTS = Object.freeze({
  /** Upper bound of the first retry's delay. */
  baseMs: 500,
  /** No delay is ever longer than this. */
  capMs: 30_000,
  /** A connection open this long resets the schedule to its first step. */
  stableAfterMs: 10_000,
});

/**
 * The window the delay of retry number `attempt` is drawn from.
 *
 * @param {number} attempt 0 for the first retry after a connection was lost.
 * @param {{baseMs: number, capMs: number}} schedule
 * @returns {number} the upper bound in ms: min(capMs, baseMs * 2^attempt).
 */
export function backoffCeiling(attempt, { baseMs, capMs }) {
  // 2 ** attempt overflows to Infinity past 1023; Math.min keeps it at cap.
  return Math.min(capMs, baseMs * 2 ** attempt);
}

/**
 * The delay before retry number `attempt`: uniform in [0, ceiling).
 *
 * @param {number} attempt 0 for the first retry after a connection was lost.
 * @param {{baseMs: number, capMs: number}} schedule
 * @param {() => number} [random] uniform in [0, 1); injectable for tests.
 * @returns {number} whole milliseconds.
 */
export function backoffDelay(attempt, schedule, random = Math.random) {
  return Math.floor(random() * backoffCeiling(attempt, schedule));
}
