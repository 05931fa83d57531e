#!/usr/bin/env node
// Benchmark peer: uWebSockets.js speaking fanout's public WebSocket protocol,
// fed from Kafka the way a Node team would feed it.
//
// Usage: node server.js [--port 3019] [--host 127.0.0.1]
//                       [--kafka-brokers HOST:PORT[,...]] [--topics booking.created[,...]]
//                       [--group-id peer-uws] [--max-wait-ms 10]
//
// Endpoints (one port):
//   /ws/availability  public WebSocket, SPEC §3/§4 (connected, subscribe,
//                     unsubscribe, ping, errors). No admin path, no Origin
//                     check (fanout accepts every origin when
//                     --allowed-origins is unset), no per-client rate limit.
//   /publish          WebSocket for the load generator: each text frame is one
//                     event envelope exactly as fanout gets it from Kafka
//                     (the socket-fed mode of the older benchmark rows).
//   /healthz          200 "ok".
//   /readyz           200 once the Kafka consumer has joined its group and
//                     finished a fetch after the join (so the start offsets of
//                     every assigned partition are resolved and nothing
//                     produced from then on is missed); 503 before that and
//                     during a rebalance. Without --kafka-brokers always 200.
//
// With --kafka-brokers the peer consumes --topics with kafkajs (pure JS):
// eachBatch takes a whole fetched batch and publishes every event of it in
// one synchronous pass; uWS buffers pub/sub messages per subscriber and writes
// them out once per event-loop iteration (its TopicTree is drained from the
// loop's pre and post handlers), so a batch costs each socket one write.
// --max-wait-ms is kafkajs's maxWaitTimeInMs, the counterpart of fanout's
// fetch.wait.max.ms (default 10 in both). A new group starts at the end of
// each partition (live notifications, as fanout).
//
// Prints "peer-uws listening on HOST:PORT" when listening (readiness is
// /readyz); SIGINT/SIGTERM close the listener, send close 1001 to every
// client, leave the consumer group (at most 2 s) and exit 0.
'use strict';

