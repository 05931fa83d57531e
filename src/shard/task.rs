//! Connection I/O: the shard's one I/O task reads every connection with
//! input and writes every connection the shard found full, as its epoll set
//! (`poller`) reports them; a closing connection gets a task of its own.
//!
//! Runs on the owning shard. [`run`] takes readiness in batches. A readable
//! socket is read until it would block (edge-triggered: a socket not drained
//! reports nothing new) into the shard's shared scratch, so a connection at
//! rest holds no buffer, and the bytes go to `input`; one with input left
//! after [`READ_BUDGET`] reads is carried to the next turn, after the shard's
//! other tasks had theirs. A writable socket whose queue was blocked is
//! written. [`serve`] starts a connection: the bytes pipelined behind its
//! upgrade request first, then its socket joins the epoll set.
//!
//! A close (`Shard::start_close`) takes the socket out of the epoll set and
//! hands it to a task of its own, which sends the close frame, half-closes
//! and lingers for the peer's end; closing connections are few, so that task
//! may cost what an idle connection must not, and drives the socket through
//! glommio.
//! Invariants: a connection's socket is in its `Conn` (and, once served, in
//! the epoll set) until its close starts or it is removed; every way out goes
//! through `Shard::remove`, once: from here when the peer is gone, from the
//! close task otherwise.

use std::future::poll_fn;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use slab::Slab;

use super::budget::Held;
use super::input::Exit;
use super::outbox::{Flushed, Outbox};
use super::poller::{Ready, ReadyQueue, Token};
use super::{Close, Conn, ConnId, Shard};
use crate::protocol::frame::{self, close_code};

/// Reads of one connection per turn before the others get theirs.
const READ_BUDGET: usize = 16;

/// Takes an upgraded socket from glommio, which has no `into_raw_fd`: a
/// duplicate of its fd stays and the glommio stream (its fd, its pending
/// poll) is dropped, so the connection's fd is owned once, by its `Conn`.
pub(super) fn adopt(stream: glommio::net::TcpStream) -> io::Result<TcpStream> {
    // SAFETY: the fd is open for as long as `stream` lives, and the borrow
    // ends before `stream` is dropped.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()?;
    drop(stream);
    let socket = TcpStream::from(fd);
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Starts serving connection `id`, just registered: bytes the client
/// pipelined behind the upgrade request (`leftover`) are handled first,
/// then its socket joins the epoll set (which reports input that arrived
/// meanwhile at once).
pub fn serve(shard: &Shard, id: ConnId, mut leftover: Vec<u8>) {
    match shard.on_input(id, &mut leftover) {
        Ok(()) => shard.flush_dirty(),
        Err(exit) => return shard.exit(id, exit),
    }
    let mut conns = shard.conns.borrow_mut();
    let Some(conn) = conns.get_mut(id.key()).filter(|c| c.close.is_none()) else {
        return;
    };
    let Some(stream) = conn.stream.as_ref() else { return };
    if let Err(err) = shard.poller.watch(stream.as_fd(), Token::new(id, conn.serial)) {
        tracing::warn!(shard = shard.id.0, error = %err, "cannot watch a connection; closing it");
        shard.close_conn(id, conn, Close::abrupt(close_code::TRY_AGAIN_LATER));
    }
}

/// The shard's I/O task: handles readiness until it is dropped (shutdown).
pub async fn run(shard: Rc<Shard>, mut queue: ReadyQueue) {
    let mut ready = Vec::new();
    let mut carried = Vec::new();
    let mut carry = Vec::new();
    loop {
        if carried.is_empty() {
            queue.wait(&mut ready).await;
        } else {
            queue.take(&mut ready);
        }
        for event in ready.drain(..) {
            shard.on_ready(event, &mut carry);
        }
        for token in carried.drain(..) {
            if shard.read(token) == Drained::No {
                carry.push(token);
            }
        }
        std::mem::swap(&mut carried, &mut carry);
        // Let the inbox, the listener and the ticker run between batches.
        futures_lite::future::yield_now().await;
    }
}

/// Whether a read pass left the socket empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// It would block, or the connection is gone or closing.
    Yes,
    /// Its budget ran out first: read it again next turn.
    No,
}

/// The connection `token` names, while it is served here: not closing, its
/// socket still in place.
fn current(conns: &mut Slab<Conn>, token: Token) -> Option<&mut Conn> {
    conns
        .get_mut(token.id().key())
        .filter(|c| token.matches(c.serial) && c.close.is_none() && c.stream.is_some())
}

