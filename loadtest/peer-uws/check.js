#!/usr/bin/env node
// Checks a running peer (server.js) end to end, then runs a rough throughput
// smoke test against it.
//
// Usage: node check.js --port N [--host 127.0.0.1] [--no-bench]
//                      [--subs 1000] [--keys 10] [--events 20000] [--batch 200]
//                      [--rate EVENTS_PER_S] [--server-pid PID]
//
// The bench publishes --events events round-robin over --keys course ids to
// --subs subscribers (subs/keys per key), as fast as it can in batches of
// --batch (default) or paced at --rate events/s, and reports deliveries/s
// and publish-to-read latency sampled on one socket per key. With
// --server-pid it also reports the server's CPU time (from /proc), which
// gives deliveries per server CPU-second: steadier than wall-clock rates on
// a machine shared with other work.
//
// Protocol part: uses the `ws` package (devDependency). Bench part: raw TCP
// sockets with a minimal frame parser for the subscribers, so the client
// spends as little CPU as possible per delivered frame. Pin it, e.g.
//   taskset -c 1 node server.js --port 3019 &
//   taskset -c 0 node check.js --port 3019
// Exit status 0 when every check passed.
'use strict';

const crypto = require('crypto');
const net = require('net');
const assert = require('assert');
const WebSocket = require('ws');

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1', port: null, bench: true, subs: 1000, keys: 10, events: 20000, batch: 200,
    rate: 0, serverPid: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const value = () => (eq > 0 ? a.slice(eq + 1) : argv[++i]);
    switch (name) {
      case '--host': opts.host = value(); break;
      case '--port': opts.port = Number(value()); break;
      case '--no-bench': opts.bench = false; break;
      case '--subs': opts.subs = Number(value()); break;
      case '--keys': opts.keys = Number(value()); break;
      case '--events': opts.events = Number(value()); break;
      case '--batch': opts.batch = Number(value()); break;
      case '--rate': opts.rate = Number(value()); break;
      case '--server-pid': opts.serverPid = Number(value()); break;
      default:
        process.stderr.write(`check: unknown argument ${a}\n`);
        process.exit(2);
    }
  }
  if (!Number.isInteger(opts.port)) {
    process.stderr.write('usage: node check.js --port N [--host H] [--no-bench] '
      + '[--subs 1000] [--keys 10] [--events 20000] [--batch 200] [--rate N] [--server-pid PID]\n');
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const base = `ws://${opts.host}:${opts.port}`;

// ------------------------------------------------------------ ws helpers

// A client whose incoming text frames queue up for next().
function connect(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path);
    const queue = [];
    const waiters = [];
    ws.on('message', (data) => {
      const text = data.toString('utf8');
      if (waiters.length > 0) waiters.shift().resolve(text);
      else queue.push(text);
    });
    ws.on('close', () => { for (const w of waiters.splice(0)) w.reject(new Error('closed')); });
    ws.once('open', () => resolve({
      ws,
      send: (obj) => ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)),
      next: (ms = 2000) => {
        if (queue.length > 0) return Promise.resolve(queue.shift());
        return new Promise((res, rej) => {
          const w = {
            resolve: (t) => { clearTimeout(timer); res(t); },
            reject: (e) => { clearTimeout(timer); rej(e); },
          };
          const timer = setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            rej(new Error(`no message within ${ms} ms`));
          }, ms);
          waiters.push(w);
        });
      },
      pending: () => queue.length,
    }));
    ws.once('error', reject);
  });
}

