//! Starts a shard: a glommio executor pinned to its core, and its tasks.
//!
//! glommio (=0.9.0, its last release) is confined to `shard/`: this file,
//! the listener, the connection task and the inbox's park. The shard's main
//! task runs the inbox loop; beside it run the listener, the heartbeat
//! ticker and, with Redis, the session re-check. When the inbox disconnects
//! (shutdown), the shard stops accepting, closes every client with 1001,
//! waits for them up to `--drain-timeout`, and ends.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use super::inbox::Inbox;
use super::{Close, Shard, ShardId, Shared};
use crate::auth::SessionStore;
use crate::auth::redis::RedisClient;
use crate::config::{AuthConfig, ShardConfig};
use crate::protocol::frame::close_code;

/// Events taken from the inbox per delivery batch.
const BATCH: usize = 256;

/// Everything a shard thread starts from.
pub struct ShardStart {
    /// Shard number.
    pub id: ShardId,
    /// Core to pin to, or `None`.
    pub core: Option<usize>,
    /// A bound, listening SO_REUSEPORT socket.
    pub listener: OwnedFd,
    /// The shard's inbox.
    pub inbox: Inbox,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Limits and intervals.
    pub config: ShardConfig,
    /// Redis settings.
    pub auth: AuthConfig,
}

/// Spawns the shard's executor thread.
pub fn spawn(start: ShardStart) -> glommio::Result<ExecutorJoinHandle<()>, ()> {
    let placement = match start.core {
        Some(core) => Placement::Fixed(core),
        None => Placement::Unbound,
    };
    let mut builder = LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{}", start.id.0))
        // Small registered buffer area: we do no DMA file I/O, and a large
        // one needs a large `ulimit -l`.
        .io_memory(1 << 20);
    if !start.config.spin_before_park.is_zero() {
        builder = builder.spin_before_park(start.config.spin_before_park);
    }
    builder.spawn(move || run(start))
}

async fn run(start: ShardStart) {
    let ShardStart {
        id,
        listener,
        inbox,
        shared,
        config,
        auth,
        ..
    } = start;
    let mut inbox = inbox.attach();
    let sessions = auth.redis_url.as_deref().map(|url| {
        let client = RedisClient::new(url, auth.redis_timeout).expect("the Redis URL was checked at startup");
        Box::new(client) as Box<dyn SessionStore>
    });
    let shard = Shard::new(id, config, shared, sessions);
    // SAFETY: `listener` is an owned, bound and listening TCP socket.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let accept = glommio::spawn_local(super::listener::run(shard.clone(), listener));
    let ticker = glommio::spawn_local(tick(shard.clone()));
    let recheck = glommio::spawn_local(recheck_sessions(shard.clone()));

    let mut batch = Vec::with_capacity(BATCH);
    while inbox.recv_batch(&mut batch, BATCH).await {
        shard.deliver(&batch);
        batch.clear();
    }

    // Shutdown (SPEC §10): stop accepting, close 1001, wait for the clients.
    drop(accept);
    let drain = shard.config.drain_timeout;
    let deadline = Instant::now() + drain;
    shard.close_all(Close {
        code: close_code::GOING_AWAY,
        discard_queue: false,
        linger_ms: drain.as_millis().min(u32::MAX as u128) as u32,
    });
    while shard.connection_count() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    drop(ticker);
    drop(recheck);
    tracing::debug!(shard = id.0, left = shard.connection_count(), "shard stopped");
}

/// Heartbeat and sweep (SPEC §3.2).
async fn tick(shard: Rc<Shard>) {
    let config = &shard.config;
    let period =
        (config.ping_interval.min(config.pong_timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut next_sweep = shard.now().after(config.sweep_interval);
    loop {
        glommio::timer::sleep(period).await;
        let now = shard.now();
        shard.tick(now);
        if now >= next_sweep {
            shard.sweep(now);
            next_sweep = now.after(config.sweep_interval);
        }
    }
}

/// The admin session re-check of SPEC §3.4, every
/// `--session-recheck-interval`.
async fn recheck_sessions(shard: Rc<Shard>) {
    if shard.sessions.is_none() {
        return;
    }
    loop {
        glommio::timer::sleep(shard.config.session_recheck_interval).await;
        shard.recheck_sessions().await;
    }
}
