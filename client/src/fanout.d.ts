// Types of fanout-client (fanout.js): options, server messages (SPEC §4, §6)
// and connection-state events.

/** Filter values: one string or several. Keys are OR-ed, values too (SPEC §6). */
export interface Filters {
  course_id?: string | string[];
  room_id?: string | string[];
  session_id?: string | string[];
}

/** A filter set as the server echoes it: each key as an array. */
export interface EchoedFilters {
  course_id?: string[];
  room_id?: string[];
  session_id?: string[];
}

export interface BackoffSchedule {
  /** Upper bound of the first retry's delay, ms. Default 500. */
  baseMs: number;
  /** Upper bound of any delay, ms. Default 30000. */
  capMs: number;
  /** A connection open this long resets the schedule, ms. Default 10000. */
  stableAfterMs: number;
}

export interface ConnectOptions {
  /** WebSocket constructor. Default `globalThis.WebSocket`; in Node pass e.g. `ws`'s. */
  WebSocket?: new (url: string) => WebSocket;
  /** Reconnect delays: uniform in [0, min(capMs, baseMs * 2^attempt)). */
  backoff?: Partial<BackoffSchedule>;
  /** A socket without the server's `connected` message this long after opening is dropped and retried, ms. Default 10000. */
  connectTimeoutMs?: number;
  /** App-level ping period, ms; 0 turns it off. Default 30000. */
  pingIntervalMs?: number;
  /** No message within this long after a ping drops the socket and reconnects, ms. Default 10000. */
  pongTimeoutMs?: number;
}

// Server -> client messages.

export interface Connected { type: 'connected'; clientId: string; role?: 'admin' }
export interface Subscribed { type: 'subscribed'; filters?: EchoedFilters; scope?: 'all' }
export interface Unsubscribed { type: 'unsubscribed'; topic?: string; filters: EchoedFilters; scope?: 'all' }
export interface Pong { type: 'pong'; timestamp: string }
export interface ServerError {
  type: 'error';
  code: 'invalid_format' | 'invalid_filter' | 'forbidden' | 'too_many_filters' | 'rate_limited';
  message: string;
}

/** Public derivative of a booking event; only the fields the event carried. */
export interface AvailabilityUpdated {
  type: 'availability.updated';
  course_id?: string | string[];
  schedule_id?: string;
  slots_remaining: number;
  timestamp: string;
}

/** Public derivative of a schedule event: the allowlisted fields present. */
export interface AvailabilityChanged {
  type: 'availability.changed';
  summary: Partial<Record<
    'id' | 'booking_id' | 'course_id' | 'room_id' | 'schedule_id' | 'session_id' |
    'slots_remaining' | 'action' | 'status' | 'start_time' | 'end_time', unknown>>;
  timestamp: string;
}

/** Admin only: the full event body. */
export interface BookingEvent {
  type: 'booking.created' | 'booking.cancelled' | 'booking.confirmed';
  booking: Record<string, unknown>;
  timestamp: string;
}
export interface ScheduleEvent {
  type: 'schedule.updated' | 'schedule.deleted';
  full_details: Record<string, unknown>;
  timestamp: string;
}
export interface AdminNotification { type: 'admin.notifications'; notification: Record<string, unknown>; timestamp: string }
export interface AssessmentSubmitted { type: 'assessment.submitted'; assessment: Record<string, unknown>; timestamp: string }

export type ServerMessage =
  | Connected | Subscribed | Unsubscribed | Pong | ServerError
  | AvailabilityUpdated | AvailabilityChanged
  | BookingEvent | ScheduleEvent | AdminNotification | AssessmentSubmitted;

// Connection states.

export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectingEvent { state: 'connecting'; attempt: 0 }
/** Subscriptions are in place: every matching event from now on arrives. */
export interface OpenEvent {
  state: 'open';
  clientId: string | null;
  role: 'admin' | 'public' | null;
  /** null on the first connection; after a reconnect, how long events were missed, ms. */
  awayMs: number | null;
}
export interface ReconnectingEvent {
  state: 'reconnecting';
  /** The close code of the lost socket (1006 for a lost link or a refused handshake). */
  code: number;
  reason: string;
  /** Retry number since the last stable connection, from 1. */
  attempt: number;
  /** Wait before this retry, ms. */
  delayMs: number;
}
export interface ClosedEvent { state: 'closed'; code: number; reason: string }
export type StateEvent = ConnectingEvent | OpenEvent | ReconnectingEvent | ClosedEvent;

export interface EventMap {
  connected: Connected;
  subscribed: Subscribed;
  unsubscribed: Unsubscribed;
  pong: Pong;
  error: ServerError;
  'availability.updated': AvailabilityUpdated;
  'availability.changed': AvailabilityChanged;
  'booking.created': BookingEvent;
  'booking.cancelled': BookingEvent;
  'booking.confirmed': BookingEvent;
  'schedule.updated': ScheduleEvent;
  'schedule.deleted': ScheduleEvent;
  'admin.notifications': AdminNotification;
  'assessment.submitted': AssessmentSubmitted;
  message: ServerMessage;
  connecting: ConnectingEvent;
  open: OpenEvent;
  reconnecting: ReconnectingEvent;
  closed: ClosedEvent;
  state: StateEvent;
}

export declare class FanoutClient {
  constructor(url: string, options?: ConnectOptions);
  readonly state: State;
  readonly clientId: string | null;
  /** What the client restores on every connection. */
  readonly subscriptions: { filters: EchoedFilters; all: boolean };
  on<K extends keyof EventMap>(type: K, handler: (event: EventMap[K]) => void): () => void;
  /** Messages of topics added with the server's `--topics`: `{type, event, timestamp}`. */
  on(type: string, handler: (event: any) => void): () => void;
  off(type: string, handler: (event: any) => void): void;
  subscribe(filters: Filters | 'all'): void;
  unsubscribe(what?: Filters | string): void;
  close(): void;
}

export declare function connect(url: string, options?: ConnectOptions): FanoutClient;

export declare const BACKOFF_DEFAULTS: Readonly<BackoffSchedule>;
export declare function backoffCeiling(attempt: number, schedule: { baseMs: number; capMs: number }): number;
export declare function backoffDelay(attempt: number, schedule: { baseMs: number; capMs: number }, random?: () => number): number;
export declare const FINAL_CLOSES: Readonly<Record<number, string>>;
export declare const FILTER_KEYS: readonly ['course_id', 'room_id', 'session_id'];
