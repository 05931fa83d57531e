// fanout-client: a WebSocket client for fanout's live booking events.
//
// The app calls `connect(url)` once and keeps the client for the life of the
// page. The client owns one WebSocket at a time: it opens it, restores the
// app's subscriptions on it (subscriptions.js), hands each server message to
// the app's handlers by its `type` (SPEC §4 and §6), notices a dead link with
// an app-level ping, and when the socket closes it waits a jittered,
// growing delay (backoff.js) and opens a new one, unless the close code says
// the server means it (see FINAL_CLOSES).
//
// fanout does not replay: events published while a client was away are lost
// to it. The `open` event after a reconnect says how long the client was
// away (`awayMs`) so the app can refetch the state it shows.
//
// Dependency-free; runs in browsers and in Node >= 20 given a WebSocket
// constructor (`options.WebSocket`, e.g. the `ws` package).

import { BACKOFF_DEFAULTS, backoffDelay } from './backoff.js';
import { Subscriptions } from './subscriptions.js';

export { BACKOFF_DEFAULTS, backoffCeiling, backoffDelay } from './backoff.js';
export { FILTER_KEYS } from './subscriptions.js';

/**
 * Close codes after which the client stops for good, with the reason it
 * gives the app. Every other code (1001 shutdown or missed heartbeat, 1006
 * lost link or refused handshake, 1013 slow consumer, 1002/1007/1008 a
 * frame or rate the server refused) is retried: a reconnect sends the whole
 * subscription set in one fresh, well-formed message, so it does not repeat
 * what caused the close. 1009 would repeat: that message is too big.
 */
export const FINAL_CLOSES = Object.freeze({
  1009: 'a subscription message was over the server limit (--max-message-bytes)',
  4001: 'admin session revoked or invalid',
});

/** Codes 4000-4999 belong to the application (RFC 6455 §7.4.2); fanout sends 4001 only. */
function isFinalClose(code) {
  return code in FINAL_CLOSES || (code >= 4000 && code <= 4999);
}

/** How long the server's `rate_limited` asks a client to hold off, in ms (SPEC §4). */
const RATE_LIMIT_PAUSE_MS = 1000;

/** WebSocket readyState OPEN. */
const OPEN = 1;

/**
 * Opens a client and starts connecting at once.
 *
 * @param {string} url `ws://host:3009/ws/availability` (public) or `ws://host:3009/ws` (admin, session cookie).
 * @param {import('./fanout.js').ConnectOptions} [options]
 * @returns {FanoutClient}
 */
export function connect(url, options = {}) {
  return new FanoutClient(url, options);
}

/** One logical connection to fanout that outlives its sockets. */
export class FanoutClient {
  #url;
  #WebSocket;
  #schedule;
  #connectTimeoutMs;
  #pingIntervalMs;
  #pongTimeoutMs;
  #subscriptions = new Subscriptions();
  /** type -> Set of handlers. */
  #handlers = new Map();
  #socket = null;
  #state = 'connecting';
  #clientId = null;
  #role = null;
  /** Retries since the last stable connection; indexes the backoff schedule. */
  #attempt = 0;
  /** When the last open connection was lost (ms since epoch); null if none was. */
  #lostAt = null;
  #openedAt = 0;
  #timers = { retry: null, connect: null, ping: null, pong: null, resync: null };

  /**
   * @param {string} url
   * @param {import('./fanout.js').ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    this.#url = url;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError('no WebSocket here: pass options.WebSocket (in Node, e.g. `import { WebSocket } from "ws"`)');
    }
    this.#schedule = { ...BACKOFF_DEFAULTS, ...options.backoff };
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#pingIntervalMs = options.pingIntervalMs ?? 30_000;
    this.#pongTimeoutMs = options.pongTimeoutMs ?? 10_000;
    // Let the caller attach handlers before the first state event.
    queueMicrotask(() => {
      if (this.#state === 'connecting') this.#openSocket();
    });
  }

  /** `connecting`, `open`, `reconnecting` or `closed`. */
  get state() {
    return this.#state;
  }

