// Verifies the demo page in a real browser (Debian's headless Chromium,
// driven by playwright-core): the board fills from the booking desk and
// updates in place as bookings go through Kafka and fanout; the admin view
// (session cookie from /login, checked in a real redis-server) shows full
// events; when the engine stops the page says it is reconnecting, and when
// it is back the page resubscribes, refetches what it missed and shows the
// next event. fanout runs with --allowed-origins set to the page's own
// origin. Saves a screenshot ($FANOUT_SCREENSHOT, else in the temp dir).

import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { BookingDesk } from '../../demo/desk.js';
import { startDemoServer } from '../../demo/server.js';
import { Engine, RedisServer, freePort } from '../harness.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = process.env.FANOUT_SCREENSHOT ?? join(tmpdir(), 'fanout-demo-screenshot.png');
/** Long enough for the client's backoff (base 500 ms, doubling) to find a restarted engine. */
const RECONNECT_PATIENCE_MS = 20_000;
const ADMIN_SESSION = 'browser-test-admin';

let redis;
let engine;
let site;
let browser;
/** A desk with a fixed sequence of random numbers, so runs look alike. */
const desk = new BookingDesk({ random: seeded(11) });

before(async () => {
  redis = await RedisServer.start();
  redis.command('SET', `session:${ADMIN_SESSION}`, '{"user_id":"u-admin","role":"admin"}');
  const enginePort = await freePort();
  site = await startDemoServer({ port: 0, engineUrl: `ws://127.0.0.1:${enginePort}`, desk, session: ADMIN_SESSION });
  engine = await Engine.start({
    port: enginePort,
    args: ['--allowed-origins', site.url, '--redis-url', redis.url],
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // As root on a machine without outside network: no sandbox, no GPU, and
    // none of Chromium's own background connections. playwright gives each
    // launch a fresh, empty profile directory of its own.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await site?.close();
  await engine?.stop();
  await redis?.stop();
});

/** Books or cancels through the desk and publishes the envelope, as the booking service would. */
async function publish(change) {
  assert.ok(change, 'the desk had a seat to book or cancel');
  await engine.produce(change.topic, change.value);
  return change.value.payload.data;
}

test('the board updates live, reconnects after an engine restart, and shows the next event', async () => {
  const page = await browser.newPage({ viewport: { width: 1180, height: 760 } });
  const problems = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (message) => {
    // Chromium logs each refused reconnect attempt; those are expected.
    if (message.type() === 'error' && !/WebSocket connection to .* failed/.test(message.text())) problems.push(message.text());
  });
  const row = (scheduleId) => page.locator(`[data-schedule="${scheduleId}"]`);
  const slotsShown = async (scheduleId) => Number(await row(scheduleId).getAttribute('data-slots'));
  const waitSlots = (scheduleId, slots, timeout = 10_000) =>
    page.waitForSelector(`[data-schedule="${scheduleId}"][data-slots="${slots}"]`, { timeout });

  // /login sets the admin's HttpOnly session cookie and redirects to the board.
  await page.goto(`${site.url}/login`);
  await page.waitForSelector('#public-state[data-state="open"]');
  await page.waitForSelector('#admin-state[data-state="open"]');
  assert.equal(await page.locator('article.course').count(), desk.courseIds.length);
  const start = await slotsShown('piano-101-1');
  assert.equal(start, desk.snapshot().courses[0].schedules[0].slots_remaining);

  // A booking travels desk -> Kafka -> fanout -> page, and lands in its row.
  const booked = await publish(desk.book('piano-101-1', 'st-ada'));
  assert.equal(booked.slots_remaining, start - 1);
  await waitSlots('piano-101-1', start - 1);
  await page.waitForSelector(`#feed li:has-text("${booked.booking_id}")`);
  assert.match(await page.locator('#feed li').first().textContent(), /booking\.created.*st-ada/,
    'the admin feed shows the full event, personal fields included');
  // A cancellation elsewhere updates that row only.
  const violin = await slotsShown('violin-301-2');
  await publish(desk.cancel('violin-301-2'));
  await waitSlots('violin-301-2', violin + 1);
  assert.equal(await slotsShown('piano-101-1'), start - 1);

  // The engine goes away: the page says so, for the public and admin views.
  await engine.stop();
  await page.waitForSelector('#public-state[data-state="reconnecting"]');
  await page.waitForSelector('#admin-state[data-state="reconnecting"]');
  assert.match(await page.locator('#public-state').textContent(), /reconnecting \(attempt \d+/);

  // Business goes on while the engine is down; nobody hears of it live.
  const missed = desk.book('guitar-201-1');
  assert.ok(missed);

  await engine.startAgain();
  await page.waitForSelector('#public-state[data-state="open"]', { timeout: RECONNECT_PATIENCE_MS });
  await page.waitForSelector('#admin-state[data-state="open"]', { timeout: RECONNECT_PATIENCE_MS });
  // The page refetched on reconnect, so it shows the booking it missed.
  await waitSlots('guitar-201-1', missed.value.payload.data.slots_remaining);
  assert.match(await page.locator('#public-note').textContent(), /Reconnected after \d+\.\d s away/);

  // Resubscribed: the next event reaches the page live.
  const next = await publish(desk.book('piano-101-1', 'st-bo'));
  await waitSlots('piano-101-1', next.slots_remaining);
  await page.waitForSelector(`#feed li:has-text("${next.booking_id}")`);

  // A few more changes so the picture shows a board in motion.
  for (const scheduleId of ['voice-110-1', 'piano-101-3', 'violin-301-1']) {
    const change = await publish(desk.book(scheduleId));
    await waitSlots(scheduleId, change.slots_remaining);
  }
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`screenshot: ${SCREENSHOT}`);
  assert.deepEqual(problems, []);
});

/** A linear congruential generator: the same numbers every run, so runs look alike. */
function seeded(seed) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}
