// Test harness: a real fanout process, a real Kafka producer, a real redis-server.
//
// Used by the client's tests (test/*.test.js) and the browser test
// (test/browser/). `Engine.start` spawns the fanout binary on a free loopback
// port with its embedded Kafka broker (librdkafka's mock cluster), waits for
// /readyz, and connects a kafkajs producer to the broker address fanout
// prints. `restart` stops the process and starts a new one on the same port
// (a new embedded broker, so a new producer). `RedisServer` runs a
// throwaway redis-server for admin sessions. Nothing is faked: what a test
// sees went through Kafka, the engine and a WebSocket.

import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import kafkajs from 'kafkajs';
import { WebSocket } from 'ws';

const { Kafka, Partitioners, logLevel } = kafkajs;

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The engine binary: $FANOUT_BIN, else the debug build of this checkout. */
export const FANOUT_BIN =
  process.env.FANOUT_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(REPO, 'target'), 'debug', 'fanout');

/** How long a test waits for something that should happen, ms. */
export const PATIENCE_MS = 10_000;

/** A loopback port that was free a moment ago. */
export async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Polls `check` (sync or async) until it returns a truthy value, or throws `what`. */
export async function waitFor(what, check, timeoutMs = PATIENCE_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * A WebSocket constructor for the client that sends `Cookie: <cookie>` with
 * the handshake, as a browser does for the admin endpoint's session.
 */
export function webSocketWithCookie(cookie) {
  return class extends WebSocket {
    constructor(url) {
      super(url, { headers: { Cookie: cookie } });
    }
  };
}

/** A booking envelope (SPEC §5) that carries `slots_remaining`. */
export function booking({ topic = 'booking.created', course, schedule = 'sch-1', slots, id = `bk-${Date.now()}` }) {
  return {
    topic,
    timestamp: new Date().toISOString(),
    event_type: topic,
    payload: {
      id,
      action: topic.split('.')[1],
      data: { booking_id: id, course_id: course, schedule_id: schedule, student_id: 'st-9', slots_remaining: slots },
    },
  };
}

/** A fanout process on loopback with its embedded broker, and a producer into it. */
export class Engine {
  /** @type {import('node:child_process').ChildProcess} */
  #child = null;
  #args;
  #log = [];
  #producer = null;
  port = 0;
  bootstrap = '';

  constructor(args) {
    this.#args = args;
  }

  /**
   * Starts fanout (embedded broker, one shard, unpinned) with extra `args`.
   * `port` 0 picks a free one.
   */
  static async start({ args = [], port = 0 } = {}) {
    const engine = new Engine(args);
    await engine.#spawn(port || (await freePort()));
    return engine;
  }

  /** `ws://127.0.0.1:PORT` + path. */
  url(path = '/ws/availability') {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  /** The engine's output so far, for failure messages. */
  get log() {
    return this.#log.join('');
  }

  async #spawn(port) {
    this.port = port;
    this.#log = [];
    const argv = ['--kafka-brokers', 'embedded', '--no-pin', '--shards', '1', '--listen', '127.0.0.1',
      '--port', String(port), ...this.#args];
    const child = spawn(FANOUT_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    let spawnError = null;
    child.on('error', (err) => (spawnError = err));
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (text) => this.#log.push(text));
    }
    // Fail at once, with the engine's own words, if it dies while starting.
    const alive = () => {
      if (spawnError) throw new Error(`cannot run ${FANOUT_BIN}: ${spawnError.message} (build it: cargo build -p fanout)`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`fanout exited (${child.exitCode ?? child.signalCode}) while starting:\n${this.log}`);
      }
    };
    await waitFor('fanout to print its broker address', () => {
      alive();
      const match = /produce to (\S+)/.exec(this.log);
      return match && (this.bootstrap = match[1]);
    });
    await waitFor('/readyz to answer 200', () => alive() ?? this.#ready(), 20_000);
    this.#producer = new Kafka({
      clientId: 'fanout-client-test',
      brokers: [this.bootstrap],
      logLevel: logLevel.ERROR,
    }).producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
    await this.#producer.connect();
  }

  async #ready() {
    try {
      const response = await fetch(`http://127.0.0.1:${this.port}/readyz`);
      return response.status === 200;
    } catch {
      return false;
    }
  }

  /** Produces one record (`value` is JSON-encoded unless a string) and waits for the broker's ack. */
  async produce(topic, value) {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    await this.#producer.send({ topic, acks: -1, messages: [{ value: text }] });
  }

  /** Stops the process: SIGTERM (graceful, clients get 1001) or SIGKILL (clients see 1006). */
  async stop(signal = 'SIGTERM') {
    const child = this.#child;
    this.#child = null;
    await this.#producer?.disconnect().catch(() => {});
    this.#producer = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing, like a hung host. */
  freeze() {
    this.#child.kill('SIGSTOP');
  }

  /** SIGCONT after `freeze`. */
  thaw() {
    this.#child.kill('SIGCONT');
  }

  /** Starts a stopped engine again on the same port (a new embedded broker and producer). */
  async startAgain() {
    await this.#spawn(this.port);
  }

  /** `stop`, then `startAgain`. */
  async restart(signal = 'SIGTERM') {
    await this.stop(signal);
    await this.startAgain();
  }
}

/** A throwaway redis-server on a free loopback port, no persistence. */
export class RedisServer {
  #child;
  #dir;
  port;

  static async start() {
    const redis = new RedisServer();
    redis.port = await freePort();
    redis.#dir = mkdtempSync(join(tmpdir(), 'fanout-client-redis-'));
    redis.#child = spawn('redis-server', ['--port', String(redis.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', redis.#dir], { stdio: 'ignore' });
    await waitFor('redis-server to answer PING', () => {
      try {
        return redis.command('PING') === 'PONG';
      } catch {
        return false;
      }
    });
    return redis;
  }

  /** `redis://127.0.0.1:PORT`, for fanout's `--redis-url`. */
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Runs one command with redis-cli; returns its output, trimmed. */
  command(...args) {
    return execFileSync('redis-cli', ['-p', String(this.port), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  }

  async stop() {
    if (this.#child.exitCode === null) {
      const exited = once(this.#child, 'exit');
      this.#child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/**
 * Records every message and state event of a client, in order, so a test
 * can wait for the next one of a kind: `await seen.next('open')`.
 */
export function record(client) {
  const events = [];
  let cursor = 0;
  client.on('message', (message) => events.push(message));
  client.on('state', (event) => events.push({ type: event.state, ...event }));
  return {
    events,
    /** The next event (after those already returned) of `type` that `match` accepts. */
    async next(type, match = () => true, timeoutMs = PATIENCE_MS) {
      const found = await waitFor(`a ${type} event`, () => {
        const index = events.findIndex((event, i) => i >= cursor && event.type === type && match(event));
        return index >= 0 && { index };
      }, timeoutMs);
      cursor = found.index + 1;
      return events[found.index];
    },
    /** Events of `type` seen so far. */
    all(type) {
      return events.filter((event) => event.type === type);
    },
  };
}