  /** The server's id for the current connection (from `connected`), or null. */
  get clientId() {
    return this.#clientId;
  }

  /** The subscriptions this client restores on every connection: `{filters, all}`. */
  get subscriptions() {
    return this.#subscriptions.snapshot();
  }

  /**
   * Calls `handler` for each event of `type`: a server message type
   * (`availability.updated`, `subscribed`, `error`, ...; `message` for all of
   * them) or a state (`connecting`, `open`, `reconnecting`, `closed`; `state`
   * for all of them).
   *
   * @returns {() => void} a function that removes the handler.
   */
  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(handler);
    return () => this.off(type, handler);
  }

  /** Removes a handler added with `on`. */
  off(type, handler) {
    this.#handlers.get(type)?.delete(handler);
  }

  /**
   * Adds filters, e.g. `{course_id: "PIANO-101", room_id: ["R1", "R2"]}`, or
   * `"all"` for every event (admin connections only). Kept across reconnects.
   * Throws TypeError for keys or values the server would refuse.
   *
   * @param {import('./fanout.js').Filters | 'all'} filters
   */
  subscribe(filters) {
    if (filters === 'all') this.#subscriptions.setAll(true);
    else this.#subscriptions.add(filters);
    this.#sync();
  }

  /**
   * Removes subscriptions: nothing given removes all of them; a topic
   * string removes one (`"course_id:PIANO-101"`, `"all"` or `"scope:all"`);
   * filters remove those values.
   *
   * @param {import('./fanout.js').Filters | string} [what]
   */
  unsubscribe(what) {
    if (what === undefined) this.#subscriptions.clear();
    else if (what === 'all') this.#subscriptions.setAll(false);
    else if (typeof what === 'string') this.#subscriptions.removeTopic(what);
    else this.#subscriptions.remove(what);
    this.#sync();
  }

  /** Closes for good: no reconnect, no further events but `closed`. */
  close() {
    this.#stop(1000, 'closed by the app');
  }

  #emit(type, detail) {
    for (const handler of this.#handlers.get(type) ?? []) {
      try {
        handler(detail);
      } catch (err) {
        // One app handler's bug must not break delivery to the others or
        // the client's own state; surface it as an uncaught error.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #setState(state, detail) {
    this.#state = state;
    const event = { state, ...detail };
    this.#emit(state, event);
    this.#emit('state', event);
  }

  #openSocket() {
    this.#clientId = null;
    this.#subscriptions.reset();
    if (this.#state === 'connecting') this.#setState('connecting', { attempt: 0 });
    let socket;
    try {
      socket = new this.#WebSocket(this.#url);
    } catch (err) {
      // A malformed URL throws synchronously: retrying cannot fix it.
      this.#stop(1006, `cannot open ${this.#url}: ${err.message}`);
      return;
    }
    this.#socket = socket;
    // A server that accepts TCP but never answers (overloaded, frozen) would
    // leave the socket connecting for minutes.
    this.#timers.connect = setTimeout(
      () => this.#abandon(`no connected message within ${this.#connectTimeoutMs} ms`),
      this.#connectTimeoutMs,
    );
    socket.onopen = () => this.#startPinging();
    socket.onmessage = (event) => this.#receive(event.data);
    socket.onclose = (event) => this.#lost(event.code, event.reason);
    socket.onerror = () => {}; // a close event follows, with the code
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // fanout sends only JSON text; nothing to tell the app
    }
    // Any message proves the link is alive.
    clearTimeout(this.#timers.pong);
    this.#timers.pong = null;
    switch (message.type) {
      case 'connected':
        clearTimeout(this.#timers.connect);
        this.#clientId = message.clientId ?? null;
        this.#role = message.role ?? 'public';
        break;
      case 'subscribed':
      case 'unsubscribed':
        this.#subscriptions.confirm(message);
        break;
      case 'error':
        if (message.code === 'rate_limited') {
          // The message in flight may have been dropped unprocessed: ask again later.
          this.#subscriptions.forget();
          clearTimeout(this.#timers.resync);
          this.#timers.resync = setTimeout(() => this.#sync(), RATE_LIMIT_PAUSE_MS);
        } else if (this.#subscriptions.waiting) {
          this.#subscriptions.reject();
        }
        break;
    }
    this.#emit(message.type, message);
    this.#emit('message', message);
    // Replies may move the subscriptions on; events never do.
    if (['connected', 'subscribed', 'unsubscribed', 'error'].includes(message.type)) this.#sync();
  }

  /** Sends the next subscription change, and reports `open` once none is left. */
  #sync() {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN || this.#clientId === null) return;
    const message = this.#subscriptions.next();
    if (message) {
      socket.send(JSON.stringify(message));
    } else if (this.#state !== 'open' && !this.#subscriptions.waiting) {
      this.#opened();
    }
  }

  #opened() {
    const now = Date.now();
    const awayMs = this.#lostAt === null ? null : now - this.#lostAt;
    this.#lostAt = null;
    this.#openedAt = now;
    this.#setState('open', { clientId: this.#clientId, role: this.#role, awayMs });
  }

  #startPinging() {
    if (this.#pingIntervalMs <= 0) return;
    this.#timers.ping = setInterval(() => {
      if (this.#socket?.readyState !== OPEN) return;
      this.#socket.send('{"type":"ping"}');
      // The deadline runs from the first unanswered ping; later pings do
      // not push it back. A half-open link (sleeping laptop, dropped NAT
      // entry) can look open for minutes.
      this.#timers.pong ??= setTimeout(
        () => this.#abandon(`no reply within ${this.#pongTimeoutMs} ms of a ping`),
        this.#pongTimeoutMs,
      );
    }, this.#pingIntervalMs);
  }

  /** Gives up on the current socket as if the link were lost (1006): retry. */
  #abandon(reason) {
    const socket = this.#detach();
    // Node's `ws` has terminate(): drop the TCP connection now rather than
    // wait for a close handshake the silent peer will not answer.
    if (typeof socket?.terminate === 'function') socket.terminate();
    else socket?.close();
    this.#lost(1006, reason);
  }

  /** Stops listening to the current socket; returns it. */
  #detach() {
    const socket = this.#socket;
    this.#socket = null;
    clearTimeout(this.#timers.connect);
    clearInterval(this.#timers.ping);
    clearTimeout(this.#timers.pong);
    this.#timers.pong = null;
    clearTimeout(this.#timers.resync);
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      // A no-op, not null: Node's `ws` throws an 'error' nobody listens to.
      socket.onerror = () => {};
    }
    return socket;
  }

  /** The socket closed (or was given up on) with `code`: retry or stop. */
  #lost(code, reason) {
    this.#detach();
    if (this.#state === 'closed') return;
    if (isFinalClose(code)) {
      this.#stop(code, reason || FINAL_CLOSES[code] || `closed by the server with ${code}`);
      return;
    }
    const now = Date.now();
    if (this.#state === 'open') {
      this.#lostAt = now;
      if (now - this.#openedAt >= this.#schedule.stableAfterMs) this.#attempt = 0;
    }
    const delayMs = backoffDelay(this.#attempt, this.#schedule);
    this.#attempt += 1;
    this.#setState('reconnecting', { code, reason, attempt: this.#attempt, delayMs });
    this.#timers.retry = setTimeout(() => this.#openSocket(), delayMs);
  }

  #stop(code, reason) {
    if (this.#state === 'closed') return;
    clearTimeout(this.#timers.retry);
    this.#detach()?.close(1000);
    this.#setState('closed', { code, reason });
  }
}
