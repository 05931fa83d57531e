//! Delivery: each event's pre-framed bytes queued to every matching
//! connection, then every touched socket flushed once.
//!
//! Runs on the shard, from the inbox loop (`queue_events`, then
//! `flush_dirty` when the `pacer` says) and after anything that queues a
//! reply (`flush_dirty`). The frame is queued by reference (`Bytes`,
//! refcount only), and each touched connection is then written once with one
//! non-blocking write (`Outbox::write_to`: small frames gathered into one
//! buffer, big ones vectored), so every event queued to a socket since its
//! last write costs one syscall together. A socket that would block is
//! written again when it reports room (`task`); the shard never waits on
//! one socket (SPEC §7).
//!
//! Everything queued to a connection counts against `--max-pending-bytes`
//! (SPEC §7): an event or a reply that would take the queue over it, once
//! the socket has taken what it can (`has_room`), closes the connection
//! with 1013 instead of being queued; a pong replaces the
//! unsent one while the socket is full (`Outbox::push_pong`). After each
//! batch the shard checks the process-wide budget (`budget`), once per
//! batch, never per message.

use std::time::Instant;

use bytes::Bytes;

use super::outbox::Flushed;
use super::{Close, Conn, ConnId, Role, Shard};
use crate::event::Dispatch;
use crate::protocol::frame::close_code;

impl Shard {
    /// Delivers a batch of events to every matching connection of this
    /// shard, then flushes each touched socket once.
    pub fn deliver(&self, batch: &[Dispatch]) {
        self.queue_events(batch);
        self.flush_dirty();
    }

    /// Queues a batch of events to every matching connection of this shard;
    /// the next `flush_dirty` writes them. Returns the frames queued.
    pub fn queue_events(&self, batch: &[Dispatch]) -> usize {
        let mut slow = Vec::new();
        let delivered = {
            let mut conns = self.conns.borrow_mut();
            let index = self.index.borrow();
            let mut dirty = self.dirty.borrow_mut();
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
                    let Some(conn) = conns.get_mut(id.key()) else { continue };
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
                    if !self.has_room(conn, frame.len()) {
                        slow.push(id);
                        continue;
                    }
                    conn.outbox.push(frame.clone(), &self.held);
                    delivered += 1;
                    if !conn.dirty {
                        conn.dirty = true;
                        dirty.push(id);
                    }
                }
            }
            self.metrics.messages_delivered.add(delivered);
            self.metrics.events_received.add(batch.len() as u64);
            delivered
        };
        for id in slow {
            self.metrics.slow_consumer_disconnects.inc();
            self.request_close(id, Close::discarding(close_code::TRY_AGAIN_LATER));
        }
        self.unflushed
            .borrow_mut()
            .extend(batch.iter().map(|event| event.ingested_at));
        delivered as usize
    }

    /// Whether `len` more bytes fit `conn`'s queue under
    /// `--max-pending-bytes`. When they would not, the queue is first
    /// written ahead of the flush: many frames can queue before one flush
    /// (pipelined replies, a backlog of events, an admin watching
    /// everything), so only a client whose socket does not take them is a
    /// slow consumer, not one that is merely behind the shard's batch.
    fn has_room(&self, conn: &mut Conn, len: usize) -> bool {
        let max = self.config.max_pending_bytes;
        if conn.outbox.pending_bytes() + len <= max {
            return true;
        }
        let Some(stream) = conn.stream.as_ref().filter(|_| !conn.blocked) else {
            return false;
        };
        match conn.outbox.write_to(stream, &self.held) {
            Ok((written, flushed)) => {
                self.metrics.bytes_written.add(written as u64);
                conn.blocked = flushed == Flushed::WouldBlock;
                conn.outbox.pending_bytes() + len <= max
            }
            Err(_) => false,
        }
    }

    /// Writes what is queued on every connection touched since the last
    /// flush. Sockets that would block wait for room (`Conn::blocked`).
    /// Then checks the budget (`check_budget`) and records the latency of
    /// every event queued since the last flush.
    pub fn flush_dirty(&self) {
        self.write_dirty();
        self.check_budget();
        let mut unflushed = self.unflushed.borrow_mut();
        if unflushed.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut latency = self.latency.borrow_mut();
        for ingested_at in unflushed.drain(..) {
            let micros = now.saturating_duration_since(ingested_at).as_micros() as u64;
            let _ = latency.record(micros.max(1));
        }
    }

    fn write_dirty(&self) {
        let mut dirty = self.dirty.borrow_mut();
        if dirty.is_empty() {
            return;
        }
        let mut conns = self.conns.borrow_mut();
        let mut written = 0;
        let mut failed = Vec::new();
        for id in dirty.drain(..) {
            let Some(conn) = conns.get_mut(id.key()) else { continue };
            conn.dirty = false;
            if conn.blocked || conn.close.is_some() {
                continue;
            }
            let Some(stream) = conn.stream.as_ref() else { continue };
            match conn.outbox.write_to(stream, &self.held) {
                Ok((n, Flushed::All)) => written += n,
                Ok((n, Flushed::WouldBlock)) => {
                    written += n;
                    conn.blocked = true;
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

    /// Queues a frame for one connection (replies, pings) and marks it for
    /// the next flush. A frame that would take the queue over
    /// `--max-pending-bytes` closes the connection with 1013 instead (SPEC
    /// §7); nothing is queued to a closing connection.
    pub(super) fn enqueue(&self, conn: &mut Conn, id: ConnId, frame: Bytes) {
        if conn.close.is_some() {
            return;
        }
        if self.closed_over_bound(conn, id, frame.len()) {
            return;
        }
        conn.outbox.push(frame, &self.held);
        self.mark_dirty(conn, id);
    }

    /// Queues a pong, counted against `--max-pending-bytes` like any frame;
    /// while the socket is full it replaces the pong queued before it
    /// instead (RFC 6455 §5.5.3 allows answering only the latest ping), so a
    /// ping flood from a client that does not read holds one pong.
    pub(super) fn enqueue_pong(&self, conn: &mut Conn, id: ConnId, frame: Bytes) {
        if conn.close.is_some() {
            return;
        }
        let frame = if conn.blocked {
            match conn.outbox.replace_pong(frame, &self.held) {
                None => return,
                Some(frame) => frame,
            }
        } else {
            frame
        };
        if self.closed_over_bound(conn, id, frame.len()) {
            return;
        }
        conn.outbox.push_pong(frame, &self.held);
        self.mark_dirty(conn, id);
    }

    /// Closes the connection with 1013 (a slow consumer, SPEC §7) when
    /// `len` more bytes would take its queue over `--max-pending-bytes`.
    fn closed_over_bound(&self, conn: &mut Conn, id: ConnId, len: usize) -> bool {
        if self.has_room(conn, len) {
            return false;
        }
        self.metrics.slow_consumer_disconnects.inc();
        self.close_conn(id, conn, Close::discarding(close_code::TRY_AGAIN_LATER));
        true
    }

    fn mark_dirty(&self, conn: &mut Conn, id: ConnId) {
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.borrow_mut().push(id);
        }
    }

    /// [`Shard::enqueue`] by id; nothing when the connection is gone.
    pub(super) fn enqueue_to(&self, id: ConnId, frame: Bytes) {
        if let Some(conn) = self.conns.borrow_mut().get_mut(id.key()) {
            self.enqueue(conn, id, frame);
        }
    }
}
