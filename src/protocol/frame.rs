//! WebSocket framing, server side (RFC 6455 §5).
//!
//! Outbound: server frames are unmasked, so one frame's bytes serve every
//! recipient; [`text`] frames a message once. Inbound: [`parse`] reads one
//! client frame from a byte slice in place (unmasking it there), so a shard
//! needs no per-connection read buffer unless a frame arrives in pieces.
//! Header parsing is tungstenite's.

use std::io::Cursor;

use bytes::Bytes;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// Close codes fanout sends (RFC 6455 §7.4.1, plus 4001 of SPEC §3.4).
pub mod close_code {
    /// Normal closure (answer to a client close).
    pub const NORMAL: u16 = 1000;
    /// Going away: shutdown, dead peer.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (e.g. unmasked client frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Text that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation: rate limit exceeded repeatedly.
    pub const POLICY: u16 = 1008;
    /// Message over `--max-message-bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// Try again later: slow consumer.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Admin session revoked or no longer admin.
    pub const SESSION_REVOKED: u16 = 4001;
}

/// Frames `payload` as one final text frame.
pub fn text(payload: &[u8]) -> Bytes {
    encode(OpCode::Data(Data::Text), payload)
}

/// Frames `payload` as one final binary frame.
pub fn binary(payload: &[u8]) -> Bytes {
    encode(OpCode::Data(Data::Binary), payload)
}

/// A ping frame with an empty payload.
pub fn ping() -> Bytes {
    encode(OpCode::Control(Control::Ping), &[])
}

/// A pong echoing `payload` (RFC 6455 §5.5.3).
pub fn pong(payload: &[u8]) -> Bytes {
    encode(OpCode::Control(Control::Pong), payload)
}

/// A close frame with `code` and no reason text.
pub fn close(code: u16) -> Bytes {
    encode(OpCode::Control(Control::Close), &code.to_be_bytes())
}

fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut out = Vec::with_capacity(header.len(len) + payload.len());
    header.format(len, &mut out).expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// The payload of a frame fanout encoded (tests and benches read it back).
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let mut cursor = Cursor::new(frame);
    match FrameHeader::parse(&mut cursor) {
        Ok(Some((_, len))) => {
            let start = cursor.position() as usize;
            &frame[start..start + len as usize]
        }
        _ => &[],
    }
}

/// What a client frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (start of a message).
    Text,
    /// Binary (start of a message).
    Binary,
    /// Continuation of a fragmented message.
    Continuation,
    /// Close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

/// One parsed client frame; `payload` indexes the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Frame kind.
    pub kind: Kind,
    /// FIN bit.
    pub is_final: bool,
    /// Payload range within the buffer passed to [`parse`], unmasked.
    pub payload: std::ops::Range<usize>,
    /// Bytes of the buffer this frame used.
    pub consumed: usize,
}

/// A client frame that ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Payload longer than allowed (close 1009).
    #[error("frame of {0} bytes is over the limit")]
    TooBig(u64),
    /// Anything RFC 6455 forbids (close 1002).
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// Text, or a close reason, that is not UTF-8 (close 1007).
    #[error("text is not UTF-8")]
    NotUtf8,
}

impl FrameError {
    /// The close code that fails the connection for this error (RFC 6455
    /// §7.4.1).
    pub fn code(self) -> u16 {
        match self {
            FrameError::TooBig(_) => close_code::TOO_BIG,
            FrameError::Protocol(_) => close_code::PROTOCOL_ERROR,
            FrameError::NotUtf8 => close_code::INVALID_PAYLOAD,
        }
    }
}

