//! One shard: the connections of one core, its subscription index, delivery.
//!
//! A shard runs on one glommio executor pinned to a core and owns everything
//! here: `Rc`, `Cell` and `RefCell`, never a lock. Its tasks (started by
//! `executor`) are the inbox loop (events from ingest -> [`Shard::deliver`]),
//! the listener (accept, HTTP, upgrade), the I/O task (client input and
//! blocked writes of every connection, as the shard's epoll set reports them:
//! `task`, `poller`), one task per closing connection, the heartbeat ticker
//! and, with a session store, the session re-check. Beside the executor runs
//! the shard's poller thread, blocked in `epoll_wait`.
//!
//! The shard's behaviour is split by concern, one `impl Shard` per file:
//! `delivery` (events to sockets, flushing), `input` (client bytes to
//! frames to messages), `subscriptions` (messages applied to filters and the
//! index), `heartbeat` (pings, sweep, session re-check). Connection state is
//! `conn`, its queue `outbox`, its rate limit `limiter`; the process-wide
//! byte budget is `budget`.
//!
//! Invariants: a connection is in the index only while it is in `conns` and
//! not closing; a connection is in `dirty` at most once (`Conn::dirty`);
//! `held` is the sum of every connection's `Conn::held_bytes`.

mod budget;
mod conn;
mod delivery;
pub mod executor;
mod heartbeat;
pub mod inbox;
pub mod index;
mod input;
mod limiter;
mod listener;
mod memlock;
mod outbox;
mod pacer;
mod poller;
mod subscriptions;
mod task;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use slab::Slab;

pub use self::conn::{Close, Conn, Millis};
use self::poller::Poller;
use crate::auth::SessionStore;
use crate::config::ShardConfig;
use crate::metrics::{Registry, ShardMetrics, new_latency_histogram};
use crate::protocol::frame;
use crate::readiness::Readiness;

/// A shard's number, 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardId(pub u16);

/// A connection's slot on its shard; valid only on that shard, and reused
/// after the connection closes (pair it with [`Conn::serial`] across awaits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

impl ConnId {
    fn key(self) -> usize {
        self.0 as usize
    }

    fn of_key(key: usize) -> ConnId {
        ConnId(u32::try_from(key).expect("fewer than 2^32 connections per shard"))
    }
}

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
    /// What `/readyz` answers.
    pub readiness: Arc<Readiness>,
    /// Counters of every shard and of ingest, for `/metrics`.
    pub registry: Registry,
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
    /// Admin session store, when one is configured.
    pub sessions: Option<Box<dyn SessionStore>>,
    conns: RefCell<Slab<Conn>>,
    index: RefCell<index::SubscriptionIndex>,
    /// Bytes held for this shard's connections (queues, partial input).
    held: budget::Held,
    /// This shard's part of `--max-total-pending-bytes`.
    budget_share: usize,
    /// Connections with something queued since the last flush.
    dirty: RefCell<Vec<ConnId>>,
    /// Receive scratch shared by all connections: borrowed only inside one
    /// poll, so idle connections hold no read buffer.
    scratch: RefCell<Box<[u8]>>,
    latency: RefCell<Histogram<u64>>,
    /// When each event queued since the last flush was ingested, for the
    /// latency histogram (recorded when it is written).
    unflushed: RefCell<Vec<Instant>>,
    /// Epoch of the shard's [`Millis`] clock.
    epoch: Instant,
    /// Number of the last event delivered (at most once per event).
    stamp: Cell<u64>,
    next_serial: Cell<u64>,
    ping_frame: Bytes,
    /// This shard's epoll set (connection readiness).
    poller: Poller,
    /// The shard itself, for the tasks it starts (closes).
    me: Weak<Shard>,
}

/// Size of the shared receive scratch buffer.
const SCRATCH_BYTES: usize = 64 * 1024;

