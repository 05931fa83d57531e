// Verifies that a close the server means as final is final: an admin whose
// session is deleted in Redis is closed with 4001 at the next re-check, and
// the client reports `closed` with the reason and never connects again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '../src/fanout.js';
import { Engine, RedisServer, booking, record, webSocketWithCookie } from './harness.js';

let redis;
let engine;
before(async () => {
  redis = await RedisServer.start();
  engine = await Engine.start({ args: ['--redis-url', redis.url, '--session-recheck-interval', '200ms'] });
});
after(async () => {
  await engine?.stop();
  await redis?.stop();
});

test('an admin whose session is deleted is closed with 4001 and does not retry', async () => {
  redis.command('SET', 'session:doomed', '{"user_id":"u1","role":"admin"}');
  const AdminWebSocket = webSocketWithCookie('session_id=doomed');
  let sockets = 0;
  const Counting = class extends AdminWebSocket {
    constructor(url) {
      super(url);
      sockets += 1;
    }
  };
  const client = connect(engine.url('/ws'), { WebSocket: Counting, backoff: { baseMs: 10, capMs: 50 } });
  const seen = record(client);
  client.subscribe('all');
  const open = await seen.next('open');
  assert.equal(open.role, 'admin');

  // Admins get the full event, personal fields included.
  await engine.produce('booking.created', booking({ course: 'PIANO-101', slots: 4, id: 'bk-admin' }));
  const full = await seen.next('booking.created');
  assert.equal(full.booking.student_id, 'st-9');

  redis.command('DEL', 'session:doomed');
  const closed = await seen.next('closed');
  assert.equal(closed.code, 4001);
  assert.match(closed.reason, /session/);
  assert.equal(client.state, 'closed');

  // Retries would come within 50 ms; give them ten times that.
  await sleep(500);
  assert.equal(sockets, 1, 'no new connection after 4001');
  assert.equal(seen.all('reconnecting').length, 0);
  assert.equal(seen.all('closed').length, 1);
});

test('an admin without a valid session is refused at the handshake and keeps retrying', async () => {
  // 401 before the upgrade: a browser sees only 1006, like a lost link, so
  // the client cannot tell and retries with backoff (SPEC §2).
  const client = connect(engine.url('/ws'), {
    WebSocket: webSocketWithCookie('session_id=nobody'),
    backoff: { baseMs: 10, capMs: 50 },
  });
  const seen = record(client);
  const first = await seen.next('reconnecting');
  assert.equal(first.code, 1006);
  await seen.next('reconnecting', (e) => e.attempt === 3);
  client.close();
  assert.equal((await seen.next('closed')).code, 1000);
});