let passed = 0;
let failed = 0;
async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL - ${name}: ${e.message}`);
  }
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function bookingEvent(course, schedule, extra = {}) {
  return {
    topic: 'booking.created',
    timestamp: '2026-11-23T10:00:00Z',
    event_type: 'booking.created',
    payload: {
      id: 'bk-1',
      action: 'created',
      data: {
        booking_id: 'bk-1', course_id: course, schedule_id: schedule,
        student_id: 'st-9', slots_remaining: 4, ...extra,
      },
    },
  };
}

// --------------------------------------------------------- protocol check

async function protocolCheck() {
  const sub = await connect('/ws/availability');
  const pub = await connect('/publish');

  await step('connected message on open', async () => {
    const m = JSON.parse(await sub.next());
    assert.strictEqual(m.type, 'connected');
    assert.strictEqual(typeof m.clientId, 'string');
    assert.deepStrictEqual(Object.keys(m), ['type', 'clientId']);
  });
  await step('invalid JSON -> invalid_format', async () => {
    sub.send('{not json');
    assert.strictEqual(await sub.next(),
      '{"type":"error","code":"invalid_format","message":"Invalid format"}');
  });
  await step('ping -> pong with ISO timestamp', async () => {
    sub.send({ type: 'ping' });
    const m = JSON.parse(await sub.next());
    assert.strictEqual(m.type, 'pong');
    assert.match(m.timestamp, ISO);
  });
  await step('subscribe course C1', async () => {
    sub.send({ type: 'subscribe', filters: { course_id: 'C1' } });
    assert.strictEqual(await sub.next(), '{"type":"subscribed","filters":{"course_id":["C1"]}}');
  });
  await step('filters accumulate (room array)', async () => {
    sub.send({ type: 'subscribe', filters: { room_id: ['R1', 'R2'] } });
    assert.strictEqual(await sub.next(),
      '{"type":"subscribed","filters":{"course_id":["C1"],"room_id":["R1","R2"]}}');
  });
  await step('unsubscribe by topic', async () => {
    sub.send({ type: 'unsubscribe', topic: 'room_id:R2' });
    assert.strictEqual(await sub.next(),
      '{"type":"unsubscribed","topic":"room_id:R2","filters":{"course_id":["C1"],"room_id":["R1"]}}');
  });
  await step('unsubscribe by filters', async () => {
    sub.send({ type: 'unsubscribe', filters: { room_id: 'R1' } });
    assert.strictEqual(await sub.next(),
      '{"type":"unsubscribed","filters":{"course_id":["C1"]}}');
  });
  await step('unknown filter key -> invalid_filter, nothing changed', async () => {
    sub.send({ type: 'subscribe', filters: { course_id: 'C7', teacher_id: 'T1' } });
    const m = JSON.parse(await sub.next());
    assert.strictEqual(m.type, 'error');
    assert.strictEqual(m.code, 'invalid_filter');
  });
  await step('scope all on public -> forbidden', async () => {
    sub.send({ type: 'subscribe', scope: 'all' });
    const m = JSON.parse(await sub.next());
    assert.strictEqual(m.code, 'forbidden');
  });

  await step('only the C1 event arrives, with the public shape', async () => {
    pub.send(bookingEvent('C2', 'sch-c2'));
    pub.send(bookingEvent('C1', 'sch-c1'));
    // No slots_remaining: the public gets nothing.
    const noSlots = bookingEvent('C1', 'sch-noslots');
    delete noSlots.payload.data.slots_remaining;
    pub.send(noSlots);
    // Fields at the payload and top levels, no envelope timestamp.
    pub.send({
      topic: 'booking.cancelled', course_id: 'C1',
      payload: { schedule_id: 'sch-fence', slots_remaining: 5, data: 'not-an-object' },
    });
    // Frames on one publish socket are handled in order and one socket's
    // deliveries arrive in order, so the fence event closes the window.
    assert.strictEqual(await sub.next(),
      '{"type":"availability.updated","course_id":"C1","schedule_id":"sch-c1",'
      + '"slots_remaining":4,"timestamp":"2026-11-23T10:00:00Z"}');
    const fence = JSON.parse(await sub.next());
    assert.deepStrictEqual(Object.keys(fence),
      ['type', 'course_id', 'schedule_id', 'slots_remaining', 'timestamp']);
    assert.strictEqual(fence.schedule_id, 'sch-fence');
    assert.strictEqual(fence.slots_remaining, 5);
    assert.match(fence.timestamp, ISO);
    await new Promise((r) => setTimeout(r, 100));
    assert.strictEqual(sub.pending(), 0, 'unexpected extra message');
  });

  await step('schedule.updated -> availability.changed with allowlisted summary', async () => {
    pub.send({
      topic: 'schedule.updated', timestamp: '2026-11-23T11:00:00Z',
      payload: { data: { course_id: 'C1', schedule_id: 's9', teacher_email: 'x@example.org', status: 'open' } },
    });
    assert.strictEqual(await sub.next(),
      '{"type":"availability.changed","summary":{"course_id":"C1","schedule_id":"s9","status":"open"},'
      + '"timestamp":"2026-11-23T11:00:00Z"}');
  });

  await step('bare unsubscribe drops every topic', async () => {
    sub.send({ type: 'unsubscribe' });
    assert.strictEqual(await sub.next(), '{"type":"unsubscribed","filters":{}}');
    sub.send({ type: 'subscribe', filters: { course_id: 'C3' } });
    assert.strictEqual(await sub.next(), '{"type":"subscribed","filters":{"course_id":["C3"]}}');
    pub.send(bookingEvent('C1', 'after-unsub'));
    pub.send(bookingEvent('C3', 'c3-fence'));
    assert.strictEqual(JSON.parse(await sub.next()).schedule_id, 'c3-fence');
  });

  // Known difference from fanout (informational, not a failure): uWS topics
  // are independent, so an event matching two of a socket's keys arrives
  // twice; fanout delivers it once.
  await step('note: deliveries of one event matching two keys', async () => {
    sub.send({ type: 'subscribe', filters: { room_id: 'R9' } });
    await sub.next();
    pub.send(bookingEvent('C3', 'two-keys', { room_id: 'R9' }));
    pub.send(bookingEvent('C3', 'fence-2'));
    let copies = 0;
    for (;;) {
      const m = JSON.parse(await sub.next());
      if (m.schedule_id === 'fence-2') break;
      copies++;
    }
    console.log(`#   uWS delivered the two-key event ${copies} time(s); fanout: 1`);
  });

  sub.ws.close();
  pub.ws.close();
}

