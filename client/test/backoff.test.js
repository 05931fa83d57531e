// Verifies the reconnect schedule: exponential ceilings up to the cap, full
// jitter inside them, and that a client retrying a refused port waits
// within those bounds between attempts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { BACKOFF_DEFAULTS, backoffCeiling, backoffDelay, connect } from '../src/fanout.js';
import { freePort, record } from './harness.js';

const schedule = { baseMs: 100, capMs: 1000 };

test('ceilings double from base and stop at the cap', () => {
  const ceilings = [0, 1, 2, 3, 4, 5, 60, 2000].map((attempt) => backoffCeiling(attempt, schedule));
  assert.deepEqual(ceilings, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
});

test('delays stay inside [0, ceiling) for every draw', () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = backoffCeiling(attempt, schedule);
    assert.equal(backoffDelay(attempt, schedule, () => 0), 0);
    assert.equal(backoffDelay(attempt, schedule, () => 0.999999), ceiling - 1);
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(attempt, schedule);
      assert.ok(Number.isInteger(delay) && delay >= 0 && delay < ceiling, `attempt ${attempt}: ${delay}`);
    }
  }
});

test('full jitter spreads delays over the whole window', () => {
  // 1000 draws in [0, 1000): each tenth of the window gets some (the chance
  // that one stays empty is about 10 * 0.9^1000, i.e. never).
  const tenths = new Set();
  for (let i = 0; i < 1000; i++) tenths.add(Math.floor(backoffDelay(20, schedule) / 100));
  assert.equal(tenths.size, 10);
});

test('defaults are sensible: a fast first retry, a cap of seconds, not minutes', () => {
  assert.ok(BACKOFF_DEFAULTS.baseMs > 0 && BACKOFF_DEFAULTS.baseMs <= 1000);
  assert.ok(BACKOFF_DEFAULTS.capMs >= 5000 && BACKOFF_DEFAULTS.capMs <= 60_000);
  assert.ok(BACKOFF_DEFAULTS.stableAfterMs >= BACKOFF_DEFAULTS.baseMs);
});

test('a client retrying a refused port waits within the schedule each time', async () => {
  const port = await freePort(); // nothing listens there: every attempt fails (1006)
  const client = connect(`ws://127.0.0.1:${port}/ws/availability`, {
    WebSocket,
    backoff: { baseMs: 20, capMs: 160 },
  });
  const seen = record(client);
  const waits = [];
  let last = Date.now();
  for (let attempt = 1; attempt <= 7; attempt++) {
    const event = await seen.next('reconnecting');
    const now = Date.now();
    waits.push(now - last);
    last = now;
    assert.equal(event.attempt, attempt);
    assert.equal(event.code, 1006);
    const ceiling = backoffCeiling(attempt - 1, { baseMs: 20, capMs: 160 });
    assert.ok(event.delayMs >= 0 && event.delayMs < ceiling, `attempt ${attempt}: ${event.delayMs} ms >= ${ceiling}`);
  }
  client.close();
  assert.equal(client.state, 'closed');
  // The client did wait: seven retries cannot be faster than their drawn delays.
  const drawn = seen.all('reconnecting').slice(0, 6).reduce((sum, event) => sum + event.delayMs, 0);
  assert.ok(waits.slice(1).reduce((a, b) => a + b, 0) >= drawn - 5 * 6, `waited ${waits} for ${drawn} ms of delays`);
});
