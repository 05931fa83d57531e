//! One pipelined Redis connection and the driver task that owns its socket.
//!
//! `RedisClient` (in `mod.rs`) opens a `Connection`, appends each encoded
//! command plus a reply `Slot` to it and waits on the slot; the driver task
//! (`drive`, spawned with `spawn_local` when the connection opens) connects,
//! writes whatever is buffered and hands each parsed reply to the oldest
//! waiter. Everything runs on the client's shard thread (`Rc`, `RefCell`),
//! except the host name lookup, which blocks and so runs on the executor's
//! blocking thread (`Endpoint::connect`).
//!
//! The `Connection` owns the write buffer and the waiter FIFO; the driver
//! owns the socket and the read side (`Wire`). An I/O error, an EOF, a
//! protocol error, a failed handshake or `close` (timeout, client dropped)
//! fails every pending waiter and ends the driver; a closed connection is
//! never reused.
//!
//! Invariant: the n-th reply read from the socket belongs to the n-th waiter
//! in the FIFO, because `enqueue` appends the command and its waiter in the
//! same synchronous step.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use ::redis::{Cmd, Parser, Value};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::RedisError;
use super::endpoint::Endpoint;

/// Bytes asked of the socket per read. Default-sized replies (a session JSON)
/// fit many times over; larger ones take several reads.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Write buffer capacity kept between flushes.
const WRITE_BUF_KEEP_BYTES: usize = 16 * 1024;

/// Why a connection closed; copied into an error for every pending caller.
#[derive(Debug)]
pub(super) enum Failure {
    Io(io::Error),
    Timeout,
    Protocol(String),
    Server(String),
}

