//! One upgraded connection's state, as its shard holds it: who it is, what
//! it subscribed to, what waits to be written, its timers and its close.
//!
//! Plain data owned by the shard's slab (`Shard::conns`); every method of the
//! shard that touches a connection goes through it. The connection's socket
//! lives here too, so no other copy of its file descriptor exists: when the
//! `Conn` (or its stream) is dropped, nothing can write to that fd again.
//! Invariant: `close.is_some()` from the moment a close is requested; from
//! then on the connection is in no index and nothing new is queued to it.
//! What a connection holds (its queue, its partial input) is tallied in the
//! shard's `Held` (see `budget`) whenever it changes.

use std::num::NonZeroU64;
use std::task::Waker;
use std::time::Duration;

use glommio::net::TcpStream;

use super::Role;
use super::limiter::Limiter;
use super::outbox::Outbox;
use crate::protocol::Filters;
use crate::protocol::frame;

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
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(millis))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.get().saturating_sub(earlier.0.get()))
    }
}

/// Client input that did not make a whole message yet.
#[derive(Default)]
pub(super) struct Partial {
    /// Bytes of a frame that arrived in pieces.
    pub(super) rx: Vec<u8>,
    /// A fragmented message being assembled, and its first frame's kind.
    pub(super) fragments: Option<(frame::Kind, Vec<u8>)>,
}

impl Partial {
    /// Memory held, as tallied: the buffers' capacities.
    pub(super) fn held_bytes(&self) -> usize {
        self.rx.capacity() + self.fragments.as_ref().map_or(0, |(_, message)| message.capacity())
    }
}

/// One upgraded connection.
pub struct Conn {
    /// Unique per shard for the process lifetime (also in `clientId`).
    pub serial: u64,
    /// Public or admin.
    pub role: Role,
    /// Admin session id, re-checked periodically.
    pub session_id: Option<Box<str>>,
    /// The socket. Taken by the close path, which then owns it until the
    /// connection is removed.
    pub(super) stream: Option<TcpStream>,
    /// Current filters (mirrored in the index).
    pub filters: Filters,
    /// Admin "all" scope (mirrored in the index).
    pub scope_all: bool,
    /// Frames waiting to be written.
    pub(super) outbox: Outbox,
    /// In the shard's dirty list.
    pub(super) dirty: bool,
    /// The socket would block: the connection task owns the next write.
    pub(super) blocked: bool,
    /// Input that arrived in pieces; `None` (no allocation) at rest.
    pub(super) partial: Option<Box<Partial>>,
    /// Last time anything arrived from the client.
    pub(super) last_seen: Millis,
    /// When the next ping is due.
    pub(super) next_ping: Millis,
    /// A ping is outstanding since then.
    pub(super) ping_sent: Option<Millis>,
    /// Rate limiter state.
    pub(super) limiter: Limiter,
    /// Last event stamp delivered (at most once per event).
    pub(super) stamp: u64,
    /// Close requested.
    pub(super) close: Option<Close>,
    /// Wakes the connection task.
    pub(super) waker: Option<Waker>,
}

impl Conn {
    /// A connection that has just been upgraded at `now`.
    pub(super) fn new(serial: u64, role: Role, stream: TcpStream, now: Millis, ping_interval: Duration) -> Conn {
        Conn {
            serial,
            role,
            session_id: None,
            stream: Some(stream),
            filters: Filters::default(),
            scope_all: false,
            outbox: Outbox::default(),
            dirty: false,
            blocked: false,
            partial: None,
            last_seen: now,
            next_ping: now.after(ping_interval),
            ping_sent: None,
            limiter: Limiter::new(now),
            stamp: 0,
            close: None,
            waker: None,
        }
    }

    /// Bytes this connection holds against the budget: its queue and its
    /// partial input.
    pub(super) fn held_bytes(&self) -> usize {
        self.outbox.pending_bytes() + self.partial.as_ref().map_or(0, |p| p.held_bytes())
    }

    /// Wakes the connection's task, if it waits.
    pub(super) fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}
