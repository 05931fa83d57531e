//! Starts a shard: a glommio executor pinned to its core, and its tasks.
//!
//! glommio (=0.9.0, its last release) is confined to `shard/`: this file,
//! the listener, the close task and the parks of the inbox and the poller.
//! The shard's main task runs the inbox loop; beside it run the listener,
//! the I/O task (`task`, fed by the shard's poller thread), the heartbeat
//! ticker and, with Redis, the session re-check. When the inbox disconnects
//! (shutdown), the shard stops accepting, closes every client with 1001,
//! waits for them up to `--drain-timeout`, and ends.
//!
//! Start-up is a handshake, so a process is never half alive: [`spawn`]
//! returns only once the executor runs (or with the reason it could not,
//! e.g. the memlock limit, and what to do about it), and a started shard
//! serves nothing until the engine opens the [`StartGate`] (every shard and
//! the Kafka source are up). A shard counts itself in `Readiness` while it
//! runs, so `/healthz` and the main loop notice one that dies.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, GlommioError, LocalExecutorBuilder, Placement, ReactorErrorKind};

use super::inbox::{AttachedInbox, Inbox, Received};
use super::memlock::{MEMLOCK_ADVICE, memlock_error};
pub use super::memlock::{MIN_MEMLOCK_BYTES, MemlockLimit, raise_memlock_limit};
use super::pacer::FlushPacer;
use super::{Close, Shard, ShardId, Shared};
use crate::auth::SessionStore;
use crate::auth::redis::RedisClient;
use crate::config::{AuthConfig, ShardConfig};
use crate::protocol::frame::close_code;
use crate::readiness::Readiness;

/// Most events taken from the inbox at a time.
const BATCH: usize = 1024;

/// Under a backlog, frames queued before a flush: what waits in the inbox
/// is taken until about this many deliveries are queued. Every socket they
/// touch is then written once, so under load more events share each write:
/// at 10 recipients per event over 10 000 sockets, ~50 frames per `sendmsg`
/// (up to 1 024 fit one, `outbox::MAX_IOV`). A queue slot is 32 bytes, so this holds
/// at most 16 MiB of slots, and queueing it takes tens of milliseconds.
const FLUSH_FRAMES: usize = 1 << 19;

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

/// Registered I/O buffer area per executor, in bytes (locked memory).
const IO_MEMORY_BYTES: usize = 1 << 20;

/// How long a shard's executor may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do when io_uring is refused.
const IO_URING_ADVICE: &str = "io_uring is unavailable: fanout needs Linux >= 5.8 with io_uring enabled \
     (sysctl kernel.io_uring_disabled=0) and, in a container, a seccomp profile that allows \
     io_uring_setup, io_uring_enter and io_uring_register (Docker >= 25 and containerd 2 block them by default; \
     see deploy/Containerfile)";

/// A shard that could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShardStartError {
    /// Locked memory for io_uring is below what glommio needs, even after
    /// raising the soft limit to the hard one.
    #[error(
        "shards cannot start: glommio needs at least {need_kib} KiB of locked memory per shard, the memlock limit is {soft_kib} KiB (hard limit {hard_kib} KiB); {MEMLOCK_ADVICE}"
    )]
    MemLock {
        /// The soft limit in force, KiB.
        soft_kib: u64,
        /// The hard limit, KiB.
        hard_kib: u64,
        /// What glommio needs, KiB.
        need_kib: u64,
    },
    /// Anything else the executor reported (io_uring missing, a core that
    /// cannot be pinned, a thread that cannot be spawned).
    #[error("shard {shard} cannot start: {reason}")]
    Failed {
        /// The shard.
        shard: u16,
        /// glommio's error.
        reason: String,
    },
}

/// Holds started shards back from serving until the engine is complete.
/// Closed (0) when made.
#[derive(Debug, Default)]
pub struct StartGate(AtomicU8);

const GATE_OPEN: u8 = 1;
const GATE_ABANDONED: u8 = 2;

impl StartGate {
    /// Every part started: shards begin serving.
    pub fn open(&self) {
        self.0.store(GATE_OPEN, Ordering::Release);
    }

    /// Start-up failed elsewhere: waiting shards end without serving.
    pub fn abandon(&self) {
        self.0.store(GATE_ABANDONED, Ordering::Release);
    }

    /// Waits until the gate opens (`true`) or is abandoned (`false`).
    /// Polls: start-up is the only wait, a few milliseconds long.
    async fn pass(&self) -> bool {
        loop {
            match self.0.load(Ordering::Acquire) {
                GATE_OPEN => return true,
                GATE_ABANDONED => return false,
                _ => glommio::timer::sleep(Duration::from_millis(1)).await,
            }
        }
    }
}

