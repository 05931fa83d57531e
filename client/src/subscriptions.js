// The subscriptions a client wants, and how to bring a connection to them.
//
// Used by the client (fanout.js), one instance per client, living across
// reconnects. The app edits the *wanted* set (subscribe/unsubscribe); the
// server's replies tell the *confirmed* set of the current connection (every
// `subscribed`/`unsubscribed` reply echoes the connection's whole filter set,
// SPEC §4). `next()` returns the one message that moves confirmed towards
// wanted; the client sends it, waits for its reply, and asks again until
// nothing differs. A new connection starts with nothing confirmed, so the
// first message after a reconnect restores every wanted filter at once.
//
// Invariant: at most one message is in flight. That makes every reply (or
// error) belong to a known message, coalesces bursts of app calls into one
// message per round trip, and keeps a client far below the server's rate
// limit.

/** The filter keys the server routes on (SPEC §4). */
export const FILTER_KEYS = Object.freeze(['course_id', 'room_id', 'session_id']);

/** The topic form of the admin scope, as `unsubscribe` takes it. */
const SCOPE_ALL_TOPIC = 'scope:all';

/** A filter set: key -> Set of values, plus the admin "all" scope. */
function emptySet() {
  return { filters: new Map(FILTER_KEYS.map((key) => [key, new Set()])), all: false };
}

/** Values of `a` not in `b`, as a wire filter object, or null if none. */
function difference(a, b) {
  const out = {};
  for (const [key, values] of a.filters) {
    const missing = [...values].filter((value) => !b.filters.get(key).has(value));
    if (missing.length > 0) out[key] = missing;
  }
  return Object.keys(out).length > 0 ? out : null;
}

function isEmpty(set) {
  return !set.all && [...set.filters.values()].every((values) => values.size === 0);
}

/**
 * Checks filters the way the server does (SPEC §4), so a mistake throws at
 * the call site instead of coming back later as an `invalid_filter` error.
 * The server's length limit (`--max-filter-value-bytes`) is its own to check.
 *
 * @param {object} filters e.g. `{course_id: "PIANO-101", room_id: ["R1", "R2"]}`
 * @returns {Array<[string, string[]]>} the entries, each value list as an array.
 */
export function checkFilters(filters) {
  if (filters === null || typeof filters !== 'object' || Array.isArray(filters)) {
    throw new TypeError('filters must be an object such as {course_id: "PIANO-101"}');
  }
  return Object.entries(filters).map(([key, value]) => {
    if (!FILTER_KEYS.includes(key)) {
      throw new TypeError(`unknown filter key ${JSON.stringify(key)}; use one of ${FILTER_KEYS.join(', ')}`);
    }
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (typeof v !== 'string' || v === '') {
        throw new TypeError(`filter ${key} takes non-empty strings, got ${JSON.stringify(v)}`);
      }
    }
    return [key, values];
  });
}

/** Wanted and confirmed filter sets, and the one message in flight. */
export class Subscriptions {
  #wanted = emptySet();
  #confirmed = emptySet();
  /** The message sent and not yet answered, or null. */
  #inFlight = null;

  /** Adds filters to the wanted set (validated, may throw TypeError). */
  add(filters) {
    for (const [key, values] of checkFilters(filters)) {
      for (const value of values) this.#wanted.filters.get(key).add(value);
    }
  }

  /** Removes filters from the wanted set (validated, may throw TypeError). */
  remove(filters) {
    for (const [key, values] of checkFilters(filters)) {
      for (const value of values) this.#wanted.filters.get(key).delete(value);
    }
  }

  /** Wants (or stops wanting) the admin "all" scope. */
  setAll(wanted) {
    this.#wanted.all = wanted;
  }

  /** Removes one topic, `"course_id:PIANO-101"` or `"scope:all"`. */
  removeTopic(topic) {
    if (topic === SCOPE_ALL_TOPIC) {
      this.setAll(false);
      return;
    }
    const colon = typeof topic === 'string' ? topic.indexOf(':') : -1;
    if (colon <= 0) {
      throw new TypeError(`a topic looks like "course_id:PIANO-101" or "scope:all", got ${JSON.stringify(topic)}`);
    }
    this.remove({ [topic.slice(0, colon)]: topic.slice(colon + 1) });
  }

  /** Wants nothing at all. */
  clear() {
    this.#wanted = emptySet();
  }

  /** A new connection: nothing is confirmed on it and nothing is in flight. */
  reset() {
    this.#confirmed = emptySet();
    this.#inFlight = null;
  }

  /** Whether a message awaits its reply. */
  get waiting() {
    return this.#inFlight !== null;
  }

  /**
   * The next message that brings the connection closer to the wanted set,
   * now marked in flight; null when a message is already in flight or the
   * connection already has exactly what is wanted. Removals go first, so a
   * connection never holds more filters than the app asked for.
   */
  next() {
    if (this.#inFlight) return null;
    const wanted = this.#wanted;
    const confirmed = this.#confirmed;
    const added = difference(wanted, confirmed);
    const removed = difference(confirmed, wanted);
    let message = null;
    if (isEmpty(wanted) && !isEmpty(confirmed)) {
      message = { type: 'unsubscribe' };
    } else if (removed) {
      message = { type: 'unsubscribe', filters: removed };
    } else if (confirmed.all && !wanted.all) {
      message = { type: 'unsubscribe', topic: SCOPE_ALL_TOPIC };
    } else if (added) {
      message = { type: 'subscribe', filters: added };
    } else if (wanted.all && !confirmed.all) {
      // Apart from the filters: a public connection's `forbidden` must not
      // take the filters down with it.
      message = { type: 'subscribe', scope: 'all' };
    }
    this.#inFlight = message;
    return message;
  }

  /** A `subscribed`/`unsubscribed` reply: its echo is what the connection has. */
  confirm(reply) {
    const echoed = emptySet();
    for (const [key, values] of Object.entries(reply.filters ?? {})) {
      const set = echoed.filters.get(key);
      for (const value of [values].flat()) set?.add(value);
    }
    echoed.all = reply.scope === 'all';
    this.#confirmed = echoed;
    this.#inFlight = null;
  }

  /**
   * The server refused the message in flight (SPEC §4: a refused message
   * changes nothing). Its additions leave the wanted set, so the next
   * reconnect does not send them again; a refused removal is put back.
   *
   * @returns {object | null} the refused message.
   */
  reject() {
    const refused = this.#inFlight;
    this.#inFlight = null;
    if (refused?.type === 'subscribe') {
      if (refused.filters) this.remove(refused.filters);
      if (refused.scope) this.#wanted.all = false;
    } else if (refused?.filters) {
      this.add(refused.filters);
    } else if (refused?.topic === SCOPE_ALL_TOPIC) {
      this.#wanted.all = true;
    } else if (refused) {
      this.#wanted = structuredClone(this.#confirmed);
    }
    return refused;
  }

  /** The server dropped the message in flight unanswered (rate limited): send again later. */
  forget() {
    this.#inFlight = null;
  }

  /** The wanted set as the app gave it: `{filters: {course_id: [...]}, all}`. */
  snapshot() {
    const filters = {};
    for (const [key, values] of this.#wanted.filters) {
      if (values.size > 0) filters[key] = [...values];
    }
    return { filters, all: this.#wanted.all };
  }
}
