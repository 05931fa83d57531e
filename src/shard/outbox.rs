//! A connection's outbound queue, and the non-blocking vectored write that
//! drains it.
//!
//! Runs on the owning shard. Frames are queued by reference (`Bytes`: the
//! frame an event was encoded into once, shared by every recipient), so a
//! queue costs a pointer per frame, never a copy. A connection that several
//! events reached in one batch costs one syscall: the front frames that fit
//! in [`GATHER_BYTES`] are copied into the shard's one gather buffer and
//! written with one `send` (the kernel then copies one contiguous span
//! rather than a segment per frame), and a queue whose front frames are too
//! big for that goes out by a vectored `sendmsg` of up to [`MAX_IOV`] frames.
//! `MSG_DONTWAIT` keeps the shard from ever blocking on a socket,
//! `MSG_NOSIGNAL` keeps a closed peer from raising SIGPIPE. socket2 issues
//! the call; the shard's slab owns the socket, so the fd written to is
//! always the connection's own.
//!
//! Every byte queued or released is tallied in the shard's [`Held`] as it
//! happens (each mutating method takes it), so the shard's total is exact
//! and O(1) to read. A pong may replace the one queued before it while the
//! socket is full (RFC 6455 §5.5.3: answering only the latest ping is
//! allowed), so a ping flood from a client that does not read holds one pong.
//! Invariant: `pending_bytes` is the number of queued bytes not yet written,
//! and the shard's `Held` includes exactly that much for this queue; `pong`
//! names a frame still in `queue` and not started.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

use bytes::Bytes;
use socket2::SockRef;

use super::budget::Held;

/// Most bytes of small frames gathered into one write. Under load a
/// connection's queue holds many frames of a few hundred bytes; the kernel
/// copies each `sendmsg` segment on its own. At n1k-k10 saturation through
/// tansu, gathering gave 1.18× the deliveries per CPU-second (medians of
/// four alternating pairs) and cut the kernel's share of fanout's CPU from
/// 53–54% to 34–40% (BENCHMARKS.md). 64 KiB is one loopback segment;
/// 256 KiB measured no better.
const GATHER_BYTES: usize = 64 * 1024;

/// Most frames per `sendmsg`: Linux's `UIO_MAXIOV`, for a queue of frames
/// too big to gather.
const MAX_IOV: usize = 1024;

/// Frames of a short queue, the common case (an event or a reply): its
/// write sets up a small array rather than `MAX_IOV` slots (16 KiB).
const SHORT_IOV: usize = 8;

/// Every write: never block the shard, never raise SIGPIPE.
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

thread_local! {
    /// The shard's gather buffer. A shard writes one socket at a time, so
    /// one buffer per thread serves all of its connections; it is filled
    /// and written within one call, so it holds nothing between writes.
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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
    /// Frames taken off the front so far (wrapping): `queue[i]` is frame
    /// number `popped + i`.
    popped: u32,
    /// Number of the last pong queued, while it is not started.
    pong: Option<u32>,
}

impl Outbox {
    /// Queues `frame` after everything queued.
    pub fn push(&mut self, frame: Bytes, held: &Held) {
        held.add(frame.len());
        self.pending_bytes += frame.len();
        self.queue.push_back(frame);
    }

    /// Queues a pong, remembered as the latest until it starts being
    /// written.
    pub fn push_pong(&mut self, frame: Bytes, held: &Held) {
        self.pong = Some(self.popped.wrapping_add(self.queue.len() as u32));
        self.push(frame, held);
    }

