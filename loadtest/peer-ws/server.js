#!/usr/bin/env node
// Benchmark peer: the notification service as a Node team would write it from
// the service description: `ws` for the WebSockets, kafkajs (pure JS) for
// Kafka, a Map from routing key to the sockets subscribed to it.
//
// Usage: node server.js --kafka-brokers HOST:PORT[,...] [--port 3029] [--host 127.0.0.1]
//                       [--topics booking.created[,...]] [--group-id peer-ws] [--max-wait-ms 10]
//
// Endpoints (one port):
//   /ws/availability  public WebSocket, the subset of SPEC §3/§4 that the load
//                     test uses: `connected` on open; `subscribe` with
//                     `filters` (course_id, room_id, session_id; a string or
//                     an array) -> `subscribed` echoing the filter set; `ping`
//                     -> `pong`; anything else `invalid_format`. No admin
//                     path, no Origin check, no rate limit.
//   /healthz          200 "ok".
//   /readyz           200 once the consumer has joined its group and finished
//                     a fetch after the join (kafkajs resolves the start
//                     offsets of every assigned partition inside that fetch,
//                     so nothing produced from then on is missed); 503 before
//                     that and during a rebalance.
//
// Events: booking.created/cancelled/confirmed records with slots_remaining
// become `availability.updated` (SPEC §6), serialised once per event and
// sent with ws.send to every matching socket, at most once per socket. ws
// writes each send straight to the socket: one write per delivery, as in
// the plain version of this service. A socket with more than 1 MiB queued is
// dropped (SPEC §7's bound). Heartbeat: the ws README's pattern, a ping
// every 30 s, and a socket that did not answer the previous one is dropped.
//
// Prints "peer-ws listening on HOST:PORT" when listening; SIGINT/SIGTERM send
// close 1001 to every client, leave the consumer group (at most 2 s), exit 0.
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');
const { Kafka, logLevel } = require('kafkajs');