const uWS = require('uwebsockets');

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1', port: 3019, kafkaBrokers: null, topics: ['booking.created'],
    groupId: 'peer-uws', maxWaitMs: 10,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const value = () => (eq > 0 ? a.slice(eq + 1) : argv[++i]);
    if (name === '--port') opts.port = Number(value());
    else if (name === '--host') opts.host = value();
    else if (name === '--kafka-brokers') opts.kafkaBrokers = value().split(',');
    else if (name === '--topics') opts.topics = value().split(',');
    else if (name === '--group-id') opts.groupId = value();
    else if (name === '--max-wait-ms') opts.maxWaitMs = Number(value());
    else if (name === '-h' || name === '--help') {
      process.stdout.write('usage: node server.js [--port 3019] [--host 127.0.0.1] '
        + '[--kafka-brokers HOST:PORT[,...]] [--topics T[,...]] [--group-id G] [--max-wait-ms 10]\n');
      process.exit(0);
    } else {
      process.stderr.write(`peer-uws: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    process.stderr.write('peer-uws: --port must be 0..65535\n');
    process.exit(2);
  }
  if (!Number.isInteger(opts.maxWaitMs) || opts.maxWaitMs < 0) {
    process.stderr.write('peer-uws: --max-wait-ms must be a non-negative integer\n');
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// ------------------------------------------------------------------ protocol

const ROUTING_KEYS = ['course_id', 'room_id', 'session_id'];
const MAX_FILTERS = 256; // SPEC --max-filters default
const MAX_MESSAGE_BYTES = 64 * 1024; // SPEC --max-message-bytes default
const MAX_PENDING_BYTES = 1024 * 1024; // SPEC --max-pending-bytes default
// SPEC §3: ping every 30 s, close 10 s later without an answer. uWS has one
// knob, idleTimeout: with sendPingsAutomatically it pings a socket 16 s
// before idleTimeout runs out (timer granularity 4 s) and closes it without
// a close frame if it stays silent until the end. 44 gives a ping after
// ~25-28 s of silence and closes a dead peer after ~40-44 s (fanout: 30 + 10).
const IDLE_TIMEOUT_S = 44;
// SPEC §6 allowlist: the only fields a public message may carry.
const PUBLIC_FIELDS = [
  'id', 'booking_id', 'course_id', 'room_id', 'schedule_id', 'session_id',
  'slots_remaining', 'action', 'status', 'start_time', 'end_time',
];

const textDecoder = new TextDecoder('utf-8', { fatal: true });

function errorMsg(code, message) {
  return JSON.stringify({ type: 'error', code, message });
}
const INVALID_FORMAT = errorMsg('invalid_format', 'Invalid format');

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// A filter value: a non-empty string or an array of them. Returns the list,
// or null when invalid (SPEC §4: invalid_filter).
function filterValues(v) {
  if (typeof v === 'string') return v.length > 0 ? [v] : null;
  if (!Array.isArray(v)) return null;
  for (const s of v) if (typeof s !== 'string' || s.length === 0) return null;
  return v;
}

// Validates a `filters` object: { key: [values] } or an error code.
function parseFilters(filters) {
  if (!isObject(filters)) return { error: 'invalid_format' };
  const out = {};
  for (const key of Object.keys(filters)) {
    if (!ROUTING_KEYS.includes(key)) return { error: 'invalid_filter' };
    const vals = filterValues(filters[key]);
    if (vals === null) return { error: 'invalid_filter' };
    out[key] = vals;
  }
  return { filters: out };
}

function filterCount(state) {
  let n = 0;
  for (const key of ROUTING_KEYS) n += state.filters[key].size;
  return n;
}

// The whole filter set, each key as an array; keys without values left out.
function filtersJson(state) {
  const out = {};
  for (const key of ROUTING_KEYS) {
    const set = state.filters[key];
    if (set.size > 0) out[key] = Array.from(set);
  }
  return out;
}

function send(ws, text) {
  ws.send(text, false, false);
}

function handleSubscribe(ws, state, msg) {
  if (msg.scope !== undefined) {
    // Public connections only: "all" is admin-only, anything else malformed.
    send(ws, msg.scope === 'all'
      ? errorMsg('forbidden', 'Scope "all" is for admin connections')
      : INVALID_FORMAT);
    return;
  }
  if (msg.filters === undefined) return send(ws, INVALID_FORMAT);
  const parsed = parseFilters(msg.filters);
  if (parsed.error === 'invalid_format') return send(ws, INVALID_FORMAT);
  if (parsed.error) return send(ws, errorMsg('invalid_filter', 'Invalid filter'));
  // Count first: a rejected message changes nothing.
  let added = 0;
  for (const key of Object.keys(parsed.filters)) {
    const set = state.filters[key];
    const seen = new Set();
    for (const v of parsed.filters[key]) {
      if (!set.has(v) && !seen.has(v)) { seen.add(v); added++; }
    }
  }
  if (filterCount(state) + added > MAX_FILTERS) {
    return send(ws, errorMsg('too_many_filters', `At most ${MAX_FILTERS} filters per connection`));
  }
  for (const key of Object.keys(parsed.filters)) {
    const set = state.filters[key];
    for (const v of parsed.filters[key]) {
      if (!set.has(v)) { set.add(v); ws.subscribe(`${key}:${v}`); }
    }
  }
  send(ws, JSON.stringify({ type: 'subscribed', filters: filtersJson(state) }));
}

function removeFilter(ws, state, key, v) {
  if (state.filters[key].delete(v)) ws.unsubscribe(`${key}:${v}`);
}

function handleUnsubscribe(ws, state, msg) {
  if (msg.topic !== undefined) {
    if (typeof msg.topic !== 'string') return send(ws, INVALID_FORMAT);
    const colon = msg.topic.indexOf(':');
    const key = colon > 0 ? msg.topic.slice(0, colon) : '';
    const value = msg.topic.slice(colon + 1);
    if (msg.topic === 'scope:all') {
      // A public connection never has the all scope: nothing to drop.
    } else if (!ROUTING_KEYS.includes(key) || value.length === 0) {
      return send(ws, errorMsg('invalid_filter', 'Invalid filter'));
    } else {
      removeFilter(ws, state, key, value);
    }
    return send(ws, JSON.stringify({
      type: 'unsubscribed', topic: msg.topic, filters: filtersJson(state),
    }));
  }
  if (msg.filters !== undefined) {
    const parsed = parseFilters(msg.filters);
    if (parsed.error === 'invalid_format') return send(ws, INVALID_FORMAT);
    if (parsed.error) return send(ws, errorMsg('invalid_filter', 'Invalid filter'));
    for (const key of Object.keys(parsed.filters)) {
      for (const v of parsed.filters[key]) removeFilter(ws, state, key, v);
    }
    return send(ws, JSON.stringify({ type: 'unsubscribed', filters: filtersJson(state) }));
  }
  for (const key of ROUTING_KEYS) {
    for (const v of state.filters[key]) ws.unsubscribe(`${key}:${v}`);
    state.filters[key].clear();
  }
  send(ws, JSON.stringify({ type: 'unsubscribed', filters: {} }));
}

function handleClientMessage(ws, message, isBinary) {
  if (isBinary) return send(ws, INVALID_FORMAT);
  let msg;
  try {
    msg = JSON.parse(textDecoder.decode(message));
  } catch {
    return send(ws, INVALID_FORMAT);
  }
  if (!isObject(msg)) return send(ws, INVALID_FORMAT);
  const state = ws.getUserData();
  switch (msg.type) {
    case 'subscribe': return handleSubscribe(ws, state, msg);
    case 'unsubscribe': return handleUnsubscribe(ws, state, msg);
    case 'ping':
      return send(ws, JSON.stringify({ type: 'pong', timestamp: new Date().toISOString() }));
    default: return send(ws, INVALID_FORMAT);
  }
}

// ----------------------------------------------------------------- ingest

// SPEC §5: a field is read from payload.data, then payload, then the top
// level; the first level that has the key wins.
function lookup(levels, key) {
  for (const level of levels) {
    if (level !== null && Object.prototype.hasOwnProperty.call(level, key)) {
      return { found: true, value: level[key] };
    }
  }
  return { found: false, value: undefined };
}

// The public message of one event (SPEC §6), or null when the public gets
// nothing for this topic.
function publicMessage(topic, levels, timestamp) {
  switch (topic) {
    case 'booking.created':
    case 'booking.cancelled':
    case 'booking.confirmed': {
      const slots = lookup(levels, 'slots_remaining');
      if (!slots.found) return null;
      const msg = { type: 'availability.updated' };
      const course = lookup(levels, 'course_id');
      if (course.found) msg.course_id = course.value;
      const schedule = lookup(levels, 'schedule_id');
      if (schedule.found) msg.schedule_id = schedule.value;
      msg.slots_remaining = slots.value;
      msg.timestamp = timestamp;
      return msg;
    }
    case 'schedule.updated':
    case 'schedule.deleted': {
      const summary = {};
      for (const key of PUBLIC_FIELDS) {
        const f = lookup(levels, key);
        if (f.found) summary[key] = f.value;
      }
      return { type: 'availability.changed', summary, timestamp };
    }
    default:
      return null;
  }
}

let eventsPublished = 0;
let eventsSkipped = 0;

// One event envelope (UTF-8 bytes: a Kafka record value or a /publish frame).
// A Kafka record's topic is authoritative (SPEC §5); a /publish frame has only
// the envelope's.
function handleEnvelope(raw, recordTopic) {
  let env;
  try {
    env = JSON.parse(textDecoder.decode(raw));
  } catch {
    eventsSkipped++;
    return;
  }
  if (!isObject(env)) { eventsSkipped++; return; }
  const payload = isObject(env.payload) ? env.payload : null;
  const data = payload !== null && isObject(payload.data) ? payload.data : null;
  const levels = [data, payload, env];
  const timestamp = typeof env.timestamp === 'string' ? env.timestamp : new Date().toISOString();
  const msg = publicMessage(recordTopic === undefined ? env.topic : recordTopic, levels, timestamp);
  if (msg === null) return;
  // Encode once: one UTF-8 buffer handed to every topic's publish.
  const bytes = Buffer.from(JSON.stringify(msg));
  eventsPublished++;
  // NOTE: uWS topics are independent: a socket subscribed to two keys of one
  // event (say course_id:C1 and room_id:R1) gets the message twice, while
  // fanout delivers each event at most once per connection (SPEC §6). The
  // benchmark events carry exactly one routing key, so it makes no difference
  // there.
  for (const key of ROUTING_KEYS) {
    const v = lookup(levels, key);
    if (!v.found) continue;
    if (typeof v.value === 'string') {
      if (v.value.length > 0) app.publish(`${key}:${v.value}`, bytes, false, false);
    } else if (Array.isArray(v.value)) {
      const seen = new Set();
      for (const s of v.value) {
        if (typeof s === 'string' && s.length > 0 && !seen.has(s)) {
          seen.add(s);
          app.publish(`${key}:${s}`, bytes, false, false);
        }
      }
    }
  }
}

// -------------------------------------------------------------------- kafka

// Without a broker the peer is socket-fed (/publish) and ready at once.
let consumerReady = opts.kafkaBrokers === null;
let consumer = null;

async function startConsumer() {
  const { Kafka, logLevel } = require('kafkajs');
  const kafka = new Kafka({
    clientId: 'peer-uws', brokers: opts.kafkaBrokers, logLevel: logLevel.WARN,
  });
  consumer = kafka.consumer({ groupId: opts.groupId, maxWaitTimeInMs: opts.maxWaitMs, minBytes: 1 });
  const ev = consumer.events;
  // kafkajs resolves the start offsets of the assigned partitions inside
  // its fetch, before the request goes out: the first FETCH after a
  // GROUP_JOIN means every assigned partition has a position.
  let joined = false;
  consumer.on(ev.GROUP_JOIN, () => { joined = true; });
  consumer.on(ev.FETCH, () => { if (joined) consumerReady = true; });
  for (const name of [ev.REBALANCING, ev.STOP, ev.DISCONNECT, ev.CRASH]) {
    consumer.on(name, () => { joined = false; consumerReady = false; });
  }
  await consumer.connect();
  await consumer.subscribe({ topics: opts.topics, fromBeginning: false });
  await consumer.run({
    // The whole fetched batch in one synchronous pass: every publish lands
    // before uWS drains its topic tree at the end of the loop iteration.
    eachBatch: async ({ batch }) => {
      for (const message of batch.messages) {
        if (message.value !== null) handleEnvelope(message.value, batch.topic);
      }
    },
  });
}

// ------------------------------------------------------------------- server

const sockets = new Set();
let nextClientId = 1;
let listenSocket = null;

const app = uWS.App();

app.ws('/ws/availability', {
  compression: uWS.DISABLED,
  maxPayloadLength: MAX_MESSAGE_BYTES,
  maxBackpressure: MAX_PENDING_BYTES,
  closeOnBackpressureLimit: true,
  idleTimeout: IDLE_TIMEOUT_S,
  sendPingsAutomatically: true,
  open: (ws) => {
    const state = ws.getUserData();
    state.clientId = String(nextClientId++);
    state.filters = { course_id: new Set(), room_id: new Set(), session_id: new Set() };
    sockets.add(ws);
    send(ws, JSON.stringify({ type: 'connected', clientId: state.clientId }));
  },
  message: handleClientMessage,
  close: (ws) => {
    // uWS drops the socket's topic subscriptions itself.
    sockets.delete(ws);
  },
});

app.ws('/publish', {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: MAX_PENDING_BYTES,
  idleTimeout: 0,
  open: (ws) => { sockets.add(ws); },
  message: (ws, message, isBinary) => {
    if (isBinary) eventsSkipped++;
    else handleEnvelope(message);
  },
  close: (ws) => { sockets.delete(ws); },
});

app.get('/healthz', (res) => { res.end('ok'); });
app.get('/readyz', (res) => {
  if (consumerReady) res.end('ready');
  else res.writeStatus('503 Service Unavailable').end('kafka consumer not ready');
});
app.any('/*', (res, req) => {
  res.writeStatus(req.getMethod() === 'get' ? '404 Not Found' : '405 Method Not Allowed').end();
});

app.listen(opts.host, opts.port, (token) => {
  if (!token) {
    process.stderr.write(`peer-uws: cannot listen on ${opts.host}:${opts.port}\n`);
    process.exit(1);
  }
  listenSocket = token;
  const port = uWS.us_socket_local_port(token);
  process.stdout.write(`peer-uws listening on ${opts.host}:${port}\n`);
});

if (opts.kafkaBrokers !== null) {
  startConsumer().catch((e) => {
    process.stderr.write(`peer-uws: kafka consumer: ${e.stack || e}\n`);
    process.exit(1);
  });
}

let stopping = false;
function shutdown(signal) {
  if (stopping) process.exit(0); // a second signal: do not wait
  stopping = true;
  process.stderr.write(`peer-uws: ${signal}: closing ${sockets.size} connections `
    + `(published ${eventsPublished} events, skipped ${eventsSkipped})\n`);
  if (listenSocket !== null) {
    uWS.us_listen_socket_close(listenSocket);
    listenSocket = null;
  }
  for (const ws of Array.from(sockets)) ws.end(1001, 'server shutting down');
  sockets.clear();
  // Close frames are best effort (already handed to the kernel by end()); do
  // not wait on peers. Leaving the group commits offsets; give it 2 s.
  const leave = consumer === null ? Promise.resolve() : consumer.disconnect();
  const deadline = new Promise((resolve) => setTimeout(resolve, 2000).unref());
  Promise.race([leave, deadline]).finally(() => process.exit(0));
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
