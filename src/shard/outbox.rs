//! A connection's outbound queue, and the non-blocking vectored write that
//! drains it.
//!
//! Runs on the owning shard. Frames are queued by reference (`Bytes`: the
//! frame an event was encoded into once, shared by every recipient), and one
//! `sendmsg` takes up to [`MAX_IOV`] of them, so a connection that several
//! events reached in one batch costs one syscall. `MSG_DONTWAIT` keeps the
//! shard from ever blocking on a socket, `MSG_NOSIGNAL` keeps a closed peer
//! from raising SIGPIPE. socket2 issues the call; the shard's slab owns the
//! socket, so the fd written to is always the connection's own.
//! Invariant: `pending_bytes` is the number of queued bytes not yet written.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

use bytes::Bytes;
use socket2::SockRef;

/// Frames per `sendmsg`.
const MAX_IOV: usize = 64;

/// How far a write got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// The queue is empty.
    All,
    /// The socket buffer is full; the rest waits for writability.
    WouldBlock,
}

/// Frames waiting to be written to one connection; the first may be partly
/// written. Holds no allocation while empty.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Bytes>,
    /// Bytes of `queue[0]` already written.
    head_written: usize,
    /// Bytes in `queue` not yet written.
    pending_bytes: usize,
}

impl Outbox {
    /// Queues `frame` after everything queued.
    pub fn push(&mut self, frame: Bytes) {
        self.pending_bytes += frame.len();
        self.queue.push_back(frame);
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Nothing left to write.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Drops every frame not yet started; a partly written one stays, so the
    /// byte stream remains valid WebSocket framing.
    pub fn discard_unstarted(&mut self) {
        let keep = usize::from(self.head_written > 0);
        self.queue.truncate(keep);
        self.pending_bytes = self.queue.front().map_or(0, |f| f.len() - self.head_written);
    }

    /// The unwritten rest of the first frame (empty when nothing is queued).
    pub fn head(&self) -> Bytes {
        self.queue
            .front()
            .map_or_else(Bytes::new, |frame| frame.slice(self.head_written..))
    }

    /// Writes as much as `socket` takes without blocking; returns the bytes
    /// written and how far it got.
    pub fn write_to(&mut self, socket: &impl AsRawFd) -> io::Result<(usize, Flushed)> {
        // SAFETY: the fd belongs to `socket`, which is borrowed for the call.
        let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
        let socket = SockRef::from(&fd);
        let mut total = 0;
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, frame) in slices.iter_mut().zip(&self.queue) {
                let start = if count == 0 { self.head_written } else { 0 };
                *slot = IoSlice::new(&frame[start..]);
                count += 1;
            }
            match socket.send_vectored_with_flags(&slices[..count], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
                Ok(sent) => {
                    total += sent;
                    self.advance(sent);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok((total, Flushed::WouldBlock)),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        // At rest a connection keeps no queue allocation: one malloc per
        // burst (~20 ns) is cheap next to the `sendmsg` that emptied it.
        self.queue = VecDeque::new();
        Ok((total, Flushed::All))
    }

    /// Marks `n` more bytes of the queue as written.
    pub fn advance(&mut self, mut n: usize) {
        self.pending_bytes -= n;
        while n > 0 {
            let head_left = self.queue[0].len() - self.head_written;
            if n >= head_left {
                n -= head_left;
                self.queue.pop_front();
                self.head_written = 0;
            } else {
                self.head_written += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn frames_are_written_in_order_and_the_queue_released() {
        let (writer, mut reader) = UnixStream::pair().expect("socketpair");
        let mut outbox = Outbox::default();
        outbox.push(Bytes::from_static(b"one "));
        outbox.push(Bytes::from_static(b"two"));
        assert_eq!(outbox.pending_bytes(), 7);
        assert_eq!(outbox.write_to(&writer).expect("write"), (7, Flushed::All));
        assert_eq!(outbox.queue.capacity(), 0);
        let mut got = [0; 7];
        reader.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"one two");
    }

    #[test]
    fn a_partly_written_frame_survives_a_discard() {
        let mut outbox = Outbox::default();
        outbox.push(Bytes::from_static(b"abcd"));
        outbox.push(Bytes::from_static(b"efgh"));
        outbox.advance(2);
        assert_eq!(&outbox.head()[..], b"cd");
        outbox.discard_unstarted();
        assert_eq!(outbox.pending_bytes(), 2);
        outbox.advance(2);
        assert!(outbox.is_empty());
    }
}
