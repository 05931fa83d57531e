//! The ingest -> shard channel: a bounded crossbeam channel plus a doorbell.
//!
//! crossbeam has no async receive, and a shard must not spin. So the shard
//! drains the channel, says it is going to sleep (`sleeping = true`), checks
//! once more, and parks its executor on a socketpair read. The ingest thread
//! sends a whole poll batch first and rings (writes one byte) once after it,
//! and only when it sees `sleeping`: a busy shard costs ingest no syscall per
//! event, and a parked shard wakes once per batch, to find the whole batch
//! waiting (so more of it shares each socket write). The `SeqCst`
//! store-then-check on one side and send-then-swap on the other make a lost
//! wakeup impossible: either the shard's re-check sees the event, or
//! ingest's swap (in `ring`, after the batch) sees `sleeping`.
//!
//! Made once at startup, one per shard, and kept alive: only `InboxSender`
//! crosses threads. Dropping the sender wakes the shard, which then sees the
//! channel disconnected and starts its shutdown. A send blocked on a full
//! inbox gives up once the engine's stop flag is set, so a slow shard
//! cannot hold shutdown past `--drain-timeout`.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TryRecvError, TrySendError};
use futures_lite::{AsyncReadExt, FutureExt};

use crate::event::Dispatch;

struct Doorbell {
    sleeping: AtomicBool,
    writer: UnixStream,
}

impl Doorbell {
    fn ring(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.ring_always();
        }
    }

    fn ring_always(&self) {
        // A full socket buffer means a wakeup is already pending.
        let _ = (&self.writer).write(&[1]);
    }
}

/// The ingest thread's end.
pub struct InboxSender {
    tx: Option<Sender<Dispatch>>,
    bell: Arc<Doorbell>,
    /// Once set, a send waiting on a full inbox gives up.
    stop: Option<Arc<AtomicBool>>,
}

/// The shard went away, or the sender was stopped while waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard inbox disconnected")]
pub struct Disconnected;

/// How often a send waiting on a full inbox looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(10);

impl InboxSender {
    /// Makes a send waiting on a full inbox give up (`Disconnected`: the
    /// event was not handed off) once `stop` is set.
    pub fn stop_waiting_on(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Hands `event` to the shard without waking it (see
    /// [`InboxSender::wake`]), waiting while its inbox is full
    /// (backpressure; the shard is woken first); returns how long it
    /// waited.
    pub fn send(&self, event: Dispatch) -> Result<Duration, Disconnected> {
        let tx = self.tx.as_ref().ok_or(Disconnected)?;
        match tx.try_send(event) {
            Ok(()) => Ok(Duration::ZERO),
            Err(TrySendError::Full(mut event)) => {
                let started = Instant::now();
                self.bell.ring_always();
                loop {
                    match tx.send_timeout(event, STOP_CHECK) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout(back)) => {
                            if self.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed)) {
                                return Err(Disconnected);
                            }
                            event = back;
                        }
                        Err(SendTimeoutError::Disconnected(_)) => return Err(Disconnected),
                    }
                }
                Ok(started.elapsed())
            }
            Err(TrySendError::Disconnected(_)) => Err(Disconnected),
        }
    }

    /// Wakes the shard if it sleeps: call after the last `send` of a batch.
    pub fn wake(&self) {
        self.bell.ring();
    }

    /// Events waiting in the inbox.
    pub fn depth(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }
}

impl Drop for InboxSender {
    fn drop(&mut self) {
        drop(self.tx.take());
        self.bell.ring_always();
    }
}

/// The shard's end, as made on the main thread; [`Inbox::attach`] it on the
/// shard's executor.
pub struct Inbox {
    rx: Receiver<Dispatch>,
    bell: Arc<Doorbell>,
    reader: UnixStream,
}

/// The shard's end, attached to its executor.
pub struct AttachedInbox {
    rx: Receiver<Dispatch>,
    bell: Arc<Doorbell>,
    parked: glommio::net::UnixStream,
}

