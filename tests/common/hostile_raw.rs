//! WebSocket by hand over a raw `TcpStream`, for clients that misbehave on
//! purpose: frames built byte by byte (masked, as a client must), sent in
//! any pieces, a receive buffer as small as we like, and server frames read
//! back without a WebSocket library in between.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The request head of a public upgrade.
pub const UPGRADE: &[u8] = b"GET /ws/availability HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

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

/// A masked client frame (mask `1 2 3 4`).
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// A masked text frame of `text`.
pub fn text_frame(text: &str) -> Vec<u8> {
    client_frame(opcode::TEXT, true, text.as_bytes())
}

/// Connects with a receive buffer of `recv_buffer_bytes` (small: the
/// server's queue fills soon when we stop reading), sends the upgrade and
/// reads up to and including the `connected` message.
pub fn upgrade(addr: SocketAddr, recv_buffer_bytes: Option<usize>) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    if let Some(bytes) = recv_buffer_bytes {
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    }
    socket.connect(&addr.into()).expect("connect");
    socket.set_tcp_nodelay(true).expect("TCP_NODELAY");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(UPGRADE).expect("send the upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read the 101 head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let (op, payload) = read_frame(&mut stream).expect("the connected message");
    assert_eq!(op, opcode::TEXT);
    assert!(payload.starts_with(br#"{"type":"connected""#));
    stream
}

/// Reads one server frame (unmasked): its opcode and payload.
pub fn read_frame(stream: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
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
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok((head[0] & 0x0F, payload))
}

/// Reads server frames until a close frame (returns its code) or the end of
/// the stream (`None`), passing every other frame to `seen`.
pub fn read_until_close(stream: &mut impl Read, mut seen: impl FnMut(u8, &[u8])) -> Option<u16> {
    loop {
        match read_frame(stream) {
            Ok((opcode::CLOSE, payload)) => {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
            Ok((op, payload)) => seen(op, &payload),
            Err(_) => return None,
        }
    }
}