    /// Puts `frame` in the place of the latest pong if that one is queued
    /// and not started; otherwise hands `frame` back. Called while the socket
    /// is full, this keeps a connection at one pong it cannot send.
    pub fn replace_pong(&mut self, frame: Bytes, held: &Held) -> Option<Bytes> {
        let unsent = self.pong.map(|pong| pong.wrapping_sub(self.popped) as usize);
        let Some(slot) = unsent.and_then(|at| self.queue.get_mut(at)) else {
            return Some(frame);
        };
        held.sub(slot.len());
        held.add(frame.len());
        self.pending_bytes = self.pending_bytes - slot.len() + frame.len();
        *slot = frame;
        None
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
    pub fn discard_unstarted(&mut self, held: &Held) {
        let keep = usize::from(self.head_written > 0);
        self.queue.truncate(keep);
        self.pong = None; // discarded, or the partly written head
        let pending = self.queue.front().map_or(0, |f| f.len() - self.head_written);
        held.sub(self.pending_bytes - pending);
        self.pending_bytes = pending;
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
    }

    /// The unwritten rest of the first frame (empty when nothing is queued).
    pub fn head(&self) -> Bytes {
        self.queue
            .front()
            .map_or_else(Bytes::new, |frame| frame.slice(self.head_written..))
    }

    /// Writes as much as `socket` takes without blocking; returns the bytes
    /// written and how far it got.
    pub fn write_to(&mut self, socket: &impl AsRawFd, held: &Held) -> io::Result<(usize, Flushed)> {
        // SAFETY: the fd belongs to `socket`, which is borrowed for the call.
        let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
        let socket = SockRef::from(&fd);
        let mut total = 0;
        while !self.queue.is_empty() {
            let result = match self.gatherable() {
                frames @ 2.. => self.send_gathered(&socket, frames),
                _ if self.queue.len() <= SHORT_IOV => self.send_front::<SHORT_IOV>(&socket),
                _ => self.send_front::<MAX_IOV>(&socket),
            };
            match result {
                Ok(sent) => {
                    total += sent;
                    self.advance(sent, held);
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

    /// The unwritten bytes of each queued frame, front first.
    fn unwritten(&self) -> impl Iterator<Item = &[u8]> {
        let skip = self.head_written;
        self.queue
            .iter()
            .enumerate()
            .map(move |(at, frame)| &frame[if at == 0 { skip } else { 0 }..])
    }

    /// How many front frames fit in [`GATHER_BYTES`] together. Stops at the
    /// first that does not, so it reads at most that many bytes' worth of
    /// frames.
    fn gatherable(&self) -> usize {
        let mut bytes = 0;
        self.unwritten()
            .take_while(|rest| {
                bytes += rest.len();
                bytes <= GATHER_BYTES
            })
            .count()
    }

    /// One non-blocking `send` of the first `frames` frames (as counted by
    /// [`Self::gatherable`]), copied into the shard's gather buffer.
    fn send_gathered(&self, socket: &SockRef<'_>, frames: usize) -> io::Result<usize> {
        GATHER.with_borrow_mut(|gather| {
            gather.clear();
            for rest in self.unwritten().take(frames) {
                gather.extend_from_slice(rest);
            }
            socket.send_with_flags(gather, SEND_FLAGS)
        })
    }

    /// One non-blocking `sendmsg` of up to `N` frames from the front.
    fn send_front<const N: usize>(&self, socket: &SockRef<'_>) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); N];
        let mut count = 0;
        for (slot, rest) in slices.iter_mut().zip(self.unwritten()) {
            *slot = IoSlice::new(rest);
            count += 1;
        }
        socket.send_vectored_with_flags(&slices[..count], SEND_FLAGS)
    }

    /// Marks `n` more bytes of the queue as written.
    pub fn advance(&mut self, mut n: usize, held: &Held) {
        held.sub(n);
        self.pending_bytes -= n;
        while n > 0 {
            if self.pong == Some(self.popped) {
                self.pong = None; // the pong is being written: keep it
            }
            let head_left = self.queue[0].len() - self.head_written;
            if n >= head_left {
                n -= head_left;
                self.queue.pop_front();
                self.popped = self.popped.wrapping_add(1);
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
        let held = Held::default();
        let mut outbox = Outbox::default();
        outbox.push(Bytes::from_static(b"one "), &held);
        outbox.push(Bytes::from_static(b"two"), &held);
        assert_eq!((outbox.pending_bytes(), held.get()), (7, 7));
        assert_eq!(outbox.write_to(&writer, &held).expect("write"), (7, Flushed::All));
        assert_eq!(outbox.queue.capacity(), 0);
        assert_eq!(held.get(), 0);
        let mut got = [0; 7];
        reader.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"one two");
    }

    /// Writes `frames` through a socketpair whose reader drains it while
    /// the outbox is polled, and returns the bytes read.
    fn write_all_through_a_socket(frames: impl IntoIterator<Item = Bytes>) -> Vec<u8> {
        let (writer, mut reader) = UnixStream::pair().expect("socketpair");
        let held = Held::default();
        let mut outbox = Outbox::default();
        for frame in frames {
            outbox.push(frame, &held);
        }
        let queued = outbox.pending_bytes();
        let reading = std::thread::spawn(move || {
            let mut got = vec![0; queued];
            reader.read_exact(&mut got).expect("read");
            got
        });
        let mut written = 0;
        while !outbox.is_empty() {
            written += outbox.write_to(&writer, &held).expect("write").0;
        }
        assert_eq!((written, held.get()), (queued, 0));
        reading.join().expect("reader")
    }

    #[test]
    fn a_queue_of_small_frames_longer_than_one_gather_goes_out_whole_and_in_order() {
        let frames = 3 * GATHER_BYTES / 5 + MAX_IOV + 1;
        let frame = |i: usize| format!("{:05}", i % 100_000);
        let got = write_all_through_a_socket((0..frames).map(|i| Bytes::from(frame(i))));
        let expected: String = (0..frames).map(frame).collect();
        assert!(
            got == expected.as_bytes(),
            "the bytes read differ from the frames queued"
        );
    }

    #[test]
    fn a_queue_of_frames_too_big_to_gather_goes_out_whole_and_in_order() {
        // No two fit in one gather, so every write is vectored, and the
        // queue is longer than one `sendmsg` takes.
        let frame_bytes = GATHER_BYTES / 2 + 1;
        let frames = MAX_IOV + SHORT_IOV + 1;
        let frame = |i: usize| Bytes::from(vec![(i % 251) as u8; frame_bytes]);
        let got = write_all_through_a_socket((0..frames).map(frame));
        assert_eq!(got.len(), frames * frame_bytes);
        for (i, chunk) in got.chunks(frame_bytes).enumerate() {
            assert!(chunk == &frame(i)[..], "frame {i} differs");
        }
    }

    #[test]
    fn small_frames_after_a_big_one_are_gathered_once_it_is_written() {
        let (writer, mut reader) = UnixStream::pair().expect("socketpair");
        let held = Held::default();
        let mut outbox = Outbox::default();
        outbox.push(Bytes::from(vec![b'B'; GATHER_BYTES]), &held);
        outbox.push(Bytes::from_static(b"one "), &held);
        outbox.push(Bytes::from_static(b"two"), &held);
        assert_eq!(outbox.gatherable(), 1, "the big frame fills a gather on its own");
        outbox.advance(GATHER_BYTES - 1, &held);
        assert_eq!(outbox.gatherable(), 3, "its last byte and both small frames fit");
        assert_eq!(outbox.write_to(&writer, &held).expect("write"), (8, Flushed::All));
        let mut got = [0; 8];
        reader.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"Bone two");
    }

    #[test]
    fn a_partly_written_frame_survives_a_discard() {
        let held = Held::default();
        let mut outbox = Outbox::default();
        outbox.push(Bytes::from_static(b"abcd"), &held);
        outbox.push(Bytes::from_static(b"efgh"), &held);
        outbox.advance(2, &held);
        assert_eq!(&outbox.head()[..], b"cd");
        outbox.discard_unstarted(&held);
        assert_eq!((outbox.pending_bytes(), held.get()), (2, 2));
        outbox.advance(2, &held);
        assert!(outbox.is_empty());
        assert_eq!(held.get(), 0);
    }

    #[test]
    fn a_pong_replaces_only_an_unsent_one() {
        let held = Held::default();
        let mut outbox = Outbox::default();
        let pong = |p: &'static [u8]| Bytes::from_static(p);
        assert_eq!(outbox.replace_pong(pong(b"p0"), &held), Some(pong(b"p0")));
        outbox.push(pong(b"event"), &held);
        outbox.push_pong(pong(b"p1"), &held);
        outbox.push_pong(pong(b"p2"), &held);
        outbox.push(pong(b"next"), &held);
        assert_eq!(outbox.replace_pong(pong(b"p333"), &held), None);
        assert_eq!(outbox.queue.len(), 4, "the latest pong took the unsent one's place");
        assert_eq!(&outbox.queue[2][..], b"p333");
        assert_eq!((outbox.pending_bytes(), held.get()), (15, 15));
        // Once the pong's first byte is written, it is no longer replaced.
        outbox.advance(5 + 2 + 1, &held);
        assert_eq!(outbox.replace_pong(pong(b"p4"), &held), Some(pong(b"p4")));
        outbox.push_pong(pong(b"p4"), &held);
        assert_eq!(outbox.replace_pong(pong(b"p5"), &held), None);
        assert_eq!((outbox.queue.len(), &outbox.queue[2][..]), (3, &b"p5"[..]));
        assert_eq!(held.get(), outbox.pending_bytes());
    }
}