/// Makes one shard's inbox holding at most `capacity` events.
pub fn inbox(capacity: usize) -> io::Result<(InboxSender, Inbox)> {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let (writer, reader) = UnixStream::pair()?;
    writer.set_nonblocking(true)?;
    reader.set_nonblocking(true)?;
    let bell = Arc::new(Doorbell {
        sleeping: AtomicBool::new(false),
        writer,
    });
    Ok((
        InboxSender {
            tx: Some(tx),
            bell: bell.clone(),
            stop: None,
        },
        Inbox { rx, bell, reader },
    ))
}

impl Inbox {
    /// Takes one event without waiting (tests of the sending side).
    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<Dispatch> {
        self.rx.try_recv().ok()
    }

    /// Moves the doorbell's read end onto the calling glommio executor.
    /// Must run on the shard's executor.
    pub fn attach(self) -> AttachedInbox {
        // SAFETY: the fd is a connected, owned Unix stream socket.
        let parked = unsafe { glommio::net::UnixStream::from_raw_fd(self.reader.into_raw_fd()) };
        AttachedInbox {
            rx: self.rx,
            bell: self.bell,
            parked,
        }
    }
}

/// What a receive came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Events were moved into the batch.
    Events,
    /// The deadline passed first: nothing was moved.
    TimedOut,
    /// The sender is gone and everything it sent was taken (shutdown).
    Closed,
}

impl AttachedInbox {
    /// Waits for events and moves up to `max` into `out`; `Closed` once the
    /// sender is gone and everything sent was taken.
    pub async fn recv_batch(&mut self, out: &mut Vec<Dispatch>, max: usize) -> Received {
        self.recv_batch_until(out, max, None).await
    }

    /// Like [`AttachedInbox::recv_batch`], but gives up at `deadline`; a
    /// deadline already past takes only what waits.
    pub async fn recv_batch_until(
        &mut self,
        out: &mut Vec<Dispatch>,
        max: usize,
        deadline: Option<Instant>,
    ) -> Received {
        let start = out.len();
        loop {
            let closed = self.take(out, max);
            if out.len() > start {
                return Received::Events;
            }
            if closed {
                return Received::Closed;
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Received::TimedOut;
            }
            self.bell.sleeping.store(true, Ordering::SeqCst);
            match self.rx.try_recv() {
                Ok(event) => {
                    self.bell.sleeping.store(false, Ordering::SeqCst);
                    out.push(event);
                    continue;
                }
                Err(TryRecvError::Disconnected) => return Received::Closed,
                Err(TryRecvError::Empty) => {}
            }
            let mut rung = [0u8; 64];
            let parked = async {
                if self.parked.read(&mut rung).await.is_err() {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            };
            match deadline {
                None => parked.await,
                Some(at) => {
                    // A wake-up byte consumed by a read cancelled here is
                    // harmless: the channel is checked before every park.
                    parked
                        .or(glommio::timer::sleep(at.saturating_duration_since(Instant::now())))
                        .await
                }
            }
            self.bell.sleeping.store(false, Ordering::SeqCst);
        }
    }

    /// Moves what waits, up to `max`, without waiting; true when the sender
    /// is gone and the channel empty.
    fn take(&mut self, out: &mut Vec<Dispatch>, max: usize) -> bool {
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(event) => out.push(event),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::Decoder;

    fn event() -> Dispatch {
        let outbound = Decoder::default()
            .decode(
                "booking.created",
                Some(br#"{"payload":{"course_id":"C1"}}"#),
                &crate::clock::Stamp::now(),
            )
            .expect("valid event");
        Arc::new(outbound)
    }

    #[test]
    fn a_send_waiting_on_a_full_inbox_gives_up_when_stopped() {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, inbox) = inbox(1).expect("socketpair");
        let sender = sender.stop_waiting_on(stop.clone());
        assert_eq!(sender.send(event()), Ok(Duration::ZERO));
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::Relaxed);
        });
        // Nobody drains the inbox: only the stop flag can end this send.
        assert_eq!(sender.send(event()), Err(Disconnected));
        stopper.join().expect("stopper");
        assert!(inbox.try_recv().is_some());
        assert!(inbox.try_recv().is_none(), "the second event was not handed off");
    }
}
