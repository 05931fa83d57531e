// The demo's web server: the page, its data, and the booking desk's producer.
//
// Serves the demo page (demo/) and the client library (src/) from their own
// origin, so fanout's `--allowed-origins` is exercised for real; answers
// `/config.json` (where fanout is, whether the visitor has a session cookie)
// and `/api/availability` (the desk's current board, what the page refetches
// after a reconnect); `/login` and `/logout` set and clear the demo admin's
// session cookie. Run as a program (scripts/demo.sh does), it also publishes
// a booking or a cancellation to Kafka every second.
//
//   node demo/server.js --port 8080 --engine ws://127.0.0.1:3009 \
//       --kafka 127.0.0.1:PORT [--session demo-admin] [--tick-ms 1000]
//
// The browser test imports `startDemoServer` and drives the desk itself.

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { BookingDesk } from './desk.js';

const CLIENT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Only these folders of client/ are served. */
const SERVED = ['demo', 'src'];
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png' };

/**
 * Starts the web server on 127.0.0.1.
 *
 * @param {object} options
 * @param {number} options.port 0 picks a free one.
 * @param {string} options.engineUrl fanout's base URL, e.g. `ws://127.0.0.1:3009`.
 * @param {BookingDesk} options.desk the board to serve.
 * @param {string} [options.session] the admin session id `/login` hands out; none: no admin view.
 * @returns {Promise<{url: string, close: () => Promise<void>}>}
 */
export async function startDemoServer({ port, engineUrl, desk, session }) {
  const server = createServer((request, response) => {
    serve(request, response, { engineUrl, desk, session }).catch((err) => {
      response.writeHead(500).end(String(err));
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

async function serve(request, response, { engineUrl, desk, session }) {
  const { pathname } = new URL(request.url, 'http://demo');
  const cookie = /(?:^|;\s*)session_id=([^;]+)/.exec(request.headers.cookie ?? '')?.[1];
  const json = (value) => {
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    response.end(JSON.stringify(value));
  };
  switch (pathname) {
    case '/':
      response.writeHead(302, { location: '/demo/' }).end();
      return;
    case '/config.json':
      json({ engineUrl, courseIds: desk.courseIds, admin: Boolean(session && cookie === session), canLogin: Boolean(session) });
      return;
    case '/api/availability':
      json(desk.snapshot());
      return;
    case '/login':
    case '/logout': {
      if (!session) {
        response.writeHead(404).end('this demo runs without Redis: no admin session');
        return;
      }
      // HttpOnly: the page never reads it; the browser sends it with the
      // WebSocket handshake to fanout (same host, so same site).
      const value = pathname === '/login' ? `session_id=${session}` : 'session_id=; Max-Age=0';
      response.writeHead(302, { 'set-cookie': `${value}; Path=/; HttpOnly; SameSite=Strict`, location: '/demo/' });
      response.end();
      return;
    }
  }
  const file = normalize(join(CLIENT_DIR, pathname.endsWith('/') ? `${pathname}index.html` : pathname));
  const allowed = SERVED.some((dir) => file.startsWith(join(CLIENT_DIR, dir) + sep));
  const body = allowed ? await readFile(file).catch(() => null) : null;
  if (!body) {
    response.writeHead(404).end('not found');
    return;
  }
  response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
  response.end(body);
}

/** Waits until fanout's `/readyz` answers 200: events produced before are not delivered (SPEC §2). */
async function waitReady(engineUrl) {
  const readyz = `${engineUrl.replace(/^ws/, 'http')}/readyz`;
  for (let tries = 0; tries < 300; tries++) {
    const status = await fetch(readyz).then((r) => r.status, () => 0);
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${readyz} never answered 200`);
}

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8080' },
      engine: { type: 'string', default: 'ws://127.0.0.1:3009' },
      kafka: { type: 'string' },
      session: { type: 'string' },
      'tick-ms': { type: 'string', default: '1000' },
    },
  });
  if (!values.kafka) throw new Error('--kafka HOST:PORT is required (the broker fanout consumes)');
  // kafkajs is a dev dependency: only the demo and the tests produce.
  const { Kafka, Partitioners, logLevel } = (await import('kafkajs')).default;
  const producer = new Kafka({ clientId: 'fanout-demo-desk', brokers: [values.kafka], logLevel: logLevel.ERROR })
    .producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  const desk = new BookingDesk();
  await waitReady(values.engine);
  await producer.connect();
  const { url } = await startDemoServer({ port: Number(values.port), engineUrl: values.engine, desk, session: values.session });
  console.log(`demo page on ${url}/demo/`);

  let busy = false;
  setInterval(async () => {
    if (busy) return; // never queue ticks behind a slow broker
    busy = true;
    try {
      const change = desk.tick();
      await producer.send({ topic: change.topic, acks: -1, messages: [{ value: JSON.stringify(change.value) }] });
      const { course_id, schedule_id, slots_remaining } = change.value.payload.data;
      console.log(`${change.topic.padEnd(17)} ${course_id.padEnd(10)} ${schedule_id.padEnd(13)} slots_remaining=${slots_remaining}`);
    } catch (err) {
      console.error(`produce failed: ${err.message}`);
    } finally {
      busy = false;
    }
  }, Number(values['tick-ms']));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    console.error(`demo server: ${err.message}`);
    process.exit(1);
  });
}
