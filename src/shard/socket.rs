//! Non-blocking vectored writes of a connection's queued frames.
//!
//! Runs on the owning shard. One `sendmsg` takes up to [`MAX_IOV`] queued
//! frames, so a connection that several events reached in one batch costs
//! one syscall. `MSG_DONTWAIT` keeps the shard from ever blocking on a
//! socket, `MSG_NOSIGNAL` keeps a closed peer from raising SIGPIPE.

use std::io;

use super::Conn;

/// Frames per `sendmsg`.
const MAX_IOV: usize = 64;

/// How far a flush got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// The queue is empty.
    All,
    /// The socket buffer is full; the rest waits for writability.
    WouldBlock,
}

/// Writes as much of `conn`'s queue as the socket takes without blocking;
/// returns the bytes written and how far it got.
pub fn write_queue(conn: &mut Conn) -> io::Result<(usize, Flushed)> {
    let mut total = 0;
    while !conn.queue.is_empty() {
        let mut iov: [libc::iovec; MAX_IOV] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOV];
        let mut count = 0;
        for (i, frame) in conn.queue.iter().take(MAX_IOV).enumerate() {
            let bytes = if i == 0 {
                &frame[conn.head_written..]
            } else {
                &frame[..]
            };
            iov[i] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            count += 1;
        }
        // SAFETY: an all-zero msghdr is valid; iov points at `count` live
        // slices borrowed from the queue for the duration of the call.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count;
            libc::sendmsg(conn.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if sent < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => return Ok((total, Flushed::WouldBlock)),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(err),
            }
        }
        let sent = sent as usize;
        total += sent;
        advance(conn, sent);
    }
    release_idle_queue(conn);
    Ok((total, Flushed::All))
}

/// Marks `n` more bytes of the queue as written.
pub fn advance(conn: &mut Conn, mut n: usize) {
    conn.pending_bytes -= n;
    while n > 0 {
        let head_left = conn.queue[0].len() - conn.head_written;
        if n >= head_left {
            n -= head_left;
            conn.queue.pop_front();
            conn.head_written = 0;
        } else {
            conn.head_written += n;
            n = 0;
        }
    }
}

/// A connection at rest keeps no queue allocation: one malloc per burst
/// (~20 ns) is cheap next to the `sendmsg` that emptied the queue.
fn release_idle_queue(conn: &mut Conn) {
    if conn.queue.capacity() > 0 {
        conn.queue = Default::default();
    }
}
