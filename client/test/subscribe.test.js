// Verifies that a client subscribed through a real fanout receives the
// events its filters match, and only those, as produced into Kafka; that
// unsubscribing stops them; that each SPEC §6 public message reaches its
// handler; and that refusals come back as `error` events without breaking
// the connection.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WebSocket } from 'ws';
import { connect } from '../src/fanout.js';
import { Engine, booking, record } from './harness.js';

let engine;
before(async () => {
  engine = await Engine.start();
});
after(async () => {
  await engine?.stop();
});

/** A client on the engine, recorded, once its subscriptions are in place. */
async function openClient(filters) {
  const client = connect(engine.url(), { WebSocket });
  const seen = record(client);
  if (filters) client.subscribe(filters);
  const open = await seen.next('open');
  return { client, seen, open };
}

test('a subscribed client receives the availability of its course, and no other', async () => {
  const { client, seen, open } = await openClient({ course_id: 'PIANO-101' });
  assert.equal(open.awayMs, null, 'first connection: nothing was missed');
  assert.match(open.clientId, /\S/);
  assert.deepEqual(seen.events.map((e) => e.type).slice(0, 4), ['connecting', 'connected', 'subscribed', 'open']);
  assert.deepEqual(seen.all('subscribed')[0].filters, { course_id: ['PIANO-101'] });

  await engine.produce('booking.created', booking({ course: 'GUITAR-200', slots: 9 }));
  await engine.produce('booking.created', booking({ course: 'PIANO-101', schedule: 'sch-7', slots: 4 }));
  const update = await seen.next('availability.updated');
  assert.equal(update.course_id, 'PIANO-101');
  assert.equal(update.schedule_id, 'sch-7');
  assert.equal(update.slots_remaining, 4);
  assert.equal(update.student_id, undefined, 'public messages carry no personal fields');
  assert.equal(seen.all('availability.updated').length, 1, 'GUITAR-200 was not subscribed');
  client.close();
});

test('schedule events arrive as availability.changed summaries', async () => {
  const { client, seen } = await openClient({ course_id: 'PIANO-101' });
  await engine.produce('schedule.updated', {
    topic: 'schedule.updated',
    timestamp: '2026-11-23T10:00:00Z',
    payload: { data: { id: 'sch-7', course_id: 'PIANO-101', status: 'moved', start_time: '2026-11-24T09:00:00Z', teacher_notes: 'private' } },
  });
  const changed = await seen.next('availability.changed');
  assert.deepEqual(changed.summary, { id: 'sch-7', course_id: 'PIANO-101', status: 'moved', start_time: '2026-11-24T09:00:00Z' });
  client.close();
});

test('unsubscribing one course stops its events and keeps the others', async () => {
  const { client, seen } = await openClient({ course_id: ['PIANO-101', 'VIOLIN-300'] });
  client.unsubscribe('course_id:PIANO-101');
  const reply = await seen.next('unsubscribed');
  assert.deepEqual(reply.filters, { course_id: ['VIOLIN-300'] });
  assert.deepEqual(client.subscriptions, { filters: { course_id: ['VIOLIN-300'] }, all: false });

  // Per connection, messages keep Kafka's order: VIOLIN-300's event arriving
  // first shows the PIANO-101 one, produced before it, was not delivered.
  await engine.produce('booking.created', booking({ course: 'PIANO-101', slots: 1 }));
  await engine.produce('booking.cancelled', booking({ topic: 'booking.cancelled', course: 'VIOLIN-300', slots: 2 }));
  const update = await seen.next('availability.updated');
  assert.equal(update.course_id, 'VIOLIN-300');

  client.unsubscribe();
  assert.deepEqual((await seen.next('unsubscribed')).filters, {});
  client.close();
});

test('subscribe calls made before the socket opens are all restored in one message', async () => {
  const client = connect(engine.url(), { WebSocket });
  const seen = record(client);
  client.subscribe({ course_id: 'A' });
  client.subscribe({ room_id: ['R1', 'R2'] });
  client.subscribe({ session_id: 'S9', course_id: 'B' });
  await seen.next('open');
  const replies = seen.all('subscribed');
  assert.equal(replies.length, 1);
  assert.deepEqual(replies[0].filters, { course_id: ['A', 'B'], room_id: ['R1', 'R2'], session_id: ['S9'] });
  client.close();
});

test('mistakes the server would refuse throw at the call', async () => {
  const { client } = await openClient();
  assert.throws(() => client.subscribe({ teacher: 'x' }), TypeError);
  assert.throws(() => client.subscribe({ course_id: '' }), TypeError);
  assert.throws(() => client.subscribe({ course_id: [1] }), TypeError);
  assert.throws(() => client.subscribe('everything'), TypeError);
  assert.throws(() => client.unsubscribe('PIANO-101'), TypeError);
  client.close();
});

test('a refused subscribe is reported and dropped; the connection serves on', async () => {
  const { client, seen } = await openClient({ course_id: 'PIANO-101' });
  client.subscribe('all'); // admins only: a public connection gets `forbidden`
  const error = await seen.next('error');
  assert.equal(error.code, 'forbidden');
  assert.equal(client.subscriptions.all, false, 'not restored on the next reconnect');
  assert.equal(client.state, 'open');

  await engine.produce('booking.created', booking({ course: 'PIANO-101', slots: 3 }));
  assert.equal((await seen.next('availability.updated')).slots_remaining, 3);
  client.close();
});

test('close() stops for good and says so', async () => {
  const { client, seen } = await openClient({ course_id: 'PIANO-101' });
  client.close();
  const closed = await seen.next('closed');
  assert.equal(closed.code, 1000);
  assert.equal(client.state, 'closed');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(seen.all('reconnecting').length, 0);
});

test('without a WebSocket constructor the client says what to pass', () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = undefined; // as in Node 20 without --experimental-websocket
  try {
    assert.throws(() => connect(engine.url()), /pass options\.WebSocket/);
  } finally {
    globalThis.WebSocket = saved;
  }
});
