//! Readiness of the shard's connections: one epoll instance per shard, and
//! a thread that waits on it and hands ready connections to the shard.
//!
//! Why not glommio: its streams keep an io_uring poll pending per idle
//! socket, a heap `Source` of ~0.5 KiB each, plus a task and a waker per
//! connection, and it offers no public way to await readiness of a raw fd.
//! Here a connection at rest costs no user-space memory beyond its `Conn`:
//! its socket is registered once, edge-triggered, in the shard's epoll set
//! (the kernel keeps the registration).
//!
//! Threads. [`Poller`] (register, deregister) and [`ReadyQueue`] (receive)
//! live on the shard's executor thread. The poller thread, spawned from that
//! thread so it inherits the shard's core pinning, blocks in `epoll_wait`
//! and appends what it returns to a queue behind a mutex, then rings a
//! doorbell (a socketpair the shard awaits through glommio) only when the
//! shard said it was going to sleep, so a busy shard costs it no syscall;
//! the same `SeqCst` store-then-check as in `inbox` makes a lost wakeup
//! impossible. The shard takes the whole queue in one swap.
//!
//! Owns: the epoll fd, the stop eventfd and the doorbell. Connection fds stay
//! owned by their `Conn`; closing one takes it out of the epoll set.
//! Invariants: a token in the queue may be stale (its connection closed and
//! the slot was reused): the shard checks it against the connection's
//! serial ([`Token::matches`]). At most [`MAX_QUEUED`] readiness events
//! wait in the queue: past that the poller thread waits for the shard, and
//! the kernel's ready list (one entry per socket) holds the rest.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_lite::AsyncReadExt;

use super::ConnId;

/// Events taken per `epoll_wait`.
const MAX_EVENTS: usize = 1024;

/// Readiness events queued for the shard before the poller thread waits for
/// it to catch up.
pub const MAX_QUEUED: usize = 16 * MAX_EVENTS;

/// Token of the stop eventfd; no connection has it (slab keys stay below
/// `u32::MAX`).
const STOP: u64 = u64::MAX;

/// What the shard registers each connection for: readable, writable, peer
/// half-closed; edge-triggered, so each change is reported once.
const INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// A connection as epoll names it: its slot and the low half of its serial,
/// so an event for a closed connection is not taken for the slot's next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(u64);

impl Token {
    /// The token of connection `id` with `serial`.
    pub fn new(id: ConnId, serial: u64) -> Token {
        Token((serial & u64::from(u32::MAX)) << 32 | u64::from(id.0))
    }

    /// The connection's slot.
    pub fn id(self) -> ConnId {
        ConnId(self.0 as u32)
    }

    /// Whether the token still names the connection in its slot.
    pub fn matches(self, serial: u64) -> bool {
        self.0 >> 32 == serial & u64::from(u32::MAX)
    }
}

/// One readiness report.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// Which connection.
    pub token: Token,
    /// `EPOLL*` bits.
    pub events: u32,
}

impl Ready {
    /// Input, end of input or an error to read.
    pub fn readable(self) -> bool {
        self.events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
    }

    /// Room to write, or an error a write will report.
    pub fn writable(self) -> bool {
        self.events & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
    }
}

/// What the poller thread hands over, behind the mutex.
#[derive(Default)]
struct Queue {
    ready: Vec<Ready>,
    /// The poller thread waits for the shard to take `ready`.
    waiting: bool,
    /// The shard is gone: the poller thread ends.
    stopped: bool,
}

/// State shared by the shard and its poller thread.
struct Handoff {
    queue: Mutex<Queue>,
    taken: Condvar,
    /// The shard is about to park on the doorbell.
    sleeping: AtomicBool,
    bell: UnixStream,
}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is intact.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shard's side of its epoll set: registers and deregisters sockets.
/// Dropping it stops the poller thread.
pub struct Poller {
    epoll: Arc<OwnedFd>,
    handoff: Arc<Handoff>,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

/// Where the shard receives readiness; owned by its I/O task.
pub struct ReadyQueue {
    handoff: Arc<Handoff>,
    parked: glommio::net::UnixStream,
}

/// Makes a shard's epoll set and starts its poller thread. Must run on the
/// shard's executor thread (the thread inherits its pinning; the doorbell
/// is attached to its executor).
pub fn poller(shard: u16) -> io::Result<(Poller, ReadyQueue)> {
    // SAFETY: epoll_create1 takes no pointers; a non-negative result is a
    // new fd that nothing else owns.
    let epoll = Arc::new(unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) });
    // SAFETY: as above, for eventfd.
    let stop = unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?) };
    ctl(
        &epoll,
        libc::EPOLL_CTL_ADD,
        stop.as_raw_fd(),
        libc::EPOLLIN as u32,
        STOP,
    )?;
    let (bell, parked) = UnixStream::pair()?;
    bell.set_nonblocking(true)?;
    parked.set_nonblocking(true)?;
    let handoff = Arc::new(Handoff {
        queue: Mutex::new(Queue::default()),
        taken: Condvar::new(),
        sleeping: AtomicBool::new(false),
        bell,
    });
    let thread = std::thread::Builder::new().name(format!("poller-{shard}")).spawn({
        let (epoll, handoff) = (epoll.clone(), handoff.clone());
        move || wait_loop(&epoll, &handoff)
    })?;
    // SAFETY: the fd is a connected Unix stream socket we own.
    let parked = unsafe { glommio::net::UnixStream::from_raw_fd(parked.into_raw_fd()) };
    Ok((
        Poller {
            epoll,
            handoff: handoff.clone(),
            stop,
            thread: Some(thread),
        },
        ReadyQueue { handoff, parked },
    ))
}

