//! One shard: the connections of one core, its subscription index, delivery.
//!
//! A shard runs on one glommio executor pinned to a core and owns everything
//! here: `Rc`, `Cell` and `RefCell`, never a lock. Its tasks are the inbox
//! loop (events from ingest -> [`Shard::deliver`]), the listener (accept,
//! HTTP, upgrade), one task per connection, and the heartbeat ticker.
//!
//! Delivery writes each event's pre-framed bytes to every matching socket:
//! the frame is queued by reference (`Bytes`), and after a batch of events
//! each touched connection is flushed once with a vectored, non-blocking
//! `sendmsg`, so several events to one socket cost one syscall. A socket that
//! would block is left to its own task; the shard never waits on one socket.
//! Invariant: a connection is in the index only while it is in `conns` and
//! not closing.

mod connection;
pub mod executor;
pub mod inbox;
pub mod index;
mod listener;
mod slab;
mod socket;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::auth::redis::RedisClient;
use crate::config::ShardConfig;
use crate::event::Dispatch;
use crate::metrics::{IngestMetrics, Registry, ShardMetrics, new_latency_histogram};
use crate::protocol::Filters;
use crate::protocol::frame::{self, close_code};
pub use connection::serve as serve_connection;
pub use listener::run as run_listener;
use slab::Slab;

/// A shard's number, 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardId(pub u16);

/// A connection's slot on its shard; valid only on that shard, and reused
/// after the connection closes (pair it with [`Conn::serial`] across awaits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// Who is on the other end: what they may see and ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `/ws/availability`: public messages only.
    Public,
    /// `/ws`: full messages, scope all.
    Admin,
}

/// State every shard and the ingest thread share (all `Sync`).
pub struct Shared {
    /// Upgraded connections in the process, against `--max-connections`.
    pub connection_count: AtomicUsize,
    /// Set when shutdown starts: listeners stop accepting.
    pub shutting_down: AtomicBool,
    /// Counters of every shard and of ingest, for `/metrics`.
    pub registry: Registry,
}

impl Shared {
    /// The ingest thread's metrics.
    pub fn ingest(&self) -> &IngestMetrics {
        &self.registry.ingest
    }
}

/// Why and how a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// Close code sent.
    pub code: u16,
    /// Drop queued messages first (slow consumer, dead peer).
    pub discard_queue: bool,
    /// How long the close may wait for the socket, in milliseconds: zero
    /// for a dead peer. (Not a `Duration`: this sits in every `Conn`.)
    pub linger_ms: u32,
}

impl Close {
    /// Drops what was queued and the socket at once, after one non-blocking
    /// try to send the close frame (a dead peer, SPEC §3.2).
    pub fn abrupt(code: u16) -> Close {
        Close {
            code,
            discard_queue: true,
            linger_ms: 0,
        }
    }

    /// Drops what was queued; the close frame gets up to a second for the
    /// socket to drain (a slow consumer, SPEC §7).
    pub fn discarding(code: u16) -> Close {
        Close {
            code,
            discard_queue: true,
            linger_ms: 1000,
        }
    }

    /// A close after which the peer still gets what was queued.
    pub fn graceful(code: u16) -> Close {
        Close {
            code,
            discard_queue: false,
            linger_ms: 1000,
        }
    }
}

/// One upgraded connection's state, owned by the shard.
pub struct Conn {
    /// Unique per shard for the process lifetime (also in `clientId`).
    pub serial: u64,
    /// Public or admin.
    pub role: Role,
    /// Admin session id, re-checked periodically.
    pub session_id: Option<Box<str>>,
    /// Raw fd of the socket, owned by the connection task's stream.
    fd: i32,
    /// Current filters (mirrored in the index).
    pub filters: Filters,
    /// Admin "all" scope (mirrored in the index).
    pub scope_all: bool,
    /// Frames waiting to be written; the first may be partly written.
    queue: VecDeque<Bytes>,
    /// Bytes of `queue[0]` already written.
    head_written: usize,
    /// Bytes in `queue` not yet written.
    pending_bytes: usize,
    /// In the shard's dirty list.
    dirty: bool,
    /// The socket would block: the connection task owns the next write.
    blocked: bool,
    /// Input that arrived in pieces; `None` (no allocation) at rest.
    partial: Option<Box<Partial>>,
    /// Last time anything arrived from the client.
    last_seen: Millis,
    /// When the next ping is due.
    next_ping: Millis,
    /// A ping is outstanding since then.
    ping_sent: Option<Millis>,
    /// Rate limiter state.
    limiter: connection::Limiter,
    /// Last event stamp delivered (at most once per event).
    stamp: u64,
    /// Close requested.
    close: Option<Close>,
    /// Wakes the connection task.
    waker: Option<Waker>,
}