impl Failure {
    fn to_error(&self) -> RedisError {
        match self {
            // io::Error is not Clone; errno or kind copies without allocating.
            Failure::Io(err) => RedisError::Unreachable(match err.raw_os_error() {
                Some(errno) => io::Error::from_raw_os_error(errno),
                None => io::Error::from(err.kind()),
            }),
            Failure::Timeout => RedisError::Timeout,
            Failure::Protocol(msg) => RedisError::Protocol(msg.clone()),
            Failure::Server(msg) => RedisError::Server(msg.clone()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_error(), f)
    }
}

/// Where one caller's reply lands.
#[derive(Default)]
pub(super) struct Slot {
    reply: RefCell<Option<Result<Value, RedisError>>>,
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn fill(&self, reply: Result<Value, RedisError>) {
        *self.reply.borrow_mut() = Some(reply);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    pub(super) async fn wait(&self) -> Result<Value, RedisError> {
        future::poll_fn(|cx| match self.reply.borrow_mut().take() {
            Some(reply) => Poll::Ready(reply),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// Who receives the next reply off the socket.
pub(super) enum Waiter {
    /// `AUTH` or `SELECT` sent by the connection itself; an error closes it.
    Handshake(&'static str),
    /// A caller's slot; dropped unread if the caller gave up.
    Caller(Rc<Slot>),
}

/// State shared by the callers and the driver task of one connection.
pub(super) struct Connection {
    /// Encoded commands not yet written to the socket.
    write_buf: RefCell<Vec<u8>>,
    /// One entry per command written or queued, oldest first.
    waiters: RefCell<VecDeque<Waiter>>,
    /// `Some` once closed; the connection is never reused after that.
    failure: RefCell<Option<Failure>>,
    /// The driver task, woken when there is something to write or to stop.
    driver: Cell<Option<Waker>>,
}

impl Connection {
    /// Queues `AUTH`/`SELECT` as the URL asks and spawns the driver task.
    pub(super) fn open(endpoint: &Rc<Endpoint>) -> Rc<Self> {
        let conn = Rc::new(Connection {
            write_buf: RefCell::new(Vec::new()),
            waiters: RefCell::new(VecDeque::new()),
            failure: RefCell::new(None),
            driver: Cell::new(None),
        });
        if let Some(password) = &endpoint.password {
            let mut auth = ::redis::cmd("AUTH");
            if let Some(username) = &endpoint.username {
                auth.arg(username);
            }
            auth.arg(password);
            conn.enqueue(&auth, Waiter::Handshake("AUTH"));
        }
        if endpoint.db != 0 {
            conn.enqueue(::redis::cmd("SELECT").arg(endpoint.db), Waiter::Handshake("SELECT"));
        }
        // The task lives as long as the connection; it holds the socket.
        glommio::spawn_local(drive(Rc::clone(&conn), Rc::clone(endpoint))).detach();
        conn
    }

    pub(super) fn is_closed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    /// Appends the command and its waiter in one step (the FIFO invariant).
    pub(super) fn enqueue(&self, cmd: &Cmd, waiter: Waiter) {
        cmd.write_packed_command(&mut self.write_buf.borrow_mut());
        self.waiters.borrow_mut().push_back(waiter);
        self.wake_driver();
    }

    fn wake_driver(&self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    fn register_driver(&self, cx: &Context<'_>) {
        let waker = match self.driver.take() {
            Some(waker) if waker.will_wake(cx.waker()) => waker,
            _ => cx.waker().clone(),
        };
        self.driver.set(Some(waker));
    }

    /// Fails every pending caller with `failure` and stops the driver. Only
    /// the first failure counts.
    pub(super) fn close(&self, failure: Failure) {
        if self.is_closed() {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            if let Waiter::Caller(slot) = waiter {
                slot.fill(Err(failure.to_error()));
            }
        }
        self.write_buf.borrow_mut().clear();
        *self.failure.borrow_mut() = Some(failure);
        self.wake_driver();
    }

    /// Resolves once the connection is closed (stops a pending connect).
    async fn closed(&self) {
        future::poll_fn(|cx| {
            if self.is_closed() {
                Poll::Ready(())
            } else {
                self.register_driver(cx);
                Poll::Pending
            }
        })
        .await
    }

    /// One pass of the driver: write what is queued, read what has arrived.
    /// Ready when the connection has closed.
    fn poll_drive(&self, cx: &mut Context<'_>, wire: &mut Wire) -> Poll<()> {
        if self.is_closed() {
            return Poll::Ready(());
        }
        self.register_driver(cx);
        let result = self.poll_flush(cx, wire).and_then(|()| self.poll_replies(cx, wire));
        match result {
            Ok(()) if !self.is_closed() => Poll::Pending,
            Ok(()) => Poll::Ready(()),
            Err(failure) => {
                if let Failure::Io(err) = &failure {
                    tracing::warn!(error = %err, "redis connection lost");
                }
                self.close(failure);
                Poll::Ready(())
            }
        }
    }

    fn poll_flush(&self, cx: &mut Context<'_>, wire: &mut Wire) -> Result<(), Failure> {
        let mut buf = self.write_buf.borrow_mut();
        while wire.written < buf.len() {
            match Pin::new(&mut wire.stream).poll_write(cx, &buf[wire.written..]) {
                Poll::Ready(Ok(0)) => return Err(Failure::Io(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => wire.written += n,
                Poll::Ready(Err(err)) => return Err(Failure::Io(err)),
                Poll::Pending => return Ok(()),
            }
        }
        // Keep the capacity (steady state writes allocate nothing), but not
        // what one huge command grew it to.
        buf.clear();
        buf.shrink_to(WRITE_BUF_KEEP_BYTES);
        wire.written = 0;
        Ok(())
    }

    /// Reads until the socket has nothing more. Reading even with no waiter
    /// notices a server-side close early, so the next call reconnects instead
    /// of failing.
    fn poll_replies(&self, cx: &mut Context<'_>, wire: &mut Wire) -> Result<(), Failure> {
        loop {
            match Pin::new(&mut wire.stream).poll_read(cx, &mut wire.read_buf) {
                Poll::Ready(Ok(0)) => return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into())),
                Poll::Ready(Ok(n)) => wire.replies.feed(&wire.read_buf[..n], |value| self.deliver(value))?,
                Poll::Ready(Err(err)) => return Err(Failure::Io(err)),
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// Hands one reply to the oldest waiter.
    fn deliver(&self, value: Value) -> Result<(), Failure> {
        let waiter = self.waiters.borrow_mut().pop_front();
        match waiter {
            Some(Waiter::Caller(slot)) => {
                slot.fill(Ok(value));
                Ok(())
            }
            Some(Waiter::Handshake(command)) => match value {
                Value::ServerError(err) => Err(Failure::Server(format!("{command} failed: {err}"))),
                _ => Ok(()),
            },
            None => Err(Failure::Protocol(format!("reply without a request: {value:?}"))),
        }
    }
}

/// The driver task's side of a connection: the socket and its buffers.
struct Wire {
    stream: TcpStream,
    read_buf: Vec<u8>,
    /// Bytes of `Connection::write_buf` already on the socket.
    written: usize,
    replies: ReplyReader,
}

/// Runs one connection: connect, then pump bytes until it closes.
async fn drive(conn: Rc<Connection>, endpoint: Rc<Endpoint>) {
    let connected = future::or(async { Some(endpoint.connect().await) }, async {
        conn.closed().await;
        None
    })
    .await;
    let stream = match connected {
        // Closed while connecting: every caller timed out, or the client went away.
        None => return,
        Some(Err(err)) => {
            tracing::debug!(
                host = %endpoint.host, port = endpoint.port, error = %err,
                "redis connect failed"
            );
            conn.close(Failure::Io(err));
            return;
        }
        Some(Ok(stream)) => stream,
    };
    tracing::debug!(host = %endpoint.host, port = endpoint.port, "redis connected");
    let mut wire = Wire {
        stream,
        read_buf: vec![0; READ_CHUNK_BYTES],
        written: 0,
        replies: ReplyReader::default(),
    };
    future::poll_fn(|cx| conn.poll_drive(cx, &mut wire)).await;
    if let Some(failure) = conn.failure.borrow().as_ref() {
        tracing::debug!(reason = %failure, "redis connection closed");
    }
}

/// Incremental RESP parser: replies may be split across reads, and one read
/// may hold several replies.
#[derive(Default)]
pub(super) struct ReplyReader {
    /// Keeps unparsed bytes and partial state between reads.
    parser: Parser,
}

impl ReplyReader {
    /// Parses every complete reply in what has been fed so far plus `bytes`,
    /// passing each to `on_reply` in order; a partial reply waits for more.
    pub(super) fn feed(
        &mut self,
        bytes: &[u8],
        mut on_reply: impl FnMut(Value) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let mut input = Input(bytes);
        loop {
            match self.parser.parse_value(&mut input) {
                Ok(value) => on_reply(value)?,
                // `Input` is empty. Its only error is WouldBlock, after which
                // the parser resumes where it stopped.
                Err(err) if err.is_io_error() => return Ok(()),
                Err(err) => return Err(Failure::Protocol(err.to_string())),
            }
        }
    }
}

/// `Read` over one socket read's bytes for `redis::Parser`.
///
/// When empty it reports `WouldBlock`, never `Ok(0)`: the parser takes `Ok(0)`
/// as end of stream for good.
struct Input<'a>(&'a [u8]);

impl Read for Input<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = out.len().min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}
