//! Client input: bytes read from a socket -> WebSocket frames (RFC 6455) ->
//! messages (SPEC §4) -> replies.
//!
//! Runs on the shard, called by the connection's task with bytes in the
//! shard's scratch buffer. Whole frames are handled straight from that
//! buffer; only a frame that arrived in pieces, or a fragmented message, is
//! kept (in `Conn::partial`), and each byte is copied there at most once, so
//! the work is linear in the input. Errors the client can recover from are
//! answered (`reply_error`); violations end the connection with the codes of
//! SPEC §4 (`Exit`). What is kept counts against the process-wide budget
//! (`budget`): it is tallied in `Shard::held` when stored and when taken
//! back. Once the connection is closing (e.g. a reply overflowed its queue),
//! the rest of the input is dropped unread.

use super::limiter::Admit;
use super::{Close, Conn, ConnId, Shard};
use crate::protocol::frame::{self, FrameError, Kind, close_code};
use crate::protocol::{self, Limits, ProtocolError, Reply};

/// How handling input ends a connection.
pub(super) enum Exit {
    /// EOF or socket error: nothing more can be written.
    PeerGone,
    /// The client sent close with this code (echoed, RFC 6455 §5.5.1).
    ClientClose(u16),
    /// We close (see [`Close`]).
    Close(Close),
}

impl Shard {
    /// Handles bytes read from connection `id`; `Err` ends the connection.
    pub(super) fn on_input(&self, id: ConnId, input: &mut [u8]) -> Result<(), Exit> {
        let max = self.config.max_message_bytes;
        let mut buffered = {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(id.key()) else {
                return Ok(());
            };
            conn.last_seen = self.now();
            let rx = conn
                .partial
                .as_mut()
                .map(|p| std::mem::take(&mut p.rx))
                .unwrap_or_default();
            self.held.sub(rx.capacity());
            rx
        };
        let result = if buffered.is_empty() {
            // The common case: whole frames, handled in the scratch buffer.
            let (result, used) = self.on_frames(id, input, max);
            buffered.extend_from_slice(&input[used..]);
            result
        } else {
            buffered.extend_from_slice(input);
            let (result, used) = self.on_frames(id, &mut buffered, max);
            buffered.drain(..used);
            result
        };
        if result.is_ok()
            && let Some(conn) = self.conns.borrow_mut().get_mut(id.key())
            && conn.close.is_none()
        {
            if !buffered.is_empty() {
                // A frame's head start, kept until the rest arrives; a big
                // frame's buffer is not kept for a small tail.
                if buffered.capacity() > 4 * buffered.len().max(1024) {
                    buffered.shrink_to_fit();
                }
                self.held.add(buffered.capacity());
                conn.partial.get_or_insert_default().rx = buffered;
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
                Err(err) => return (Err(fail(err)), used),
            };
            let payload = &mut buf[used + parsed.payload.start..used + parsed.payload.end];
            used += parsed.consumed;
            if let Err(close) = self.on_frame(id, parsed.kind, parsed.is_final, payload, max) {
                return (Err(close), used);
            }
            if self.conns.borrow().get(id.key()).is_none_or(|c| c.close.is_some()) {
                return (Ok(()), used);
            }
        }
    }