// -------------------------------------------------------------- raw client

// A subscriber on a raw TCP socket: handshake, one subscribe, then counts
// text frames. `onText(text)` sees every frame's payload while `parse` is
// set (setup, sampled sockets); otherwise frames are only counted.
function rawSubscriber(filters, stats, sample) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(opts.port, opts.host);
    sock.setNoDelay(true);
    const key = crypto.randomBytes(16).toString('base64');
    let upgraded = false;
    let buf = null;
    const sub = { sock, parse: true, subscribed: false, closed: false };
    sock.on('connect', () => {
      sock.write(`GET /ws/availability HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\n`
        + 'Upgrade: websocket\r\nConnection: Upgrade\r\n'
        + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.on('error', (e) => { if (!upgraded) reject(e); });
    sock.on('close', () => { sub.closed = true; if (upgraded) stats.closed++; });
    const onText = (text) => {
      if (!sub.subscribed) {
        const m = JSON.parse(text);
        if (m.type === 'connected') sock.write(maskedText(JSON.stringify({ type: 'subscribe', filters })));
        else if (m.type === 'subscribed') { sub.subscribed = true; sub.parse = sample; resolve(sub); }
        else reject(new Error(`unexpected ${text}`));
        return;
      }
      const sched = JSON.parse(text).schedule_id;
      const sent = BigInt(sched.slice(sched.indexOf(':') + 1));
      stats.latNs.push(Number(process.hrtime.bigint() - sent));
    };
    sock.on('data', (chunk) => {
      buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
      let off = 0;
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        if (!head.startsWith('HTTP/1.1 101')) { reject(new Error(head.split('\r\n')[0])); sock.destroy(); return; }
        upgraded = true;
        off = end + 4;
      }
      // Server frames are unmasked; uWS does not fragment text frames.
      for (;;) {
        if (buf.length - off < 2) break;
        const op = buf[off] & 0x0f;
        let len = buf[off + 1] & 0x7f;
        let hdr = 2;
        if (len === 126) {
          if (buf.length - off < 4) break;
          len = buf.readUInt16BE(off + 2); hdr = 4;
        } else if (len === 127) {
          if (buf.length - off < 10) break;
          len = Number(buf.readBigUInt64BE(off + 2)); hdr = 10;
        }
        if (buf.length - off < hdr + len) break;
        if (op === 1) {
          stats.frames++;
          stats.bytes += len;
          if (sub.parse) onText(buf.toString('utf8', off + hdr, off + hdr + len));
        } else if (op === 9) {
          sock.write(maskedFrame(0x8a, buf.subarray(off + hdr, off + hdr + len)));
        }
        off += hdr + len;
      }
      buf = off === buf.length ? null : buf.subarray(off);
    });
  });
}

function maskedFrame(b0, payload) {
  const len = payload.length;
  const hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hdr + 4 + len);
  out[0] = b0;
  if (hdr === 2) out[1] = 0x80 | len;
  else if (hdr === 4) { out[1] = 0x80 | 126; out.writeUInt16BE(len, 2); } else { out[1] = 0x80 | 127; out.writeBigUInt64BE(BigInt(len), 2); }
  const mask = crypto.randomBytes(4);
  mask.copy(out, hdr);
  for (let i = 0; i < len; i++) out[hdr + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}
