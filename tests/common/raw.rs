//! WebSocket by hand over a plain `TcpStream`, for clients that misbehave on
//! purpose: one that never reads, never answers pings, sends a head or a
//! frame one byte at a time, floods pings, or keeps its receive buffer as
//! small as it likes; and for reading back exactly the bytes the server
//! sent, with no WebSocket library in between.
//!
//! Used by the tests of bounds and shutdown (`backpressure`, `heartbeat`,
//! `http`, `shutdown`, `hostile_*`); well-behaved clients use
//! [`super::Client`] (tungstenite) instead. Only what those tests need of
//! RFC 6455: the upgrade request, masked client frames, and server frames
//! (read from a stream one at a time, or split out of everything a socket
//! delivered until it closed).
//!
//! Invariant: [`upgraded`] reads nothing (the `101` and everything after it
//! stay in the socket for the test to read, or never read), and
//! [`public_connection`] reads exactly the `101` head and the `connected`
//! message; every other read is the test's, through the readers below.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::PATIENCE;

/// The path of public upgrades.
pub const PUBLIC_PATH: &str = "/ws/availability";

/// How long [`public_connection`] sets reads to wait: replies to a flood may
/// take a while on a loaded machine.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Opcodes of RFC 6455 §5.2.
pub mod opcode {
    /// Continuation frame.
    pub const CONTINUATION: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xA;
}

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
/// `TCP_NODELAY` is set: a test's small writes leave at once, one by one.
pub fn upgraded(addr: SocketAddr, path: &str, recv_buffer: Option<usize>) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    socket.connect(&addr.into()).expect("connect");
    socket.set_tcp_nodelay(true).expect("TCP_NODELAY");
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(upgrade_request(path, "").as_bytes())
        .expect("send the upgrade");
    stream
}

/// A public connection (see [`upgraded`]) read past its `101` head and its
/// `connected` message; later reads wait at most 10 s.
pub fn public_connection(addr: SocketAddr, recv_buffer: Option<usize>) -> TcpStream {
    let mut stream = upgraded(addr, PUBLIC_PATH, recv_buffer);
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read the 101 head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let hello = read_frame(&mut stream).expect("the connected message");
    assert_eq!(hello.opcode, opcode::TEXT);
    assert!(hello.payload.starts_with(br#"{"type":"connected""#));
    stream
}

/// A client frame of `opcode` (RFC 6455 §5.2) carrying `payload`, masked
/// as a client's must be (§5.3; mask key `1 2 3 4`, so the server has to
/// unmask it to read it).
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    masked_frame(opcode | if fin { 0x80 } else { 0 }, [1, 2, 3, 4], payload, false)
}

/// A masked frame with any first byte (FIN, RSV, opcode) and mask key;
/// `wide_length` takes the 16-bit length encoding even where 7 bits would
/// do (legal, and a parser must accept it).
pub fn masked_frame(first_byte: u8, mask: [u8; 4], payload: &[u8], wide_length: bool) -> Vec<u8> {
    let mut frame = vec![first_byte];
    match payload.len() {
        len @ 0..=125 if !wide_length => frame.push(0x80 | len as u8),
        len @ 0..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    frame
}

/// One whole client text frame of `payload`: a `&str`, or bytes that need
/// not be UTF-8.
pub fn text_frame(payload: impl AsRef<[u8]>) -> Vec<u8> {
    client_frame(opcode::TEXT, true, payload.as_ref())
}

/// The bytes of a server close frame with `code` and no reason.
pub fn close_frame(code: u16) -> [u8; 4] {
    let [high, low] = code.to_be_bytes();
    [0x80 | opcode::CLOSE, 0x02, high, low]
}

/// One frame a server sent: its opcode and payload (server frames are not
/// masked).
#[derive(Debug, PartialEq, Eq)]
pub struct ServerFrame {
    /// RFC 6455 §5.2 opcode (see [`opcode`]).
    pub opcode: u8,
    /// The payload as sent.
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The payload of a text frame as JSON.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.opcode, opcode::TEXT, "not a text frame: {self:?}");
        serde_json::from_slice(&self.payload).expect("server sends JSON")
    }

    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == opcode::CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one server frame from `stream` (a socket, or the bytes a socket
/// delivered); an error if it ends or times out before the frame does.
pub fn read_frame(stream: &mut impl Read) -> io::Result<ServerFrame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let len = match head[1] & 0x7F {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext)?;
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext)?;
            usize::try_from(u64::from_be_bytes(ext)).expect("frame length fits")
        }
        len => len as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok(ServerFrame {
        opcode: head[0] & 0x0F,
        payload,
    })
}

/// Reads server frames until a close frame (returns its code) or the end of
/// the stream (`None`), passing every other frame to `seen`.
pub fn read_until_close(stream: &mut impl Read, mut seen: impl FnMut(&ServerFrame)) -> Option<u16> {
    loop {
        match read_frame(stream) {
            Ok(frame) if frame.opcode == opcode::CLOSE => return frame.close_code(),
            Ok(frame) => seen(&frame),
            Err(_) => return None,
        }
    }
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

/// What a server sent on an upgraded connection (see [`read_to_close`]),
/// split into its `101` response head and the whole frames after it; an
/// unfinished last frame is left out.
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
    std::iter::from_fn(|| read_frame(&mut rest).ok()).collect()
}