/// Client input that did not make a whole message yet.
#[derive(Default)]
struct Partial {
    /// Bytes of a frame that arrived in pieces.
    rx: Vec<u8>,
    /// A fragmented message being assembled, and its first frame's kind.
    fragments: Option<(frame::Kind, Vec<u8>)>,
}

/// Milliseconds on the shard's clock, plus one: never zero, so an
/// `Option<Millis>` is as small as a `Millis` (8 bytes; an `Instant` is 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(NonZeroU64);

impl Millis {
    /// The time `millis` after the clock's epoch.
    pub fn from_millis(millis: u64) -> Millis {
        Millis(NonZeroU64::new(millis.saturating_add(1)).expect("millis + 1 is never zero"))
    }

    /// `self` plus `duration`.
    pub fn after(self, duration: Duration) -> Millis {
        Millis(self.0.saturating_add(duration.as_millis() as u64))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.get().saturating_sub(earlier.0.get()))
    }
}

impl Conn {
    fn new(serial: u64, role: Role, fd: i32, now: Millis, ping_interval: Duration) -> Conn {
        Conn {
            serial,
            role,
            session_id: None,
            fd,
            filters: Filters::default(),
            scope_all: false,
            queue: VecDeque::new(),
            head_written: 0,
            pending_bytes: 0,
            dirty: false,
            blocked: false,
            partial: None,
            last_seen: now,
            next_ping: now.after(ping_interval),
            ping_sent: None,
            limiter: connection::Limiter::new(now),
            stamp: 0,
            close: None,
            waker: None,
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Per-core state; every task of the shard holds an `Rc<Shard>`.
pub struct Shard {
    /// This shard's number.
    pub id: ShardId,
    /// Limits and intervals.
    pub config: ShardConfig,
    /// State shared with the other threads.
    pub shared: Arc<Shared>,
    /// This shard's counters.
    pub metrics: Arc<ShardMetrics>,
    /// Admin session store, when Redis is configured.
    pub redis: Option<RedisClient>,
    conns: RefCell<Slab<Conn>>,
    index: RefCell<index::SubscriptionIndex>,
    dirty: RefCell<Vec<ConnId>>,
    /// Receive scratch shared by all connections: borrowed only inside one
    /// poll, so idle connections hold no read buffer.
    scratch: RefCell<Box<[u8]>>,
    latency: RefCell<Histogram<u64>>,
    /// Epoch of the shard's [`Millis`] clock.
    epoch: Instant,
    stamp: Cell<u64>,
    next_serial: Cell<u64>,
    ping_frame: Bytes,
}

/// Size of the shared receive scratch buffer.
const SCRATCH_BYTES: usize = 64 * 1024;

impl Shard {
    /// Creates the shard's state. Must run on the shard's own executor.
    pub fn new(id: ShardId, config: ShardConfig, shared: Arc<Shared>, redis: Option<RedisClient>) -> Rc<Shard> {
        let metrics = shared.registry.shards[id.0 as usize].clone();
        Rc::new(Shard {
            id,
            config,
            shared,
            metrics,
            redis,
            conns: RefCell::new(Slab::default()),
            index: RefCell::new(index::SubscriptionIndex::default()),
            dirty: RefCell::new(Vec::new()),
            scratch: RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice()),
            latency: RefCell::new(new_latency_histogram()),
            epoch: Instant::now(),
            stamp: Cell::new(0),
            next_serial: Cell::new(0),
            ping_frame: frame::ping(),
        })
    }

    /// Now, on the shard's clock.
    pub fn now(&self) -> Millis {
        Millis::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// A serial for the next connection (unique on this shard).
    fn take_serial(&self) -> u64 {
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        serial
    }

    /// Registers an upgraded connection whose first outbound bytes are
    /// `greeting` (the 101 response and the `connected` message), and
    /// marks it for the next flush.
    fn register(&self, serial: u64, role: Role, fd: i32, session_id: Option<Box<str>>, greeting: Bytes) -> ConnId {
        let mut conn = Conn::new(serial, role, fd, self.now(), self.config.ping_interval);
        conn.session_id = session_id;
        conn.pending_bytes = greeting.len();
        conn.queue.push_back(greeting);
        conn.dirty = true;
        let id = self.conns.borrow_mut().insert(conn);
        self.dirty.borrow_mut().push(id);
        match role {
            Role::Public => self.metrics.connections_public.add(1),
            Role::Admin => self.metrics.connections_admin.add(1),
        }
        id
    }

    /// Forgets a closed connection: its index entries, slot and count.
    fn remove(&self, id: ConnId) {
        let Some(conn) = self.conns.borrow_mut().remove(id) else {
            return;
        };
        self.unindex(id, &conn);
        match conn.role {
            Role::Public => self.metrics.connections_public.add(-1),
            Role::Admin => self.metrics.connections_admin.add(-1),
        }
        self.shared.connection_count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Asks connection `id` to close. Its index entries go at once so no
    /// further event is queued to it; the first request wins.
    pub fn request_close(&self, id: ConnId, close: Close) {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(id) else { return };
        if conn.close.is_some() {
            return;
        }
        conn.close = Some(close);
        self.unindex(id, conn);
        conn.wake();
    }

    /// Takes every index entry of connection `id` away (idempotent).
    fn unindex(&self, id: ConnId, conn: &Conn) {
        let mut index = self.index.borrow_mut();
        for (field, value) in conn.filters.iter() {
            index.unsubscribe(field, value, id);
        }
        if conn.scope_all {
            index.remove_scope_all(id);
        }
        self.publish_index_gauges(&index);
    }

    /// Delivers a batch of events to every matching connection of this
    /// shard, then flushes each touched socket once.
    pub fn deliver(&self, batch: &[Dispatch]) {
        {
            let mut conns = self.conns.borrow_mut();
            let index = self.index.borrow();
            let mut dirty = self.dirty.borrow_mut();
            let mut slow = Vec::new();
            let max_pending = self.config.max_pending_bytes;
            let mut delivered = 0;
            for event in batch {
                let stamp = self.stamp.get() + 1;
                self.stamp.set(stamp);
                let recipients = index.scope_all().iter().chain(
                    event
                        .keys
                        .iter()
                        .flat_map(|(field, value)| index.subscribers(*field, value)),
                );
                for &id in recipients {
                    let Some(conn) = conns.get_mut(id) else { continue };
                    if conn.stamp == stamp {
                        continue; // at most once per event, however many keys match
                    }
                    conn.stamp = stamp;
                    let frame = match conn.role {
                        Role::Admin => &event.admin_frame,
                        Role::Public => match &event.public_frame {
                            Some(frame) => frame,
                            None => continue,
                        },
                    };
                    if conn.pending_bytes + frame.len() > max_pending {
                        slow.push(id);
                        continue;
                    }
                    conn.pending_bytes += frame.len();
                    conn.queue.push_back(frame.clone());
                    delivered += 1;
                    if !conn.dirty {
                        conn.dirty = true;
                        dirty.push(id);
                    }
                }
            }
            self.metrics.messages_delivered.add(delivered);
            self.metrics.events_received.add(batch.len() as u64);
            drop(index);
            drop(conns);
            drop(dirty);
            for id in slow {
                self.metrics.slow_consumer_disconnects.inc();
                self.request_close(id, Close::discarding(close_code::TRY_AGAIN_LATER));
            }
        }
        self.flush_dirty();
        let now = Instant::now();
        let mut latency = self.latency.borrow_mut();
        for event in batch {
            let micros = now.saturating_duration_since(event.ingested_at).as_micros() as u64;
            let _ = latency.record(micros.max(1));
        }
    }

    /// Writes what is queued on every connection touched since the last
    /// flush. Sockets that would block are handed to their tasks.
    pub fn flush_dirty(&self) {
        let mut dirty = self.dirty.borrow_mut();
        if dirty.is_empty() {
            return;
        }
        let mut conns = self.conns.borrow_mut();
        let mut written = 0;
        let mut failed = Vec::new();
        for id in dirty.drain(..) {
            let Some(conn) = conns.get_mut(id) else { continue };
            conn.dirty = false;
            if conn.blocked || conn.close.is_some() {
                continue;
            }
            match socket::write_queue(conn) {
                Ok((n, socket::Flushed::All)) => written += n,
                Ok((n, socket::Flushed::WouldBlock)) => {
                    written += n;
                    conn.blocked = true;
                    conn.wake();
                }
                Err(_) => failed.push(id),
            }
        }
        self.metrics.bytes_written.add(written as u64);
        drop(conns);
        drop(dirty);
        for id in failed {
            self.request_close(id, Close::abrupt(close_code::GOING_AWAY));
        }
    }

    /// Queues a frame for one connection (replies, pings) and marks it dirty.
    fn enqueue(&self, conn: &mut Conn, id: ConnId, frame: Bytes) {
        conn.pending_bytes += frame.len();
        conn.queue.push_back(frame);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.borrow_mut().push(id);
        }
    }

    /// One heartbeat tick: pings due, closes the silent, publishes gauges.
    pub fn tick(&self, now: Millis) {
        let mut dead = Vec::new();
        {
            let mut conns = self.conns.borrow_mut();
            for (id, conn) in conns.iter_mut() {
                if conn.close.is_some() {
                    continue;
                }
                if let Some(sent) = conn.ping_sent {
                    if conn.last_seen >= sent {
                        conn.ping_sent = None;
                    } else if now.since(sent) >= self.config.pong_timeout {
                        dead.push(id);
                        continue;
                    }
                }
                if conn.ping_sent.is_none() && now >= conn.next_ping {
                    conn.ping_sent = Some(now);
                    conn.next_ping = now.after(self.config.ping_interval);
                    let ping = self.ping_frame.clone();
                    self.enqueue(conn, id, ping);
                }
            }
        }
        for id in dead {
            self.metrics.heartbeat_timeouts.inc();
            // SPEC §3.2: best-effort 1001, then drop without waiting.
            self.request_close(id, Close::abrupt(close_code::GOING_AWAY));
        }
        self.flush_dirty();
        let latency = self.latency.borrow();
        if let Ok(mut snapshot) = self.metrics.latency.lock() {
            snapshot.clone_from(&latency);
        }
    }

    /// The sweep of SPEC §3.2: removes index entries of connections that no
    /// longer exist and closes connections silent for two heartbeats.
    pub fn sweep(&self, now: Millis) {
        let silent_limit = (self.config.ping_interval + self.config.pong_timeout) * 2;
        let mut silent = Vec::new();
        {
            let conns = self.conns.borrow();
            let mut index = self.index.borrow_mut();
            let removed = index.retain(|id| conns.get(id).is_some_and(|c| c.close.is_none()));
            self.publish_index_gauges(&index);
            drop(index);
            self.metrics.sweep_removed.add(removed as u64);
            for (id, conn) in conns.iter() {
                if conn.close.is_none() && now.since(conn.last_seen) > silent_limit {
                    silent.push(id);
                }
            }
        }
        for id in silent {
            self.metrics.heartbeat_timeouts.inc();
            self.request_close(id, Close::abrupt(close_code::GOING_AWAY));
        }
    }

    /// Admin connections to re-check: (id, serial, session id).
    pub fn admin_sessions(&self) -> Vec<(ConnId, u64, Box<str>)> {
        self.conns
            .borrow()
            .iter()
            .filter(|(_, c)| c.close.is_none())
            .filter_map(|(id, c)| c.session_id.clone().map(|s| (id, c.serial, s)))
            .collect()
    }

    /// Closes connection `id` if it is still the one with `serial`.
    pub fn close_if_current(&self, id: ConnId, serial: u64, close: Close) {
        let current = self.conns.borrow().get(id).is_some_and(|c| c.serial == serial);
        if current {
            self.request_close(id, close);
        }
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(&self, close: Close) {
        let ids: Vec<ConnId> = self.conns.borrow().iter().map(|(id, _)| id).collect();
        for id in ids {
            self.request_close(id, close);
        }
    }

    /// Open connections on this shard.
    pub fn connection_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Publishes the index gauges; call after every index change (O(1)).
    fn publish_index_gauges(&self, index: &index::SubscriptionIndex) {
        self.metrics.index_keys.set(index.key_count() as i64);
        self.metrics.index_entries.set(index.entry_count() as i64);
    }
}
