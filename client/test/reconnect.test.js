// Verifies that a client outlives the engine: when fanout shuts down (1001),
// dies (1006) or hangs (no pong, no handshake), the client reports
// `reconnecting`, retries with backoff, and once the engine answers again it
// restores every subscription, reports how long it was away, and receives
// the next event.

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

test('a hung engine is noticed by the ping, and left until it answers again', async () => {
  const engine = await Engine.start();
  const client = connect(engine.url(), {
    WebSocket,
    backoff,
    pingIntervalMs: 200,
    pongTimeoutMs: 300,
    connectTimeoutMs: 300,
  });
  const seen = record(client);
  try {
    client.subscribe({ course_id: 'PIANO-101' });
    await seen.next('open');
    await seen.next('pong'); // the link is checked while all is well

    engine.freeze(); // TCP stays up; nothing answers
    const lost = await seen.next('reconnecting');
    assert.equal(lost.code, 1006);
    assert.match(lost.reason, /no reply within 300 ms of a ping/);
    // The kernel still accepts TCP for the frozen process, but the
    // handshake never completes: the connect timeout moves on.
    const stuck = await seen.next('reconnecting');
    assert.match(stuck.reason, /no connected message within 300 ms/);

    engine.thaw();
    const back = await seen.next('open');
    assert.ok(back.awayMs >= 300, `awayMs ${back.awayMs}`);
    await engine.produce('booking.created', booking({ course: 'PIANO-101', slots: 8 }));
    assert.equal((await seen.next('availability.updated')).slots_remaining, 8);
  } finally {
    client.close();
    engine.thaw();
    await engine.stop();
  }
});