    fn on_frame(&self, id: ConnId, kind: Kind, is_final: bool, payload: &mut [u8], max: usize) -> Result<(), Exit> {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(id.key()) else {
            return Ok(());
        };
        match kind {
            Kind::Ping => {
                self.enqueue_pong(conn, id, frame::pong(payload));
                Ok(())
            }
            Kind::Pong => Ok(()),
            // RFC 6455 §5.5.1: answer with a close echoing the code, unless
            // the close frame itself is bad (§7.4, §8.1).
            Kind::Close => Err(frame::close_reply(payload).map_or_else(fail, Exit::ClientClose)),
            Kind::Text | Kind::Binary if is_final => {
                if conn.partial.as_ref().is_some_and(|p| p.fragments.is_some()) {
                    return Err(closing(close_code::PROTOCOL_ERROR));
                }
                check_text(kind, payload, 0, true)?;
                drop(conns);
                self.on_message(id, kind, payload)
            }
            Kind::Text | Kind::Binary => {
                let partial = conn.partial.get_or_insert_default();
                if partial.fragments.is_some() {
                    return Err(closing(close_code::PROTOCOL_ERROR));
                }
                check_text(kind, payload, 0, false)?;
                let message = payload.to_vec();
                self.held.add(message.capacity());
                partial.fragments = Some((kind, message));
                Ok(())
            }
            Kind::Continuation => {
                let Some((first, mut message)) = conn.partial.as_mut().and_then(|p| p.fragments.take()) else {
                    return Err(closing(close_code::PROTOCOL_ERROR));
                };
                self.held.sub(message.capacity());
                if message.len() + payload.len() > max {
                    return Err(closing(close_code::TOO_BIG));
                }
                // Appended in place (amortised doubling): each byte of a
                // fragmented message is copied once, plus O(n) regrowth.
                let checked = message.len();
                message.extend_from_slice(payload);
                check_text(first, &message, checked, is_final)?;
                if !is_final {
                    self.held.add(message.capacity());
                    conn.partial.get_or_insert_default().fragments = Some((first, message));
                    return Ok(());
                }
                drop(conns);
                self.on_message(id, first, &mut message)
            }
        }
    }

    /// One complete client message; a text message is UTF-8 (`on_frame`
    /// checked it).
    fn on_message(&self, id: ConnId, kind: Kind, payload: &mut [u8]) -> Result<(), Exit> {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(id.key()) else {
            return Ok(());
        };
        #[cfg(feature = "conformance")]
        if self.config.conformance_echo {
            self.conformance_echo(conn, id, kind, payload);
            return Ok(());
        }
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
        let reply = match protocol::parse(payload, self.limits()) {
            Ok(message) => self.apply(conn, id, message),
            Err(error) => Err(error),
        };
        match reply {
            Ok(frame) => self.enqueue(conn, id, frame),
            Err(error) => self.reply_error(conn, id, &error),
        }
        Ok(())
    }

    /// `fanout-echo` only: the message goes back as it came (after the
    /// checks above, so Autobahn sees the engine's own framing rules).
    #[cfg(feature = "conformance")]
    fn conformance_echo(&self, conn: &mut Conn, id: ConnId, kind: Kind, payload: &[u8]) {
        let frame = match kind {
            Kind::Text => frame::text(payload),
            _ => frame::binary(payload),
        };
        self.enqueue(conn, id, frame);
    }

    /// The bounds messages are parsed against (SPEC §4).
    fn limits(&self) -> Limits {
        Limits {
            max_filters: self.config.max_filters,
            max_filter_value_bytes: self.config.max_filter_value_bytes,
        }
    }

    fn reply_error(&self, conn: &mut Conn, id: ConnId, error: &ProtocolError) {
        self.metrics.client_errors.inc();
        self.enqueue(conn, id, frame::text(&Reply::Error(error).encode()));
    }
}

/// A close for a client that broke a rule: it still gets what was queued.
fn closing(code: u16) -> Exit {
    Exit::Close(Close::graceful(code))
}

/// Fails the connection for a frame that broke RFC 6455.
fn fail(err: FrameError) -> Exit {
    closing(err.code())
}

/// RFC 6455 §8.1: text is UTF-8; a message that cannot become UTF-8 fails
/// at the fragment that shows it (see `frame::check_utf8`).
fn check_text(kind: Kind, text: &[u8], checked: usize, complete: bool) -> Result<(), Exit> {
    match kind {
        Kind::Text => frame::check_utf8(text, checked, complete).map_err(fail),
        _ => Ok(()),
    }
}