const ROUTING_KEYS = ['course_id', 'room_id', 'session_id'];
const PUBLIC_TOPICS = new Set(['booking.created', 'booking.cancelled', 'booking.confirmed']);
const MAX_MESSAGE_BYTES = 64 * 1024;
const MAX_PENDING_BYTES = 1024 * 1024;
const PING_INTERVAL_MS = 30000;

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1', port: 3029, kafkaBrokers: null, topics: ['booking.created'],
    groupId: 'peer-ws', maxWaitMs: 10,
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
    else {
      process.stderr.write(`peer-ws: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (opts.kafkaBrokers === null) {
    process.stderr.write('peer-ws: --kafka-brokers HOST:PORT is required\n');
    process.exit(2);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535
      || !Number.isInteger(opts.maxWaitMs) || opts.maxWaitMs < 0) {
    process.stderr.write('peer-ws: --port must be 0..65535, --max-wait-ms >= 0\n');
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// ------------------------------------------------------------ subscriptions

// "course_id:PIANO-101" -> Set of sockets.
const subscribers = new Map();
let nextClientId = 1;

function reply(ws, msg) {
  ws.send(JSON.stringify(msg));
}

function invalidFormat(ws) {
  reply(ws, { type: 'error', code: 'invalid_format', message: 'Invalid format' });
}

function subscribe(ws, filters) {
  if (filters === null || typeof filters !== 'object' || Array.isArray(filters)) return invalidFormat(ws);
  const add = [];
  for (const [key, value] of Object.entries(filters)) {
    const values = typeof value === 'string' ? [value] : value;
    if (!ROUTING_KEYS.includes(key) || !Array.isArray(values)
        || values.some((v) => typeof v !== 'string' || v.length === 0)) {
      return reply(ws, { type: 'error', code: 'invalid_filter', message: 'Invalid filter' });
    }
    for (const v of values) add.push(`${key}:${v}`);
  }
  for (const topic of add) {
    if (ws.topics.has(topic)) continue;
    ws.topics.add(topic);
    let set = subscribers.get(topic);
    if (set === undefined) subscribers.set(topic, (set = new Set()));
    set.add(ws);
  }
  const echo = {};
  for (const topic of ws.topics) {
    const colon = topic.indexOf(':');
    (echo[topic.slice(0, colon)] ||= []).push(topic.slice(colon + 1));
  }
  const ordered = {};
  for (const key of ROUTING_KEYS) if (echo[key]) ordered[key] = echo[key];
  reply(ws, { type: 'subscribed', filters: ordered });
}

function unsubscribeAll(ws) {
  for (const topic of ws.topics) {
    const set = subscribers.get(topic);
    set.delete(ws);
    if (set.size === 0) subscribers.delete(topic);
  }
  ws.topics.clear();
}

// ------------------------------------------------------------------- events

let eventsDelivered = 0;
let slowDropped = 0;

// SPEC §5: a field is read from payload.data, then payload, then the top level.
function field(levels, key) {
  for (const level of levels) {
    if (level !== null && typeof level === 'object' && !Array.isArray(level) && key in level) return level[key];
  }
  return undefined;
}

function deliver(set, bytes, seen) {
  for (const ws of set) {
    if (seen !== null) {
      if (seen.has(ws)) continue;
      seen.add(ws);
    }
    if (ws.readyState !== WebSocket.OPEN) continue;
    if (ws.bufferedAmount > MAX_PENDING_BYTES) {
      slowDropped++;
      ws.terminate();
      continue;
    }
    ws.send(bytes, { binary: false });
  }
}

function handleRecord(topic, value) {
  if (!PUBLIC_TOPICS.has(topic)) return;
  let env;
  try {
    env = JSON.parse(value.toString('utf8'));
  } catch {
    return;
  }
  if (env === null || typeof env !== 'object') return;
  const payload = env.payload !== null && typeof env.payload === 'object' ? env.payload : null;
  const data = payload !== null && payload.data !== null && typeof payload.data === 'object' ? payload.data : null;
  const levels = [data, payload, env];
  const slots = field(levels, 'slots_remaining');
  if (slots === undefined) return;
  const msg = { type: 'availability.updated' };
  const course = field(levels, 'course_id');
  if (course !== undefined) msg.course_id = course;
  const schedule = field(levels, 'schedule_id');
  if (schedule !== undefined) msg.schedule_id = schedule;
  msg.slots_remaining = slots;
  msg.timestamp = typeof env.timestamp === 'string' ? env.timestamp : new Date().toISOString();
  const bytes = Buffer.from(JSON.stringify(msg));
  const sets = [];
  for (const key of ROUTING_KEYS) {
    const v = field(levels, key);
    for (const s of typeof v === 'string' ? [v] : Array.isArray(v) ? v : []) {
      const set = subscribers.get(`${key}:${s}`);
      if (set !== undefined) sets.push(set);
    }
  }
  // At most once per socket (SPEC §6); the Set is only needed when the event
  // matched more than one key.
  const seen = sets.length > 1 ? new Set() : null;
  for (const set of sets) deliver(set, bytes, seen);
  eventsDelivered++;
}

// -------------------------------------------------------------------- kafka

let consumerReady = false;
const kafka = new Kafka({ clientId: 'peer-ws', brokers: opts.kafkaBrokers, logLevel: logLevel.WARN });
const consumer = kafka.consumer({ groupId: opts.groupId, maxWaitTimeInMs: opts.maxWaitMs, minBytes: 1 });
{
  const ev = consumer.events;
  let joined = false;
  consumer.on(ev.GROUP_JOIN, () => { joined = true; });
  consumer.on(ev.FETCH, () => { if (joined) consumerReady = true; });
  for (const name of [ev.REBALANCING, ev.STOP, ev.DISCONNECT, ev.CRASH]) {
    consumer.on(name, () => { joined = false; consumerReady = false; });
  }
}

async function startConsumer() {
  await consumer.connect();
  await consumer.subscribe({ topics: opts.topics, fromBeginning: false });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const message of batch.messages) {
        if (message.value !== null) handleRecord(batch.topic, message.value);
      }
    },
  });
}

// ------------------------------------------------------------------- server

const server = http.createServer((req, res) => {
  if (req.method !== 'GET') { res.writeHead(405).end(); return; }
  if (req.url === '/healthz') { res.end('ok'); return; }
  if (req.url === '/readyz') {
    if (consumerReady) res.end('ready');
    else res.writeHead(503).end('kafka consumer not ready');
    return;
  }
  res.writeHead(404).end();
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_MESSAGE_BYTES });

server.on('upgrade', (req, socket, head) => {
  if (req.url !== '/ws/availability') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

wss.on('connection', (ws) => {
  ws.topics = new Set();
  ws.isAlive = true;
  ws.on('pong', () => { ws.isAlive = true; });
  ws.on('message', (data, isBinary) => {
    ws.isAlive = true;
    if (isBinary) return invalidFormat(ws);
    let msg;
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      return invalidFormat(ws);
    }
    if (msg === null || typeof msg !== 'object') return invalidFormat(ws);
    if (msg.type === 'subscribe') return subscribe(ws, msg.filters ?? null);
    if (msg.type === 'ping') return reply(ws, { type: 'pong', timestamp: new Date().toISOString() });
    return invalidFormat(ws);
  });
  ws.on('close', () => unsubscribeAll(ws));
  ws.on('error', () => {});
  reply(ws, { type: 'connected', clientId: String(nextClientId++) });
});

const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) { ws.terminate(); continue; }
    ws.isAlive = false;
    ws.ping();
  }
}, PING_INTERVAL_MS);

server.listen(opts.port, opts.host, () => {
  process.stdout.write(`peer-ws listening on ${opts.host}:${server.address().port}\n`);
});

startConsumer().catch((e) => {
  process.stderr.write(`peer-ws: kafka consumer: ${e.stack || e}\n`);
  process.exit(1);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) process.exit(0); // a second signal: do not wait
  stopping = true;
  process.stderr.write(`peer-ws: ${signal}: closing ${wss.clients.size} connections `
    + `(${eventsDelivered} events routed, ${slowDropped} slow sockets dropped)\n`);
  clearInterval(heartbeat);
  server.close();
  for (const ws of wss.clients) ws.close(1001, 'server shutting down');
  const deadline = new Promise((resolve) => setTimeout(resolve, 2000).unref());
  Promise.race([consumer.disconnect(), deadline]).finally(() => process.exit(0));
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
