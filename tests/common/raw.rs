//! A WebSocket client written by hand over a plain `TcpStream`, for clients
//! that misbehave on purpose: one that never reads, never answers pings, or
//! sends bytes no library would (text that is not UTF-8).
//!
//! Only what the tests need of RFC 6455: the upgrade request, masked client
//! frames (mask key 0, so the payload goes out as is) and the bytes of a
//! server close frame.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::PATIENCE;

/// The head of a WebSocket upgrade request for `path`, with `extra` header
/// lines (each ending in `\r\n`) before the blank line.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Connects to `addr` and sends the upgrade for `path`; reads nothing. With
/// `recv_buffer`, the socket's receive buffer is set that small before
/// connecting, so little of what the server sends fits in the kernel.
pub fn upgraded(addr: SocketAddr, path: &str, recv_buffer: Option<usize>) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    socket.connect(&addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(upgrade_request(path, "").as_bytes())
        .expect("send the upgrade");
    stream
}

/// A masked client frame of `opcode` (RFC 6455 §5.2) carrying `payload`.
pub fn masked_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]); // mask key 0: payload unchanged
    frame.extend_from_slice(payload);
    frame
}

/// One whole masked text frame.
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    masked_frame(0x1, true, payload)
}

/// The bytes of a server close frame with `code` and no reason.
pub fn close_frame(code: u16) -> [u8; 4] {
    let [high, low] = code.to_be_bytes();
    [0x88, 0x02, high, low]
}

/// Reads until the server closes the socket; fails if it is still open after
/// [`PATIENCE`]. A reset after the last bytes ends the read like a close.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("socket still open after {PATIENCE:?} ({} bytes read)", seen.len())
            }
            Err(_) => return seen,
        }
    }
}

/// One frame a server sent: its opcode and payload (server frames are not
/// masked).
#[derive(Debug, PartialEq, Eq)]
pub struct ServerFrame {
    /// RFC 6455 §5.2 opcode: 0x1 text, 0x8 close, 0x9 ping.
    pub opcode: u8,
    /// The payload as sent.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The payload of a text frame as JSON.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.opcode, 0x1, "not a text frame: {self:?}");
        serde_json::from_slice(&self.payload).expect("server sends JSON")
    }

    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// What a server sent on an upgraded connection, split into its `101`
/// response head and the whole frames after it; an unfinished last frame is
/// left out.
pub fn frames_after_upgrade(bytes: &[u8]) -> Vec<ServerFrame> {
    assert!(
        bytes.starts_with(b"HTTP/1.1 101"),
        "not upgraded: {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
    );
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the 101 head ends")
        + 4;
    let mut rest = &bytes[head_end..];
    let mut frames = Vec::new();
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0F;
        let (len, header) = match rest[1] & 0x7F {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => {
                let len = u64::from_be_bytes(rest[2..10].try_into().expect("8 bytes"));
                (usize::try_from(len).expect("frame length fits"), 10)
            }
            126 | 127 => break,
            len => (len as usize, 2),
        };
        if rest.len() < header + len {
            break;
        }
        frames.push(ServerFrame {
            opcode,
            payload: rest[header..header + len].to_vec(),
        });
        rest = &rest[header + len..];
    }
    frames
}
