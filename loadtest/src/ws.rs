//! Minimal RFC 6455 client side: the upgrade request, the 101 check and
//! frame encode/decode over caller-owned buffers.
//!
//! Shared by `client` (100k async subscribers) and `sink` (the blocking
//! publish connection). Hand-rolled so one idle subscriber costs a socket and
//! a 512-byte buffer rather than a general client's 128 KiB read buffer.
//! Invariant: every frame we encode is masked (RFC 6455 5.3: a client masks
//! every frame); every frame we accept is unmasked (5.1).

use anyhow::{Context, bail, ensure};

/// Opcode of a text frame (RFC 6455 5.2).
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest frame payload a loadtest connection accepts, in bytes: the
/// server's own default `--max-message-bytes` is 64 KiB, so 1 MiB is ample.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// A started upgrade: the request bytes and the key the answer must echo.
pub struct Upgrade {
    /// The HTTP request to write, CRLF-terminated.
    pub request: String,
    /// `Sec-WebSocket-Key` sent, to check `Sec-WebSocket-Accept` against.
    key: String,
}

impl Upgrade {
    /// Builds `GET path` with a fresh key; `origin` adds an `Origin` header.
    pub fn new(host: &str, path: &str, origin: Option<&str>) -> Self {
        let key = tungstenite::handshake::client::generate_key();
        let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n{origin}\r\n"
        );
        Upgrade { request, key }
    }

    /// Checks a complete response head (through the blank line): status 101
    /// and the RFC 6455 4.1 accept key. The error names the status on refusal.
    pub fn check_response(&self, head: &[u8]) -> anyhow::Result<()> {
        let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap_or_default();
        let code = status.split(' ').nth(1).unwrap_or_default();
        if code != "101" {
            bail!("server refused the upgrade: {status:?}");
        }
        let expected = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let accept = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|(_, v)| v.trim());
        ensure!(
            accept == Some(expected.as_str()),
            "bad Sec-WebSocket-Accept {accept:?}, expected {expected:?}"
        );
        Ok(())
    }
}

/// Returns the length of the response head including its blank line, once
/// `buf` holds all of it.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Appends one masked, final frame to `out` (RFC 6455 5.2, 5.3).
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Appends a close frame with `code` and no reason.
pub fn encode_close(out: &mut Vec<u8>, code: u16, mask: [u8; 4]) {
    encode_frame(out, OP_CLOSE, &code.to_be_bytes(), mask);
}

/// Where one complete frame sits in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// FIN bit: last fragment of a message.
    pub fin: bool,
    /// Opcode (`OP_*`).
    pub opcode: u8,
    /// Offset of the payload from the start of the frame.
    pub payload_start: usize,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl FrameHead {
    /// Total frame length: header plus payload.
    pub fn frame_len(&self) -> usize {
        self.payload_start + self.payload_len
    }
}

/// Parses the frame at the start of `buf`. `Ok(None)` means more bytes are
/// needed; with `Ok(Some(h))`, `buf` may still be shorter than
/// `h.frame_len()`, which the caller checks.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<FrameHead>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    // RFC 6455 5.2: no extension was negotiated, so RSV bits must be zero.
    ensure!(b0 & 0x70 == 0, "frame with RSV bits set: {b0:#04x}");
    // RFC 6455 5.1: a client closes on a masked server frame.
    ensure!(b1 & 0x80 == 0, "server sent a masked frame");
    let (len, start) = match b1 & 0x7f {
        126 if buf.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() < 10 => return Ok(None),
        127 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10),
        n => (n as u64, 2),
    };
    ensure!(
        len <= MAX_FRAME_BYTES as u64,
        "frame of {len} bytes over the {MAX_FRAME_BYTES}-byte limit"
    );
    Ok(Some(FrameHead {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload_start: start,
        payload_len: len as usize,
    }))
}

/// Close code of a close frame payload (RFC 6455 5.5.1); 1005 when absent.
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

/// Cheap mask source. RFC 6455 10.3 wants unpredictable masks against proxy
/// cache poisoning; on loopback to our own server a seeded generator is fine.
pub struct MaskSource(u64);

impl MaskSource {
    /// Starts a mask sequence from `seed`.
    pub fn new(seed: u64) -> Self {
        MaskSource(seed)
    }

    /// Next 4-byte mask.
    pub fn next_mask(&mut self) -> [u8; 4] {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        ((self.0 >> 16) as u32).to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Server side view: unmask a client frame (test only).
    fn decode_masked(frame: &[u8]) -> (u8, Vec<u8>) {
        let (len, start) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        assert_eq!(frame[1] & 0x80, 0x80, "client frame must be masked");
        let mask = &frame[start..start + 4];
        let body = &frame[start + 4..start + 4 + len];
        let plain = body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]);
        (frame[0] & 0x0f, plain.collect())
    }

    #[test]
    fn encoded_frames_unmask_to_payload_at_every_length_class() {
        for len in [0, 1, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &payload, [1, 2, 3, 4]);
            let (op, plain) = decode_masked(&out);
            assert_eq!(op, OP_TEXT);
            assert_eq!(plain, payload, "length {len}");
        }
    }

    #[test]
    fn parse_head_reads_unmasked_server_frames() {
        let mut frame = vec![0x81, 126, 0x01, 0x00];
        frame.extend(std::iter::repeat_n(b'x', 256));
        let head = parse_head(&frame).unwrap().unwrap();
        assert_eq!(
            head,
            FrameHead {
                fin: true,
                opcode: OP_TEXT,
                payload_start: 4,
                payload_len: 256
            }
        );
        assert_eq!(parse_head(&frame[..3]).unwrap(), None);
        assert_eq!(parse_head(&[0x89]).unwrap(), None);
    }

    #[test]
    fn parse_head_rejects_masked_and_oversized_frames() {
        assert!(parse_head(&[0x81, 0x85, 0, 0, 0, 0]).is_err());
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert!(parse_head(&huge).is_err());
    }

    #[test]
    fn upgrade_accepts_only_a_matching_101() {
        let up = Upgrade::new("127.0.0.1:3009", "/ws/availability", None);
        let accept = tungstenite::handshake::derive_accept_key(up.key.as_bytes());
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: {accept}\r\n\r\n");
        up.check_response(ok.as_bytes()).unwrap();
        let bad = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(up.check_response(bad.as_bytes()).is_err());
        let refused = "HTTP/1.1 403 Forbidden\r\n\r\n";
        let err = up.check_response(refused.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
        assert_eq!(head_len(ok.as_bytes()), Some(ok.len()));
    }

    #[test]
    fn close_code_defaults_to_1005() {
        assert_eq!(close_code(&[0x03, 0xf5]), 1013);
        assert_eq!(close_code(&[]), 1005);
    }
}