impl Shard {
    /// Handles one readiness report; a connection with input left goes to
    /// `carry`.
    fn on_ready(&self, ready: Ready, carry: &mut Vec<Token>) {
        if ready.writable() && !self.write_blocked(ready.token) {
            return;
        }
        if ready.readable() && self.read(ready.token) == Drained::No {
            carry.push(ready.token);
        }
    }

    /// Writes a connection whose queue waits for room; false when it is gone.
    fn write_blocked(&self, token: Token) -> bool {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = current(&mut conns, token) else {
            return false;
        };
        let Some(stream) = conn.stream.as_ref().filter(|_| conn.blocked) else {
            return true;
        };
        match conn.outbox.write_to(stream, &self.held) {
            Ok((written, flushed)) => {
                self.metrics.bytes_written.add(written as u64);
                conn.blocked = flushed == Flushed::WouldBlock;
                true
            }
            Err(_) => {
                drop(conns);
                self.exit(token.id(), Exit::PeerGone);
                false
            }
        }
    }

    /// Reads connection `token` until it would block, its budget runs out, or
    /// it ends; each read's bytes go to `input`, its replies out at once.
    fn read(&self, token: Token) -> Drained {
        let id = token.id();
        for _ in 0..READ_BUDGET {
            let mut scratch = self.scratch.borrow_mut();
            let read = {
                let mut conns = self.conns.borrow_mut();
                let Some(conn) = current(&mut conns, token) else {
                    return Drained::Yes;
                };
                let mut stream = conn.stream.as_ref().expect("a current connection has its socket");
                loop {
                    match stream.read(&mut scratch[..]) {
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        read => break read,
                    }
                }
            };
            let result = match read {
                Ok(0) => Err(Exit::PeerGone),
                Ok(n) => self.on_input(id, &mut scratch[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Drained::Yes,
                Err(_) => Err(Exit::PeerGone),
            };
            drop(scratch);
            match result {
                Ok(()) => self.flush_dirty(),
                Err(exit) => {
                    self.exit(id, exit);
                    return Drained::Yes;
                }
            }
        }
        Drained::No
    }

    /// Ends connection `id` the way `exit` says.
    fn exit(&self, id: ConnId, exit: Exit) {
        match exit {
            // Nothing can be written: drop the socket now.
            Exit::PeerGone => self.remove(id),
            Exit::ClientClose(code) => self.request_close(id, Close::graceful(code)),
            Exit::Close(close) => self.request_close(id, close),
        }
    }

    /// Hands connection `id`, whose close was just requested, to a close
    /// task of its own. Must run on the owning shard.
    pub(super) fn start_close(&self, id: ConnId, conn: &mut Conn, close: Close) {
        let Some(stream) = conn.stream.take() else { return };
        // Its readiness is the close task's from now on (an error means it
        // was never watched: its close came with its first bytes).
        let _ = self.poller.unwatch(stream.as_fd());
        // None only while the shard itself is being dropped.
        if let Some(shard) = self.me.upgrade() {
            glommio::spawn_local(close_task(shard, id, close, stream)).detach();
        }
    }

    /// Sends the close frame and ends the connection: flush what is kept,
    /// half-close, then read until the peer closes too or `linger_ms` passes
    /// (closing with unread input would reset the connection and could
    /// destroy the close frame in flight).
    async fn close_with(&self, id: ConnId, close: Close, stream: TcpStream) {
        self.metrics.close(close.code);
        {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id.key()) else { return };
            if close.discard_queue {
                conn.outbox.discard_unstarted(&self.held);
            }
            conn.outbox.push(frame::close(close.code), &self.held);
            if close.linger_ms == 0 {
                let _ = conn.outbox.write_to(&stream, &self.held);
                return;
            }
        }
        // Lingering waits on the socket: glommio takes it for its last
        // moments.
        // SAFETY: the fd is a connected TCP socket, and `into_raw_fd` gave up
        // its only other owner.
        let mut stream = unsafe { glommio::net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
        let stream = &mut stream;
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

/// Closes connection `id` (see `Shard::close_with`), then removes it.
async fn close_task(shard: Rc<Shard>, id: ConnId, close: Close, stream: TcpStream) {
    // glommio runs a task it spawns at once, up to its first wait, and the
    // close was requested with the connections borrowed: wait for the
    // caller to return first.
    futures_lite::future::yield_now().await;
    shard.close_with(id, close, stream).await;
    shard.remove(id);
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
    stream: &mut glommio::net::TcpStream,
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