impl Shard {
    /// Creates the shard's state around its epoll set (see `poller`).
    /// Must run on the shard's own executor.
    pub fn new(
        id: ShardId,
        config: ShardConfig,
        shared: Arc<Shared>,
        sessions: Option<Box<dyn SessionStore>>,
        poller: Poller,
    ) -> Rc<Shard> {
        let metrics = shared.registry.shards[id.0 as usize].clone();
        let budget_share = config.max_total_pending_bytes / shared.registry.shards.len().max(1);
        Rc::new_cyclic(|me| Shard {
            id,
            config,
            shared,
            metrics,
            sessions,
            conns: RefCell::new(Slab::new()),
            index: RefCell::new(index::SubscriptionIndex::default()),
            held: budget::Held::default(),
            budget_share,
            dirty: RefCell::new(Vec::new()),
            scratch: RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice()),
            latency: RefCell::new(new_latency_histogram()),
            unflushed: RefCell::new(Vec::new()),
            epoch: Instant::now(),
            stamp: Cell::new(0),
            next_serial: Cell::new(0),
            ping_frame: frame::ping(),
            poller,
            me: me.clone(),
        })
    }

    /// Now, on the shard's clock.
    pub fn now(&self) -> Millis {
        Millis::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// A serial for the next connection (unique on this shard).
    fn take_serial(&self) -> u64 {
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        serial
    }

    /// Registers an upgraded connection whose first outbound bytes are
    /// `greeting` (the 101 response and the `connected` message), and
    /// flushes it; [`task::serve`] then starts serving it. `None`, with the
    /// connection counted out and nothing sent, when its socket cannot be
    /// taken over from glommio (out of file descriptors).
    fn register(
        &self,
        serial: u64,
        role: Role,
        stream: TcpStream,
        session_id: Option<Box<str>>,
        greeting: Bytes,
    ) -> Option<ConnId> {
        let stream = match task::adopt(stream) {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(shard = self.id.0, error = %err, "cannot take over an upgraded socket");
                self.shared.connection_count.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
        };
        let mut conn = Conn::new(serial, role, stream, self.now(), self.config.ping_interval);
        conn.session_id = session_id;
        let id = ConnId::of_key(self.conns.borrow_mut().insert(conn));
        match role {
            Role::Public => self.metrics.connections_public.add(1),
            Role::Admin => self.metrics.connections_admin.add(1),
        }
        self.enqueue_to(id, greeting);
        self.flush_dirty();
        Some(id)
    }

    /// Forgets a closed connection: its index entries, bytes, slot and count.
    fn remove(&self, id: ConnId) {
        let Some(conn) = self.conns.borrow_mut().try_remove(id.key()) else {
            return;
        };
        self.held.sub(conn.held_bytes());
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
        if let Some(conn) = conns.get_mut(id.key()) {
            self.close_conn(id, conn, close);
        }
    }

    /// [`Shard::request_close`] for a connection already borrowed. A close
    /// that discards the queue releases it, and any partial input, at once;
    /// the close itself runs in a task of its own (`task`).
    fn close_conn(&self, id: ConnId, conn: &mut Conn, close: Close) {
        if conn.close.is_some() {
            return;
        }
        conn.close = Some(close);
        self.unindex(id, conn);
        if close.discard_queue {
            conn.outbox.discard_unstarted(&self.held);
            if let Some(partial) = conn.partial.take() {
                self.held.sub(partial.held_bytes());
            }
        }
        self.start_close(id, conn, close);
    }

    /// Closes connection `id` if it is still the one with `serial`.
    pub fn close_if_current(&self, id: ConnId, serial: u64, close: Close) {
        let current = self.conns.borrow().get(id.key()).is_some_and(|c| c.serial == serial);
        if current {
            self.request_close(id, close);
        }
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(&self, close: Close) {
        let ids: Vec<ConnId> = self.conns.borrow().iter().map(|(key, _)| ConnId::of_key(key)).collect();
        for id in ids {
            self.request_close(id, close);
        }
    }

    /// Open connections on this shard.
    pub fn connection_count(&self) -> usize {
        self.conns.borrow().len()
    }
}