function maskedText(text) { return maskedFrame(0x81, Buffer.from(text)); }

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// User + system CPU time of a process, in seconds (Linux /proc; 100 ticks/s).
function procCpuSecs(pid) {
  if (!pid) return null;
  try {
    const stat = require('fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

function envelope(e, keys) {
  return JSON.stringify({
    topic: 'booking.created',
    payload: {
      data: {
        booking_id: `b${e}`, course_id: `C${String(e % keys).padStart(4, '0')}`,
        schedule_id: `${e}:${process.hrtime.bigint()}`, slots_remaining: 4,
      },
    },
  });
}

async function bench() {
  const { subs, keys, events, batch, rate } = opts;
  const stats = { frames: 0, bytes: 0, closed: 0, latNs: [] };
  const perKey = new Array(keys).fill(0);
  const t0 = Date.now();
  const all = [];
  // Connect in waves so the accept backlog never overflows.
  for (let i = 0; i < subs; i += 100) {
    const wave = [];
    for (let j = i; j < Math.min(subs, i + 100); j++) {
      const k = j % keys;
      wave.push(rawSubscriber({ course_id: `C${String(k).padStart(4, '0')}` }, stats, perKey[k] === 0));
      perKey[k]++;
    }
    all.push(...await Promise.all(wave));
  }
  console.log(`# bench: ${subs} subscribers over ${keys} keys connected and subscribed in ${Date.now() - t0} ms`);
  stats.frames = 0;
  stats.bytes = 0;

  let expected = 0;
  for (let e = 0; e < events; e++) expected += perKey[e % keys];
  const pub = await connect('/publish');
  const done = new Promise((resolve) => {
    const poll = setInterval(() => {
      if (stats.frames >= expected || stats.closed > 0) { clearInterval(poll); resolve('done'); }
    }, 2);
  });
  const serverCpu0 = procCpuSecs(opts.serverPid);
  const clientCpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  let sentAll = 0n;
  let e = 0;
  await new Promise((resolve) => {
    const sendSome = () => {
      // Unpaced: a batch per event-loop turn. Paced: catch up to rate * elapsed.
      const due = rate > 0
        ? Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * rate) + 1
        : e + batch;
      const stop = Math.min(events, due);
      for (; e < stop; e++) pub.ws.send(envelope(e, keys));
      if (e >= events) { sentAll = process.hrtime.bigint(); resolve(); }
      else if (rate > 0) setTimeout(sendSome, 1);
      else setImmediate(sendSome);
    };
    sendSome();
  });
  const timeout = new Promise((r) => setTimeout(r, 60000, 'timeout').unref());
  const outcome = await Promise.race([done, timeout]);
  const end = process.hrtime.bigint();
  const serverCpu = procCpuSecs(opts.serverPid);
  const clientCpu = process.cpuUsage(clientCpu0);
  const secs = Number(end - start) / 1e9;
  const sendSecs = Number(sentAll - start) / 1e9;
  const lat = stats.latNs.sort((a, b) => a - b).map((n) => n / 1e6);

  console.log(`# bench: ${events} events published in ${sendSecs.toFixed(3)} s `
    + `(${Math.round(events / sendSecs)} events/s offered${rate > 0 ? `, paced at ${rate}` : ', unpaced'})`);
  console.log(`# bench: ${stats.frames}/${expected} deliveries in ${secs.toFixed(3)} s = `
    + `${Math.round(stats.frames / secs)} deliveries/s, ${(stats.bytes / secs / 1e6).toFixed(1)} MB/s payload, `
    + `${Math.round(events / secs)} events/s end to end`);
  console.log(`# bench: latency (publish send -> subscriber read, ${lat.length} samples from one socket per key) ms: `
    + `p50 ${pct(lat, 50).toFixed(2)} p99 ${pct(lat, 99).toFixed(2)} max ${pct(lat, 100).toFixed(2)}`);
  const clientSecs = (clientCpu.user + clientCpu.system) / 1e6;
  let cpuLine = `# bench: client CPU ${clientSecs.toFixed(2)} s`;
  if (serverCpu !== null && serverCpu0 !== null) {
    const used = serverCpu - serverCpu0;
    cpuLine += `; server CPU ${used.toFixed(2)} s = ${Math.round(stats.frames / used)} deliveries per server CPU-second`;
  }
  console.log(cpuLine);
  await step('bench: every delivery arrived, no subscriber closed', async () => {
    assert.notStrictEqual(outcome, 'timeout', 'timed out after 60 s');
    assert.strictEqual(stats.closed, 0, `${stats.closed} subscribers closed`);
    assert.strictEqual(stats.frames, expected);
  });
  pub.ws.close();
  for (const s of all) s.sock.destroy();
}

(async () => {
  await protocolCheck();
  if (opts.bench) await bench();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
})().catch((e) => {
  console.error(`check: ${e.stack || e}`);
  process.exit(1);
});
