//! The task of one upgraded connection: read, hand bytes to `input`, write
//! what the shard could not, and close.
//!
//! Runs on the owning shard, one per connection. The task polls the socket
//! for reads (into the shard's shared scratch, so a connection at rest holds
//! no buffer) and, when the shard found the socket full, for writability.
//! It is a hand-written future rather than an `async fn`: at rest it holds
//! only the shard and the connection's id; the close path's state is boxed
//! and allocated only when the connection closes.
//! Invariant: every way out goes through `Shard::remove`.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use glommio::net::TcpStream;

use super::budget::Held;
use super::input::Exit;
use super::outbox::{Flushed, Outbox};
use super::{Close, ConnId, Shard};
use crate::protocol::frame;

/// Reads handled per poll before yielding to other tasks.
const READ_BUDGET: usize = 16;

/// The task of one connection: polls it until it ends, then runs its close
/// path and removes it from the shard.
pub struct ConnTask {
    shard: Rc<Shard>,
    id: ConnId,
    closing: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

/// Starts serving connection `id`; bytes the client pipelined behind the
/// upgrade request (`leftover`) are handled first.
pub fn serve(shard: Rc<Shard>, id: ConnId, mut leftover: Vec<u8>) -> ConnTask {
    let mut task = ConnTask {
        shard,
        id,
        closing: None,
    };
    match task.shard.on_input(id, &mut leftover) {
        Ok(()) => task.shard.flush_dirty(),
        Err(exit) => task.start_closing(exit),
    }
    task
}

impl ConnTask {
    fn start_closing(&mut self, exit: Exit) {
        let shard = &self.shard;
        let close = match exit {
            Exit::PeerGone => {
                // Nothing can be written: drop the socket now.
                if let Some(conn) = shard.conns.borrow_mut().get_mut(self.id.key()) {
                    conn.stream = None;
                }
                return;
            }
            Exit::ClientClose(code) => Close::graceful(code),
            Exit::Close(close) => close,
        };
        // Out of the index first: nothing may be queued behind the close frame.
        shard.request_close(self.id, close);
        let close = shard.conns.borrow().get(self.id.key()).and_then(|c| c.close);
        let stream = shard
            .conns
            .borrow_mut()
            .get_mut(self.id.key())
            .and_then(|conn| conn.stream.take());
        if let (Some(close), Some(stream)) = (close, stream) {
            self.closing = Some(Box::pin(close_with(shard.clone(), self.id, close, stream)));
        }
    }
}

impl Future for ConnTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let task = self.get_mut();
        if task.closing.is_none()
            && task
                .shard
                .conns
                .borrow()
                .get(task.id.key())
                .is_some_and(|c| c.stream.is_some())
        {
            let exit = std::task::ready!(task.shard.poll_conn(task.id, cx));
            task.start_closing(exit);
        }
        if let Some(closing) = task.closing.as_mut() {
            std::task::ready!(closing.as_mut().poll(cx));
            task.closing = None;
        }
        task.shard.remove(task.id);
        Poll::Ready(())
    }
}

impl Shard {
    /// Reads and writes connection `id` until it would block or ends.
    fn poll_conn(&self, id: ConnId, cx: &mut Context<'_>) -> Poll<Exit> {
        for _ in 0..READ_BUDGET {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id.key()) else {
                return Poll::Ready(Exit::PeerGone);
            };
            if let Some(close) = conn.close {
                return Poll::Ready(Exit::Close(close));
            }
            let Some(stream) = conn.stream.as_mut() else {
                return Poll::Ready(Exit::PeerGone);
            };
            match poll_write(&mut conn.outbox, stream, &self.held, cx) {
                Poll::Ready(Err(_)) => return Poll::Ready(Exit::PeerGone),
                Poll::Ready(Ok(n)) => self.metrics.bytes_written.add(n as u64),
                Poll::Pending => {}
            }
            // Whatever is left waits for writability: the task writes it.
            conn.blocked = !conn.outbox.is_empty();
            let mut scratch = self.scratch.borrow_mut();
            match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Exit::PeerGone),
                Poll::Ready(Ok(n)) => {
                    drop(conns);
                    match self.on_input(id, &mut scratch[..n]) {
                        Ok(()) => {}
                        Err(Exit::Close(close)) => self.request_close(id, close),
                        Err(exit) => return Poll::Ready(exit),
                    }
                    drop(scratch);
                    self.flush_dirty();
                }
                Poll::Pending => {
                    if !conn.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        conn.waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Sends the close frame and ends the connection: flush what is kept,
    /// half-close, then read until the peer closes too or `linger_ms` passes
    /// (closing with unread input would reset the connection and could
    /// destroy the close frame in flight).
    async fn close_with(&self, id: ConnId, close: Close, stream: &mut TcpStream) {
        self.metrics.close(close.code);
        {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id.key()) else { return };
            if close.discard_queue {
                conn.outbox.discard_unstarted(&self.held);
            }
            conn.outbox.push(frame::close(close.code), &self.held);
            if close.linger_ms == 0 {
                let _ = conn.outbox.write_to(stream, &self.held);
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_millis(close.linger_ms.into());
        let flushed = poll_fn(|cx| {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id.key()) else {
                return Poll::Ready(false);
            };
            match poll_write(&mut conn.outbox, stream, &self.held, cx) {
                Poll::Ready(Ok(_)) if conn.outbox.is_empty() => Poll::Ready(true),
                Poll::Ready(Ok(_)) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Ready(Err(_)) => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .or(sleep_until(deadline, false))
        .await;
        if !flushed {
            return;
        }
        let _ = stream.shutdown(std::net::Shutdown::Write).await;
        let drained = async {
            loop {
                let n = poll_fn(|cx| {
                    let mut scratch = self.scratch.borrow_mut();
                    Pin::new(&mut *stream).poll_read(cx, &mut scratch[..])
                })
                .await;
                if !matches!(n, Ok(n) if n > 0) {
                    return true;
                }
            }
        };
        drained.or(sleep_until(deadline, true)).await;
    }
}

/// Sends the close frame and ends the connection (see `Shard::close_with`).
async fn close_with(shard: Rc<Shard>, id: ConnId, close: Close, mut stream: TcpStream) {
    shard.close_with(id, close, &mut stream).await;
}

async fn sleep_until<T>(deadline: Instant, value: T) -> T {
    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
    value
}

/// Writes `outbox`; when the socket is full, registers for writability
/// through glommio so the task wakes when it drains. `Ready(Ok(n))` once
/// the outbox is empty or some progress was made.
fn poll_write(
    outbox: &mut Outbox,
    stream: &mut TcpStream,
    held: &Held,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if outbox.is_empty() {
        return Poll::Ready(Ok(0));
    }
    let (mut total, flushed) = outbox.write_to(stream, held)?;
    if flushed == Flushed::All {
        return Poll::Ready(Ok(total));
    }
    loop {
        let head = outbox.head();
        match Pin::new(&mut *stream).poll_write(cx, &head) {
            Poll::Ready(Ok(n)) => {
                outbox.advance(n, held);
                total += n;
                if outbox.is_empty() {
                    return Poll::Ready(Ok(total));
                }
            }
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            // Progress was made: report it; the waker stays registered.
            Poll::Pending if total > 0 => return Poll::Ready(Ok(total)),
            Poll::Pending => return Poll::Pending,
        }
    }
}