/// Parses one client frame from the start of `buf`, unmasking its payload in
/// place. `Ok(None)`: more bytes are needed (nothing consumed).
pub fn parse(buf: &mut [u8], max_payload: usize) -> Result<Option<Parsed>, FrameError> {
    let mut cursor = Cursor::new(&buf[..]);
    let (header, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(_) => return Err(FrameError::Protocol("bad frame header")),
    };
    let start = cursor.position() as usize;
    if header.rsv1 || header.rsv2 || header.rsv3 {
        // RFC 6455 §5.2: no extension was negotiated, so RSV bits must be 0.
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let kind = match header.opcode {
        OpCode::Data(Data::Text) => Kind::Text,
        OpCode::Data(Data::Binary) => Kind::Binary,
        OpCode::Data(Data::Continue) => Kind::Continuation,
        OpCode::Control(Control::Close) => Kind::Close,
        OpCode::Control(Control::Ping) => Kind::Ping,
        OpCode::Control(Control::Pong) => Kind::Pong,
        _ => return Err(FrameError::Protocol("reserved opcode")),
    };
    let is_control = matches!(kind, Kind::Close | Kind::Ping | Kind::Pong);
    // RFC 6455 §5.5: control frames carry at most 125 bytes, unfragmented.
    if is_control && (len > 125 || !header.is_final) {
        return Err(FrameError::Protocol("oversized or fragmented control frame"));
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooBig(len));
    }
    // RFC 6455 §5.1: a server must close on an unmasked client frame.
    let mask = header.mask.ok_or(FrameError::Protocol("client frame not masked"))?;
    let end = start + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    unmask(&mut buf[start..end], mask);
    Ok(Some(Parsed {
        kind,
        is_final: header.is_final,
        payload: start..end,
        consumed: end,
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// The code to echo in answer to a client's close frame with `payload`, or
/// why the close frame itself fails the connection.
pub fn close_reply(payload: &[u8]) -> Result<u16, FrameError> {
    match payload {
        // RFC 6455 §5.5.1: the body is optional; without a code there is
        // nothing to echo, and 1000 says as little.
        [] => Ok(close_code::NORMAL),
        // §5.5.1: a body starts with a 2-byte code.
        [_] => Err(FrameError::Protocol("close frame of 1 byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !may_receive(code) {
                return Err(FrameError::Protocol("close code not allowed on the wire"));
            }
            // §5.5.1: the reason is UTF-8; §8.1: fail with 1007 if not.
            check_utf8(reason, 0, true)?;
            Ok(code)
        }
    }
}

/// Whether a peer may send close code `code` (RFC 6455 §7.4).
fn may_receive(code: u16) -> bool {
    match code {
        // §7.4.1, plus 1012-1014 that IANA's registry added since (fanout
        // itself sends 1013). 1004 is reserved; 1005, 1006 and 1015 must
        // never be sent in a frame.
        1000..=1003 | 1007..=1014 => true,
        // §7.4.2: 3000-3999 registered with IANA, 4000-4999 private use.
        // 0-999 are unused, 1016-2999 reserved for RFCs to come, and no
        // range above 4999 is defined.
        3000..=4999 => true,
        _ => false,
    }
}

/// Checks the text of a message that may still be arriving: fails as soon as
/// the bytes cannot become UTF-8 (RFC 6455 §8.1: text frames carry UTF-8;
/// fail fast, as Autobahn 6.4 asks). `text[..checked]` passed an earlier
/// call, so only the new bytes (and at most 3 before them) are looked at:
/// checking a message fragment by fragment stays linear in its size. Unless
/// `complete`, a sequence cut off at the end may still be finished by the
/// next fragment.
pub fn check_utf8(text: &[u8], checked: usize, complete: bool) -> Result<(), FrameError> {
    // Restart at the first character that starts in the last 3 checked
    // bytes: a character has at most 3 continuation bytes (0b10xx_xxxx), so
    // one cut off by `checked` starts there, and the prefix before it was
    // whole characters.
    let checked = checked.min(text.len());
    let mut start = checked.saturating_sub(3);
    while start < checked && text[start] & 0xC0 == 0x80 {
        start += 1;
    }
    match std::str::from_utf8(&text[start..]) {
        Ok(_) => Ok(()),
        // `error_len() == None`: the bytes end inside a character.
        Err(err) if err.error_len().is_none() && !complete => Ok(()),
        Err(_) => Err(FrameError::NotUtf8),
    }
}

#[cfg(test)]
mod tests;
