// Verifies the subscription bookkeeping on its own (no server): which
// message brings a connection to the wanted set, one at a time, and what a
// refusal or a new connection does to it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Subscriptions } from '../src/subscriptions.js';

/** Plays the server: applies `message` to `held` and returns the echo. */
function answer(subs, message, held) {
  const echo = structuredClone(held);
  if (message.type === 'subscribe') {
    for (const [key, values] of Object.entries(message.filters ?? {})) {
      echo.filters[key] = [...new Set([...(echo.filters[key] ?? []), ...values])];
    }
    if (message.scope) echo.scope = 'all';
  } else if (message.filters) {
    for (const [key, values] of Object.entries(message.filters)) {
      echo.filters[key] = (echo.filters[key] ?? []).filter((v) => !values.includes(v));
      if (echo.filters[key].length === 0) delete echo.filters[key];
    }
  } else if (message.topic === 'scope:all') {
    delete echo.scope;
  } else {
    echo.filters = {};
    delete echo.scope;
  }
  subs.confirm(echo);
  return echo;
}

test('changes made while a message is in flight go out together in the next one', () => {
  const subs = new Subscriptions();
  subs.add({ course_id: 'A' });
  const first = subs.next();
  assert.deepEqual(first, { type: 'subscribe', filters: { course_id: ['A'] } });
  subs.add({ course_id: 'B' });
  subs.add({ room_id: ['R1', 'R2'] });
  assert.equal(subs.next(), null, 'one message in flight at a time');
  const held = answer(subs, first, { filters: {} });
  assert.deepEqual(subs.next(), { type: 'subscribe', filters: { course_id: ['B'], room_id: ['R1', 'R2'] } });
  answer(subs, { type: 'subscribe', filters: { course_id: ['B'], room_id: ['R1', 'R2'] } }, held);
  assert.equal(subs.next(), null, 'nothing left to do');
});

test('removals go before additions, and removing everything is one message', () => {
  const subs = new Subscriptions();
  subs.add({ course_id: ['A', 'B'] });
  let held = answer(subs, subs.next(), { filters: {} });
  subs.remove({ course_id: 'A' });
  subs.add({ session_id: 'S1' });
  const removal = subs.next();
  assert.deepEqual(removal, { type: 'unsubscribe', filters: { course_id: ['A'] } });
  held = answer(subs, removal, held);
  assert.deepEqual(subs.next(), { type: 'subscribe', filters: { session_id: ['S1'] } });
  held = answer(subs, { type: 'subscribe', filters: { session_id: ['S1'] } }, held);
  subs.clear();
  assert.deepEqual(subs.next(), { type: 'unsubscribe' });
});

test('the admin scope travels on its own, so refusing it spares the filters', () => {
  const subs = new Subscriptions();
  subs.add({ course_id: 'A' });
  subs.setAll(true);
  const held = answer(subs, subs.next(), { filters: {} });
  assert.deepEqual(subs.next(), { type: 'subscribe', scope: 'all' });
  subs.reject(); // `forbidden` on a public connection
  assert.deepEqual(subs.snapshot(), { filters: { course_id: ['A'] }, all: false });
  assert.equal(subs.next(), null);
  assert.deepEqual(held.filters, { course_id: ['A'] });
});

test('a new connection restores the whole wanted set in one message', () => {
  const subs = new Subscriptions();
  subs.add({ course_id: ['A', 'B'], room_id: 'R1' });
  answer(subs, subs.next(), { filters: {} });
  assert.equal(subs.next(), null);
  subs.reset();
  assert.deepEqual(subs.next(), { type: 'subscribe', filters: { course_id: ['A', 'B'], room_id: ['R1'] } });
});

test('a refused subscribe leaves the wanted set, so it is not sent again', () => {
  const subs = new Subscriptions();
  subs.add({ course_id: 'A'.repeat(500) }); // over the server's value limit
  assert.ok(subs.next());
  subs.reject(); // `invalid_filter`
  assert.deepEqual(subs.snapshot(), { filters: {}, all: false });
  subs.reset();
  assert.equal(subs.next(), null);
});

test('a message dropped by the rate limit is sent again', () => {
  const subs = new Subscriptions();
  subs.add({ course_id: 'A' });
  const message = subs.next();
  subs.forget();
  assert.deepEqual(subs.next(), message);
});

test('topics name one filter or the scope', () => {
  const subs = new Subscriptions();
  subs.add({ course_id: ['A', 'B'] });
  subs.setAll(true);
  subs.removeTopic('course_id:A');
  subs.removeTopic('scope:all');
  assert.deepEqual(subs.snapshot(), { filters: { course_id: ['B'] }, all: false });
  assert.throws(() => subs.removeTopic('A'), TypeError);
  assert.throws(() => subs.removeTopic('teacher:x'), TypeError);
});
