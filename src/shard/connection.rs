//! One upgraded client: its task, its frames, its messages.
//!
//! Runs on the owning shard. The task polls the socket for reads (into the
//! shard's shared scratch, so a connection at rest holds no buffer) and, when
//! the shard found the socket full, for writability. Client messages are
//! applied to the connection's filters and the shard index (SPEC §4); errors
//! are answered and survived, limits close with the codes of SPEC §4.
//! Invariant: every exit path goes through `Shard::remove`.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use glommio::net::TcpStream;

use super::{Close, Conn, ConnId, Millis, Role, Shard, socket};
use crate::protocol::frame::{self, FrameError, Kind, close_code};
use crate::protocol::{self, ClientMessage, ProtocolError, Reply, Topic};

/// Reads handled per poll before yielding to other tasks.
const READ_BUDGET: usize = 16;

/// How a connection's task ends.
enum Exit {
    /// EOF or socket error: nothing more can be written.
    PeerGone,
    /// The client sent close with this code (echoed, RFC 6455 §5.5.1).
    ClientClose(u16),
    /// We close (see [`Close`]).
    Close(Close),
}

/// The task of one connection: polls it until it ends, then runs its close
/// path and removes it from the shard.
///
/// A hand-written future rather than an `async fn`: it holds only what every
/// connection at rest needs (~150 bytes); the close path's state is boxed
/// and allocated only when the connection closes.
pub struct ConnTask {
    shard: Rc<Shard>,
    id: ConnId,
    stream: Option<TcpStream>,
    closing: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

/// Starts serving connection `id`; bytes the client pipelined behind the
/// upgrade request (`leftover`) are handled first.
pub fn serve(shard: Rc<Shard>, stream: TcpStream, id: ConnId, mut leftover: Vec<u8>) -> ConnTask {
    let mut task = ConnTask {
        shard,
        id,
        stream: Some(stream),
        closing: None,
    };
    match task.shard.on_input(id, &mut leftover) {
        Ok(()) => {}
        Err(Exit::Close(close)) => task.shard.request_close(id, close),
        Err(exit) => task.start_closing(exit),
    }
    task
}

impl ConnTask {
    fn start_closing(&mut self, exit: Exit) {
        let close = match exit {
            Exit::PeerGone => return self.stream = None,
            Exit::ClientClose(code) => Close::graceful(code),
            Exit::Close(close) => close,
        };
        let stream = self.stream.take().expect("the stream is open until closing starts");
        self.closing = Some(Box::pin(close_with(self.shard.clone(), self.id, close, stream)));
    }
}

impl Future for ConnTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let task = self.get_mut();
        if task.closing.is_none()
            && let Some(stream) = task.stream.as_mut()
        {
            let exit = std::task::ready!(task.shard.poll_conn(task.id, stream, cx));
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

/// Sends the close frame and ends the connection (see `Shard::close_with`).
async fn close_with(shard: Rc<Shard>, id: ConnId, close: Close, mut stream: TcpStream) {
    shard.close_with(id, close, &mut stream).await;
}

impl Shard {
    fn poll_conn(&self, id: ConnId, stream: &mut TcpStream, cx: &mut Context<'_>) -> Poll<Exit> {
        for _ in 0..READ_BUDGET {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id) else {
                return Poll::Ready(Exit::PeerGone);
            };
            if let Some(close) = conn.close {
                return Poll::Ready(Exit::Close(close));
            }
            match poll_write_queue(conn, stream, cx) {
                Poll::Ready(Err(_)) => return Poll::Ready(Exit::PeerGone),
                Poll::Ready(Ok(n)) => self.metrics.bytes_written.add(n as u64),
                Poll::Pending => {}
            }
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

    /// Handles bytes read from connection `id`; `Err` ends the connection.
    fn on_input(&self, id: ConnId, input: &mut [u8]) -> Result<(), Exit> {
        let max = self.config.max_message_bytes;
        let mut buffered = {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id) else { return Ok(()) };
            conn.last_seen = self.now();
            conn.partial
                .as_mut()
                .map(|p| std::mem::take(&mut p.rx))
                .unwrap_or_default()
        };
        let result;
        let rest = if buffered.is_empty() {
            let (res, used) = self.on_frames(id, input, max);
            result = res;
            &input[used..]
        } else {
            buffered.extend_from_slice(input);
            let (res, used) = self.on_frames(id, &mut buffered, max);
            result = res;
            buffered.drain(..used);
            &buffered[..]
        };
        if result.is_ok()
            && let Some(conn) = self.conns.borrow_mut().get_mut(id)
        {
            if !rest.is_empty() {
                conn.partial.get_or_insert_default().rx = rest.to_vec();
            } else if conn.partial.as_ref().is_some_and(|p| p.fragments.is_none()) {
                conn.partial = None; // at rest again: no allocation
            }
        }
        result
    }

    /// Handles every complete frame at the start of `buf`; returns how many
    /// bytes were used.
    fn on_frames(&self, id: ConnId, buf: &mut [u8], max: usize) -> (Result<(), Exit>, usize) {
        let mut used = 0;
        loop {
            let parsed = match frame::parse(&mut buf[used..], max) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return (Ok(()), used),
                Err(FrameError::TooBig(_)) => return (Err(closing(close_code::TOO_BIG)), used),
                Err(FrameError::Protocol(_)) => return (Err(closing(close_code::PROTOCOL_ERROR)), used),
            };
            let payload = &mut buf[used + parsed.payload.start..used + parsed.payload.end];
            used += parsed.consumed;
            if let Err(close) = self.on_frame(id, parsed.kind, parsed.is_final, payload, max) {
                return (Err(close), used);
            }
        }
    }

    fn on_frame(&self, id: ConnId, kind: Kind, is_final: bool, payload: &mut [u8], max: usize) -> Result<(), Exit> {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(id) else { return Ok(()) };
        match kind {
            Kind::Ping => {
                self.enqueue(conn, id, frame::pong(payload));
                Ok(())
            }
            Kind::Pong => Ok(()),
            Kind::Close => {
                // RFC 6455 §5.5.1: answer with a close echoing the code.
                Err(Exit::ClientClose(
                    frame::close_code_of(payload).unwrap_or(close_code::NORMAL),
                ))
            }
            Kind::Text | Kind::Binary if is_final => {
                if conn.partial.as_ref().is_some_and(|p| p.fragments.is_some()) {
                    return Err(closing(close_code::PROTOCOL_ERROR));
                }
                drop(conns);
                self.on_message(id, kind, payload)
            }
            Kind::Text | Kind::Binary => {
                let partial = conn.partial.get_or_insert_default();
                if partial.fragments.is_some() {
                    return Err(closing(close_code::PROTOCOL_ERROR));
                }
                partial.fragments = Some((kind, payload.to_vec()));
                Ok(())
            }
            Kind::Continuation => {
                let Some((first, mut message)) = conn.partial.as_mut().and_then(|p| p.fragments.take()) else {
                    return Err(closing(close_code::PROTOCOL_ERROR));
                };
                if message.len() + payload.len() > max {
                    return Err(closing(close_code::TOO_BIG));
                }
                message.extend_from_slice(payload);
                if !is_final {
                    conn.partial.get_or_insert_default().fragments = Some((first, message));
                    return Ok(());
                }
                drop(conns);
                self.on_message(id, first, &mut message)
            }
        }
    }

    /// One complete client message.
    fn on_message(&self, id: ConnId, kind: Kind, payload: &mut [u8]) -> Result<(), Exit> {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(id) else { return Ok(()) };
        match conn.limiter.admit(self.now(), self.config.max_client_msgs_per_sec) {
            Admit::Yes => {}
            Admit::DropSilently => return Ok(()),
            Admit::Warn => {
                let error = ProtocolError::RateLimited(self.config.max_client_msgs_per_sec);
                self.reply_error(conn, id, &error);
                return Ok(());
            }
            Admit::Close => return Err(closing(close_code::POLICY)),
        }
        if kind == Kind::Binary {
            self.reply_error(conn, id, &ProtocolError::Binary);
            return Ok(());
        }
        if std::str::from_utf8(payload).is_err() {
            // RFC 6455 §8.1: text must be UTF-8.
            return Err(closing(close_code::INVALID_PAYLOAD));
        }
        let reply = match protocol::parse(payload) {
            Ok(message) => self.apply(conn, id, message),
            Err(error) => Err(error),
        };
        match reply {
            Ok(frame) => self.enqueue(conn, id, frame),
            Err(error) => self.reply_error(conn, id, &error),
        }
        Ok(())
    }

    fn reply_error(&self, conn: &mut Conn, id: ConnId, error: &ProtocolError) {
        self.metrics.client_errors.inc();
        self.enqueue(conn, id, frame::text(&Reply::Error(error).encode()));
    }

    /// Applies a message to the connection and the index; all or nothing.
    fn apply(&self, conn: &mut Conn, id: ConnId, message: ClientMessage) -> Result<Bytes, ProtocolError> {
        let mut index = self.index.borrow_mut();
        let reply = match message {
            ClientMessage::Subscribe { filters, scope_all } => {
                if scope_all && conn.role != Role::Admin {
                    return Err(ProtocolError::Forbidden);
                }
                let max = self.config.max_filters;
                if conn.filters.len() + conn.filters.count_new(&filters) > max {
                    return Err(ProtocolError::TooManyFilters(max));
                }
                for (field, value) in filters.iter() {
                    if conn.filters.insert(field, value) {
                        index.subscribe(field, value, id);
                    }
                }
                if scope_all {
                    conn.scope_all = true;
                    index.add_scope_all(id);
                }
                Reply::Subscribed {
                    filters: &conn.filters,
                    scope_all: conn.scope_all,
                    omit_empty_filters: scope_all,
                }
                .encode()
            }
            ClientMessage::UnsubscribeTopic { topic, target } => {
                match target {
                    Topic::Filter(field, value) => {
                        if conn.filters.remove(field, &value) {
                            index.unsubscribe(field, &value, id);
                        }
                    }
                    Topic::ScopeAll => {
                        conn.scope_all = false;
                        index.remove_scope_all(id);
                    }
                }
                Reply::Unsubscribed {
                    topic: Some(&topic),
                    filters: &conn.filters,
                    scope_all: conn.scope_all,
                }
                .encode()
            }
            ClientMessage::UnsubscribeFilters(filters) => {
                for (field, value) in filters.iter() {
                    if conn.filters.remove(field, value) {
                        index.unsubscribe(field, value, id);
                    }
                }
                Reply::Unsubscribed {
                    topic: None,
                    filters: &conn.filters,
                    scope_all: conn.scope_all,
                }
                .encode()
            }
            ClientMessage::UnsubscribeAll => {
                for (field, value) in conn.filters.iter() {
                    index.unsubscribe(field, value, id);
                }
                conn.filters.clear();
                conn.scope_all = false;
                index.remove_scope_all(id);
                Reply::Unsubscribed {
                    topic: None,
                    filters: &conn.filters,
                    scope_all: false,
                }
                .encode()
            }
            ClientMessage::Ping => Reply::Pong.encode(),
        };
        self.publish_index_gauges(&index);
        Ok(frame::text(&reply))
    }

    /// Sends the close frame and ends the connection: flush what is kept,
    /// half-close, then read until the peer closes too or `linger_ms` passes
    /// (closing with unread input would reset the connection and could
    /// destroy the close frame in flight).
    async fn close_with(&self, id: ConnId, close: Close, stream: &mut TcpStream) {
        self.metrics.close(close.code);
        {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id) else { return };
            if close.discard_queue {
                // Keep only a partly written frame, so the stream stays valid.
                let keep = usize::from(conn.head_written > 0);
                conn.queue.truncate(keep);
                conn.pending_bytes = conn.queue.front().map_or(0, |f| f.len() - conn.head_written);
            }
            let frame = frame::close(close.code);
            conn.pending_bytes += frame.len();
            conn.queue.push_back(frame);
            if close.linger_ms == 0 {
                let _ = socket::write_queue(conn);
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_millis(close.linger_ms.into());
        let flushed = poll_fn(|cx| {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id) else {
                return Poll::Ready(false);
            };
            match poll_write_queue(conn, stream, cx) {
                Poll::Ready(Ok(_)) if conn.queue.is_empty() => Poll::Ready(true),
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

/// A close for a client that broke a rule: it still gets what was queued.
fn closing(code: u16) -> Exit {
    Exit::Close(Close::graceful(code))
}

async fn sleep_until<T>(deadline: Instant, value: T) -> T {
    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
    value
}

/// Writes `conn`'s queue; when the socket is full, registers for
/// writability through glommio so the task wakes when it drains.
fn poll_write_queue(conn: &mut Conn, stream: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    if conn.queue.is_empty() {
        conn.blocked = false;
        return Poll::Ready(Ok(0));
    }
    let (mut total, flushed) = socket::write_queue(conn)?;
    if flushed == socket::Flushed::All {
        conn.blocked = false;
        return Poll::Ready(Ok(total));
    }
    conn.blocked = true;
    loop {
        let head = conn.queue[0].slice(conn.head_written..);
        match Pin::new(&mut *stream).poll_write(cx, &head) {
            Poll::Ready(Ok(n)) => {
                socket::advance(conn, n);
                total += n;
                if conn.queue.is_empty() {
                    conn.blocked = false;
                    return Poll::Ready(Ok(total));
                }
            }
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending if total > 0 => {
                // Progress was made: report it; the waker stays registered.
                return Poll::Ready(Ok(total));
            }
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Token bucket of SPEC §4: `rate` messages a second, burst `rate`; over it,
/// at most one warning a second, and a close after three warnings.
pub(super) struct Limiter {
    /// Tokens spent below a full bucket (0: full), so a new bucket needs no
    /// rate to start from.
    spent: f32,
    refilled_at: Millis,
    warned_at: Option<Millis>,
    warnings: u8,
}

/// What to do with one client message.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Yes,
    DropSilently,
    Warn,
    Close,
}

impl Limiter {
    pub(super) fn new(now: Millis) -> Limiter {
        Limiter {
            spent: 0.0,
            refilled_at: now,
            warned_at: None,
            warnings: 0,
        }
    }

    fn admit(&mut self, now: Millis, rate: u32) -> Admit {
        let rate = rate as f32;
        let refill = now.since(self.refilled_at).as_secs_f32() * rate;
        self.spent = (self.spent - refill).max(0.0);
        self.refilled_at = now;
        if self.spent == 0.0 {
            self.warnings = 0; // a full bucket: the client calmed down
        }
        if self.spent + 1.0 <= rate {
            self.spent += 1.0;
            return Admit::Yes;
        }
        if self.warned_at.is_some_and(|at| now.since(at) < Duration::from_secs(1)) {
            return Admit::DropSilently;
        }
        if self.warnings >= 3 {
            return Admit::Close;
        }
        self.warnings += 1;
        self.warned_at = Some(now);
        Admit::Warn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Millis {
        Millis::from_millis(millis)
    }

    #[test]
    fn limiter_warns_once_a_second_then_closes() {
        let start = at(0);
        let mut limiter = Limiter::new(start);
        for _ in 0..5 {
            assert_eq!(limiter.admit(start, 5), Admit::Yes);
        }
        assert_eq!(limiter.admit(start, 5), Admit::Warn);
        assert_eq!(limiter.admit(start, 5), Admit::DropSilently);
        // Flooding on: one token back every 200 ms, spent at once.
        let mut verdicts = Vec::new();
        for step in 1..=40 {
            let now = at(100 * step);
            let verdict = limiter.admit(now, 5);
            if verdict == Admit::Yes {
                continue;
            }
            verdicts.push(verdict);
            let _ = limiter.admit(now, 5);
        }
        assert!(verdicts.contains(&Admit::Close), "{verdicts:?}");
        assert_eq!(verdicts.iter().filter(|v| **v == Admit::Warn).count(), 2);
    }

    #[test]
    fn limiter_forgives_a_calm_client() {
        let start = at(0);
        let mut limiter = Limiter::new(start);
        limiter.admit(start, 2);
        limiter.admit(start, 2);
        assert_eq!(limiter.admit(start, 2), Admit::Warn);
        assert_eq!(limiter.admit(at(5000), 2), Admit::Yes);
        assert_eq!(limiter.warnings, 0);
    }
}