impl Poller {
    /// Registers `socket` under `token`. Readiness it already has is
    /// reported at once (a fresh socket: writable).
    pub fn watch(&self, socket: BorrowedFd<'_>, token: Token) -> io::Result<()> {
        ctl(&self.epoll, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), INTEREST, token.0)
    }

    /// Deregisters `socket` (before someone else waits on it). Events already
    /// queued for it stay queued, and are stale.
    pub fn unwatch(&self, socket: BorrowedFd<'_>) -> io::Result<()> {
        ctl(&self.epoll, libc::EPOLL_CTL_DEL, socket.as_raw_fd(), 0, 0)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.handoff.lock().stopped = true;
        self.handoff.taken.notify_one();
        // Wakes `epoll_wait`; eventfd writes are 8 bytes.
        // SAFETY: writes 8 bytes from a live u64 to an fd we own.
        unsafe { libc::write(self.stop.as_raw_fd(), (&1u64 as *const u64).cast(), 8) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ReadyQueue {
    /// Moves every queued readiness event into `out` (which should be empty;
    /// its allocation goes to the poller thread) without waiting; false when
    /// there were none.
    pub fn take(&mut self, out: &mut Vec<Ready>) -> bool {
        debug_assert!(out.is_empty(), "the events handed over last time were not all handled");
        let mut queue = self.handoff.lock();
        if queue.ready.is_empty() {
            return false;
        }
        std::mem::swap(&mut queue.ready, out);
        if queue.waiting {
            queue.waiting = false;
            self.handoff.taken.notify_one();
        }
        true
    }

    /// Waits until readiness events are queued and moves them into `out`.
    pub async fn wait(&mut self, out: &mut Vec<Ready>) {
        loop {
            if self.take(out) {
                return;
            }
            self.handoff.sleeping.store(true, Ordering::SeqCst);
            if self.take(out) {
                self.handoff.sleeping.store(false, Ordering::SeqCst);
                return;
            }
            let mut rung = [0u8; 64];
            if self.parked.read(&mut rung).await.is_err() {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            self.handoff.sleeping.store(false, Ordering::SeqCst);
        }
    }
}

/// The poller thread: waits on the epoll set, queues what it reports, rings
/// the shard when it sleeps, until the shard drops its [`Poller`].
fn wait_loop(epoll: &OwnedFd, handoff: &Handoff) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    loop {
        // SAFETY: `events` has room for MAX_EVENTS entries, and the epoll fd
        // is kept open by the Arc this thread holds.
        let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), MAX_EVENTS as i32, -1) };
        let n = match cvt(n) {
            Ok(n) => n as usize,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::error!(error = %err, "epoll_wait failed; the shard's connections get no more input");
                return;
            }
        };
        let mut queue = handoff.lock();
        if queue.stopped {
            return;
        }
        queue
            .ready
            .extend(events[..n].iter().filter(|e| e.u64 != STOP).map(|e| Ready {
                token: Token(e.u64),
                events: e.events,
            }));
        let full = queue.ready.len() >= MAX_QUEUED;
        drop(queue);
        if handoff.sleeping.swap(false, Ordering::SeqCst) {
            // A full socket buffer means a wakeup is already pending.
            let _ = (&handoff.bell).write(&[1]);
        }
        if full {
            let mut queue = handoff.lock();
            while queue.ready.len() >= MAX_QUEUED && !queue.stopped {
                queue.waiting = true;
                queue = handoff.taken.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

fn ctl(epoll: &OwnedFd, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: both fds are open for the call; `event` is a live struct the
    // kernel reads (and ignores for EPOLL_CTL_DEL).
    cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) }).map(drop)
}

fn cvt(result: i32) -> io::Result<i32> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_its_own_serial() {
        let token = Token::new(ConnId(7), (5 << 32) | 42);
        assert_eq!(token.id(), ConnId(7));
        assert!(token.matches(42));
        assert!(token.matches((9 << 32) | 42), "only the low half is kept");
        assert!(!token.matches(43));
        assert_ne!(Token::new(ConnId(u32::MAX - 1), u64::MAX).0, STOP);
    }
}
