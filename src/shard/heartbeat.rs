//! Keeping connections honest over time (SPEC §3): pings, the pong deadline,
//! the sweep, and the admin session re-check.
//!
//! Runs on the shard from its ticker task (`executor`): `tick` every
//! fraction of the ping interval, `sweep` every `--sweep-interval`,
//! `recheck_sessions` every `--session-recheck-interval`. Each pass is one
//! walk over the shard's connections.

use super::{Close, ConnId, Millis, Shard};
use crate::auth;
use crate::protocol::frame::close_code;

impl Shard {
    /// One heartbeat tick: pings due, closes the silent, publishes the
    /// latency snapshot.
    pub fn tick(&self, now: Millis) {
        let mut dead = Vec::new();
        {
            let mut conns = self.conns.borrow_mut();
            for (key, conn) in conns.iter_mut() {
                if conn.close.is_some() {
                    continue;
                }
                if let Some(sent) = conn.ping_sent {
                    if conn.last_seen >= sent {
                        conn.ping_sent = None;
                    } else if now.since(sent) >= self.config.pong_timeout {
                        dead.push(ConnId::of_key(key));
                        continue;
                    }
                }
                if conn.ping_sent.is_none() && now >= conn.next_ping {
                    conn.ping_sent = Some(now);
                    conn.next_ping = now.after(self.config.ping_interval);
                    self.enqueue(conn, ConnId::of_key(key), self.ping_frame.clone());
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
            let removed = index.retain(|id| conns.get(id.key()).is_some_and(|c| c.close.is_none()));
            debug_assert_eq!(
                self.held.get(),
                conns.iter().map(|(_, conn)| conn.held_bytes()).sum::<usize>(),
                "the shard's tally of held bytes drifted from its connections'"
            );
            self.publish_index_gauges(&index);
            drop(index);
            self.metrics.sweep_removed.add(removed as u64);
            for (key, conn) in conns.iter() {
                if conn.close.is_none() && now.since(conn.last_seen) > silent_limit {
                    silent.push(ConnId::of_key(key));
                }
            }
        }
        for id in silent {
            self.metrics.heartbeat_timeouts.inc();
            self.request_close(id, Close::abrupt(close_code::GOING_AWAY));
        }
    }

    /// Re-checks every admin session of the shard in one store round trip
    /// (SPEC §3.4): a definite "gone, malformed or not admin" closes with
    /// 4001; when the store cannot answer, connections stay open and the
    /// failure is counted.
    pub async fn recheck_sessions(&self) {
        let Some(store) = self.sessions.as_deref() else { return };
        let sessions: Vec<(ConnId, u64, Box<str>)> = self
            .conns
            .borrow()
            .iter()
            .filter(|(_, c)| c.close.is_none())
            .filter_map(|(key, c)| c.session_id.clone().map(|s| (ConnId::of_key(key), c.serial, s)))
            .collect();
        if sessions.is_empty() {
            return;
        }
        let ids: Vec<&str> = sessions.iter().map(|(_, _, session)| &**session).collect();
        match auth::recheck(store, &ids).await {
            Ok(valid) => {
                for ((conn, serial, _), valid) in sessions.iter().zip(valid) {
                    if !valid {
                        self.close_if_current(*conn, *serial, Close::graceful(close_code::SESSION_REVOKED));
                    }
                }
            }
            Err(err) => {
                self.metrics.session_recheck_failures.inc();
                tracing::warn!(shard = self.id.0, error = %err, sessions = sessions.len(), "session re-check failed; connections stay open");
            }
        }
    }
}