/// Spawns the shard's executor thread and waits until it runs; the shard
/// serves once `gate` opens.
pub fn spawn(start: ShardStart, gate: Arc<StartGate>) -> Result<ExecutorJoinHandle<()>, ShardStartError> {
    let shard = start.id.0;
    let placement = match start.core {
        Some(core) => Placement::Fixed(core),
        None => Placement::Unbound,
    };
    let mut builder = LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{shard}"))
        // Small registered buffer area: we do no DMA file I/O, and a large
        // one needs a large `ulimit -l`.
        .io_memory(IO_MEMORY_BYTES);
    if !start.config.spin_before_park.is_zero() {
        builder = builder.spin_before_park(start.config.spin_before_park);
    }
    let (started, running) = std::sync::mpsc::sync_channel(1);
    let handle = builder
        .spawn(move || run(start, started, gate))
        .map_err(|err| start_error(shard, err))?;
    match running.recv_timeout(START_TIMEOUT) {
        Ok(()) => Ok(handle),
        // The executor failed before running `run` (which holds `started`).
        Err(RecvTimeoutError::Disconnected) => Err(match handle.join() {
            Err(err) => start_error(shard, err),
            Ok(()) => ShardStartError::Failed {
                shard,
                reason: "it ended before it ran".into(),
            },
        }),
        Err(RecvTimeoutError::Timeout) => Err(ShardStartError::Failed {
            shard,
            reason: format!("its executor did not run within {START_TIMEOUT:?}"),
        }),
    }
}

fn start_error(shard: u16, err: GlommioError<()>) -> ShardStartError {
    match err {
        GlommioError::ReactorError(ReactorErrorKind::MemLockLimit(_, need)) => memlock_error(need),
        GlommioError::IoError(err) if matches!(err.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => {
            ShardStartError::Failed {
                shard,
                reason: format!("{err}; {IO_URING_ADVICE}"),
            }
        }
        other => ShardStartError::Failed {
            shard,
            reason: other.to_string(),
        },
    }
}

/// Counts its shard as running in `Readiness` while it lives (a panic
/// drops it too).
struct Running(Arc<Readiness>);

impl Running {
    fn new(readiness: Arc<Readiness>) -> Running {
        readiness.shard_started();
        Running(readiness)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shard_stopped();
    }
}

async fn run(start: ShardStart, started: SyncSender<()>, gate: Arc<StartGate>) {
    let ShardStart {
        id,
        listener,
        inbox,
        shared,
        config,
        auth,
        ..
    } = start;
    let _running = Running::new(shared.readiness.clone());
    // Before `started`: a shard that cannot watch sockets does not start.
    let (poller, ready) = match super::poller::poller(id.0) {
        Ok(poller) => poller,
        Err(err) => {
            tracing::error!(shard = id.0, error = %err, "cannot start the shard's epoll set");
            return;
        }
    };
    let _ = started.send(());
    drop(started);
    if !gate.pass().await {
        return;
    }
    let mut inbox = inbox.attach();
    let sessions = auth.redis_url.as_deref().map(|url| {
        let client = RedisClient::new(url, auth.redis_timeout).expect("the Redis URL was checked at startup");
        Box::new(client) as Box<dyn SessionStore>
    });
    let shard = Shard::new(id, config, shared, sessions, poller);
    // SAFETY: `listener` is an owned, bound and listening TCP socket.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let accept = glommio::spawn_local(super::listener::run(shard.clone(), listener));
    let ticker = glommio::spawn_local(tick(shard.clone()));
    let recheck = glommio::spawn_local(recheck_sessions(shard.clone()));
    let io = glommio::spawn_local(super::task::run(shard.clone(), ready));

    deliver_from(&shard, &mut inbox).await;

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
    drop(io);
    drop(ticker);
    drop(recheck);
    tracing::debug!(shard = id.0, left = shard.connection_count(), "shard stopped");
}

/// The inbox loop: events to outboxes, outboxes to sockets once nothing
/// more waits (up to [`FLUSH_FRAMES`]) and the [`FlushPacer`] allows;
/// returns when ingest is gone and the inbox empty.
async fn deliver_from(shard: &Shard, inbox: &mut AttachedInbox) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut pacer = FlushPacer::new(shard.config.max_flush_delay);
    let mut closed = false;
    while !closed {
        match inbox.recv_batch(&mut batch, BATCH).await {
            Received::Events => {}
            Received::TimedOut => continue,
            Received::Closed => break,
        }
        let mut queued = shard.queue_events(&batch);
        batch.clear();
        // What waits already, and under load what arrives before the flush
        // is due, shares its writes. A lone event finds nothing waiting and
        // no flush due, and is written at once.
        while queued < FLUSH_FRAMES {
            let now = Instant::now();
            let until = pacer.due(now).unwrap_or(now);
            match inbox.recv_batch_until(&mut batch, BATCH, Some(until)).await {
                Received::Events => {
                    queued += shard.queue_events(&batch);
                    batch.clear();
                }
                Received::TimedOut => break,
                Received::Closed => {
                    closed = true;
                    break;
                }
            }
        }
        let started = Instant::now();
        shard.flush_dirty();
        pacer.flushed(started, Instant::now());
        // A busy inbox never parks: let the connections and timers run.
        glommio::yield_if_needed().await;
    }
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
