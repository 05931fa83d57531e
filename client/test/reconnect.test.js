// Verifies that a client outlives the engine: when fanout shuts down (1001)
// or dies (1006), the client reports `reconnecting`, retries with backoff,
// and once the engine is back on the same port it restores every
// subscription, reports how long it was away, and receives the next event.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { connect } from '../src/fanout.js';
import { Engine, booking, record } from './harness.js';

/** Fast retries: the engine is back within a couple of seconds. */
const backoff = { baseMs: 100, capMs: 400 };

async function survivesRestart(signal, expectedCode) {
  const engine = await Engine.start();
  const client = connect(engine.url(), { WebSocket, backoff });
  const seen = record(client);
  try {
    client.subscribe({ course_id: 'PIANO-101', room_id: 'R2' });
    client.subscribe('all');
    await seen.next('error', (e) => e.code === 'forbidden'); // public: scope all is refused, and dropped
    await seen.next('open');
    await engine.produce('booking.created', booking({ course: 'PIANO-101', slots: 5 }));
    assert.equal((await seen.next('availability.updated')).slots_remaining, 5);

    const stoppedAt = Date.now();
    const restarted = engine.restart(signal);
    const lost = await seen.next('reconnecting');
    assert.equal(lost.code, expectedCode);
    await restarted;

    const back = await seen.next('open');
    assert.ok(back.awayMs > 0 && back.awayMs <= Date.now() - stoppedAt + 50, `awayMs ${back.awayMs}`);
    const restore = seen.all('subscribed').at(-1);
    assert.deepEqual(restore.filters, { course_id: ['PIANO-101'], room_id: ['R2'] });
    assert.equal(restore.scope, undefined);

    await engine.produce('booking.cancelled', booking({ topic: 'booking.cancelled', course: 'PIANO-101', slots: 6 }));
    assert.equal((await seen.next('availability.updated')).slots_remaining, 6);
    // Routed by room too: the restore covered every key.
    await engine.produce('booking.created', { topic: 'booking.created', payload: { data: { room_id: 'R2', slots_remaining: 7 } } });
    assert.equal((await seen.next('availability.updated')).slots_remaining, 7);
  } finally {
    client.close();
    await engine.stop();
  }
}

test('after a graceful shutdown (1001) the client comes back with its subscriptions', async () => {
  await survivesRestart('SIGTERM', 1001);
});

test('after the engine dies (1006) the client comes back with its subscriptions', async () => {
  await survivesRestart('SIGKILL', 1006);
});
