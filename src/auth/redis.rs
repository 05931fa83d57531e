//! Minimal Redis client for one glommio shard: `GET`, `MGET`, `PING`.
//!
//! The admin endpoint (SPEC §2) looks up `session:<id>` here, and the
//! re-check (SPEC §3.4) reads it again; `/readyz` calls [`RedisClient::ping`].
//! The `redis` crate only encodes commands and parses RESP; the bytes move over
//! a glommio [`TcpStream`] because redis' async client needs tokio.
//!
//! Runs on the shard thread that owns the client (`!Send`; share it with
//! `Rc`). Each client owns at most one connection. Callers append their
//! encoded command to the connection's write buffer and a reply slot to its
//! FIFO; one driver task per connection (spawned with `spawn_local` on first
//! use) writes whatever is buffered and hands each parsed reply to the oldest
//! slot. Concurrent callers are therefore pipelined on one socket, and a
//! caller that is cancelled never leaves half a command or an unread reply
//! behind.
//!
//! Every call is bounded by the client's timeout (connect included). An I/O
//! error, an EOF, a protocol error or a timeout closes the connection and
//! fails every pending call; the next call connects again, so Redis can
//! restart under a running process.
//!
//! Invariant: the n-th reply read from the socket belongs to the n-th waiter
//! in the FIFO, because commands enter the write buffer and waiters enter the
//! FIFO in the same synchronous step.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::net::ToSocketAddrs;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ::redis::{Cmd, Parser, Value};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::timer::Timer;

/// Port used when the URL names none.
const DEFAULT_PORT: u16 = 6379;
/// Bytes asked of the socket per read. Default-sized replies (a session JSON)
/// fit many times over; larger ones take several reads.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Write buffer capacity kept between flushes.
const WRITE_BUF_KEEP_BYTES: usize = 16 * 1024;

/// Why a Redis call failed.
///
/// `Unreachable` and `Timeout` mean Redis could not answer (the admin
/// endpoint maps them to `503`); see [`RedisError::is_unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL given to [`RedisClient::new`] is not `redis://[[user]:password@]host[:port][/db]`.
    #[error("invalid redis url: {0}")]
    BadUrl(String),
    /// Connecting, writing or reading failed, or Redis closed the connection.
    #[error("redis unreachable: {0}")]
    Unreachable(#[source] io::Error),
    /// No reply within the client's timeout (connect included).
    #[error("redis did not answer in time")]
    Timeout,
    /// Redis sent bytes that are not RESP, or a reply of an unexpected shape.
    #[error("redis protocol error: {0}")]
    Protocol(String),
    /// Redis answered with an error reply (e.g. `WRONGPASS`, `WRONGTYPE`).
    #[error("redis error reply: {0}")]
    Server(String),
}

impl RedisError {
    /// True when Redis could not answer at all (unreachable or timed out),
    /// as opposed to answering with an error or garbage.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RedisError::Unreachable(_) | RedisError::Timeout)
    }

    /// True for a `WRONGTYPE` error reply: the key holds another type. The
    /// redis crate renders the code quoted (`"WRONGTYPE": ...`).
    pub fn is_wrong_type(&self) -> bool {
        matches!(self, RedisError::Server(msg) if msg.trim_start_matches('"').starts_with("WRONGTYPE"))
    }
}

/// Where to connect and how to log in, parsed once from the URL.
struct Endpoint {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: u32,
}

impl Endpoint {
    /// Parses `redis://[[user]:password@]host[:port][/db]`. User and password
    /// may be percent-encoded. Error messages never contain the password.
    fn parse(url: &str) -> Result<Self, RedisError> {
        let bad = |reason: String| RedisError::BadUrl(reason);
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("scheme must be redis:// (TLS and unix sockets are not supported)".into()))?;
        if rest.contains(['?', '#']) {
            return Err(bad("query parameters and fragments are not supported".into()));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = userinfo
                    .split_once(':')
                    .ok_or_else(|| bad("credentials must be written [user]:password@".into()))?;
                (non_empty(percent_decode(user)?), non_empty(percent_decode(password)?))
            }
        };
        if username.is_some() && password.is_none() {
            return Err(bad("a user name needs a password".into()));
        }
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            // IPv6 literal: [::1]:6379
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad(format!("unclosed '[' in host {hostport:?}")))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad(format!("unexpected {after:?} after IPv6 host")))?,
                ),
            };
            (host, port)
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host".into()));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(bad(format!("bad port {port:?}"))),
            },
        };
        let db = match path {
            "" => 0,
            db => db
                .parse::<u32>()
                .map_err(|_| bad(format!("bad database number {db:?}")))?,
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            username,
            password,
            db,
        })
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Decodes `%XX` escapes (RFC 3986 2.1) in the userinfo part of the URL.
fn percent_decode(s: &str) -> Result<String, RedisError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| RedisError::BadUrl("bad percent escape in credentials".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RedisError::BadUrl("credentials are not UTF-8 after percent-decoding".into()))
}

/// Redis client for one shard; calls from several tasks share one pipelined
/// connection.
///
/// Must be used on a glommio executor thread (the first call spawns the
/// connection's driver task there). Cheap to share with `Rc`: every method
/// takes `&self`.
pub struct RedisClient {
    endpoint: Rc<Endpoint>,
    timeout: Duration,
    /// The current connection; replaced on the next call once it has closed.
    conn: RefCell<Option<Rc<Connection>>>,
    /// Reused to encode `GET`/`MGET`/`PING` so a call allocates no command.
    scratch: RefCell<Cmd>,
}

impl fmt::Debug for RedisClient {
    // Hand-written so the password never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClient")
            .field("host", &self.endpoint.host)
            .field("port", &self.endpoint.port)
            .field("db", &self.endpoint.db)
            .field("auth", &self.endpoint.password.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// Parses `redis://[[user]:password@]host[:port][/db]` (port 6379 and db 0
    /// by default; user and password percent-encoded) without any I/O.
    ///
    /// `timeout` bounds every call, connect included, and must be non-zero.
    /// A host name (rather than an IP address) is resolved with the blocking
    /// system resolver on the shard thread at each connect.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        Ok(RedisClient {
            endpoint: Rc::new(Endpoint::parse(url)?),
            timeout,
            conn: RefCell::new(None),
            scratch: RefCell::new(Cmd::new()),
        })
    }

    /// `GET key`: `None` when the key does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        let reply = self
            .call(|cmd| {
                cmd.arg("GET").arg(key);
            })
            .await?;
        bulk_or_nil(reply)
    }

    /// `MGET keys...` in one round trip: one entry per key, in key order.
    pub async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, RedisError> {
        if keys.is_empty() {
            // Redis rejects MGET without keys; the answer is known anyway.
            return Ok(Vec::new());
        }
        let reply = self
            .call(|cmd| {
                cmd.arg("MGET").arg(keys);
            })
            .await?;
        match reply {
            Value::Array(values) if values.len() == keys.len() => values.into_iter().map(bulk_or_nil).collect(),
            other => Err(unexpected("MGET", &other)),
        }
    }

    /// `PING`: `Ok` once Redis answers `PONG` (for `/readyz`).
    pub async fn ping(&self) -> Result<(), RedisError> {
        let reply = self
            .call(|cmd| {
                cmd.arg("PING");
            })
            .await?;
        match reply {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            Value::ServerError(err) => Err(RedisError::Server(err.to_string())),
            other => Err(unexpected("PING", &other)),
        }
    }

    /// Sends any single-reply command and returns the raw reply; an error
    /// reply becomes [`RedisError::Server`]. Meant for tests and tooling
    /// (e.g. `SET` to seed a session).
    ///
    /// Not for `SUBSCRIBE`/`MONITOR` (they break the one-reply-per-command
    /// FIFO) nor blocking commands (they stall every other caller behind them).
    pub async fn query(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        let conn = self.connection();
        let slot = Rc::new(Slot::default());
        conn.enqueue(cmd, Waiter::Caller(Rc::clone(&slot)));
        match self.wait(&conn, &slot).await? {
            Value::ServerError(err) => Err(RedisError::Server(err.to_string())),
            value => Ok(value),
        }
    }

    /// Encodes one command with the reused scratch `Cmd`, queues it and waits
    /// for its reply.
    async fn call(&self, encode: impl FnOnce(&mut Cmd)) -> Result<Value, RedisError> {
        let conn = self.connection();
        // Per call: this slot (one small Rc) and the timer; the reply is the
        // parser's own allocation, moved out to the caller.
        let slot = Rc::new(Slot::default());
        {
            let mut cmd = self.scratch.borrow_mut();
            cmd.clear();
            encode(&mut cmd);
            conn.enqueue(&cmd, Waiter::Caller(Rc::clone(&slot)));
        }
        self.wait(&conn, &slot).await
    }

    /// Waits for `slot` until the client's timeout; on timeout the whole
    /// connection is dropped (the next call reconnects).
    async fn wait(&self, conn: &Connection, slot: &Slot) -> Result<Value, RedisError> {
        let reply = future::or(async { Some(slot.wait().await) }, async {
            Timer::new(self.timeout).await;
            None
        })
        .await;
        match reply {
            Some(reply) => reply,
            None => {
                conn.close(Failure::Timeout);
                Err(RedisError::Timeout)
            }
        }
    }

    /// The open connection, or a new one (its driver connects in the
    /// background; commands queue up meanwhile).
    fn connection(&self) -> Rc<Connection> {
        let mut current = self.conn.borrow_mut();
        if let Some(conn) = current.as_ref().filter(|c| !c.is_closed()) {
            return Rc::clone(conn);
        }
        let conn = Connection::open(&self.endpoint);
        *current = Some(Rc::clone(&conn));
        conn
    }
}

impl Drop for RedisClient {
    fn drop(&mut self) {
        // Stops the driver task, which would otherwise idle on the socket.
        if let Some(conn) = self.conn.get_mut().take() {
            conn.close(Failure::Io(io::ErrorKind::NotConnected.into()));
        }
    }
}

fn bulk_or_nil(value: Value) -> Result<Option<Vec<u8>>, RedisError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        Value::ServerError(err) => Err(RedisError::Server(err.to_string())),
        other => Err(unexpected("GET", &other)),
    }
}

fn unexpected(command: &str, value: &Value) -> RedisError {
    RedisError::Protocol(format!("unexpected reply to {command}: {value:?}"))
}

/// Why a connection closed; copied into an error for every pending caller.
#[derive(Debug)]
enum Failure {
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
struct Slot {
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

    async fn wait(&self) -> Result<Value, RedisError> {
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
enum Waiter {
    /// `AUTH` or `SELECT` sent by the connection itself; an error closes it.
    Handshake(&'static str),
    /// A caller's slot; dropped unread if the caller gave up.
    Caller(Rc<Slot>),
}

/// State shared by the callers and the driver task of one connection.
struct Connection {
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
    fn open(endpoint: &Rc<Endpoint>) -> Rc<Self> {
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

    fn is_closed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    /// Appends the command and its waiter in one step (the FIFO invariant).
    fn enqueue(&self, cmd: &Cmd, waiter: Waiter) {
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
    fn close(&self, failure: Failure) {
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
    let connected = future::or(async { Some(connect(&endpoint).await) }, async {
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

async fn connect(endpoint: &Endpoint) -> io::Result<TcpStream> {
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in (endpoint.host.as_str(), endpoint.port).to_socket_addrs()? {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Commands and replies are small; do not let Nagle hold them.
                stream.set_nodelay(true).map_err(io::Error::from)?;
                return Ok(stream);
            }
            Err(err) => last_err = err.into(),
        }
    }
    Err(last_err)
}

/// Incremental RESP parser: replies may be split across reads, and one read
/// may hold several replies.
#[derive(Default)]
struct ReplyReader {
    /// Keeps unparsed bytes and partial state between reads.
    parser: Parser,
}

impl ReplyReader {
    /// Parses every complete reply in what has been fed so far plus `bytes`,
    /// passing each to `on_reply` in order; a partial reply waits for more.
    fn feed(&mut self, bytes: &[u8], mut on_reply: impl FnMut(Value) -> Result<(), Failure>) -> Result<(), Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;
    use std::future::Future;
    use std::io::Write;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    const TIMEOUT: Duration = Duration::from_millis(500);

    /// A `redis-server` on a free loopback port, killed on drop.
    struct RedisServer {
        child: Option<Child>,
        port: u16,
        extra_args: Vec<String>,
    }

    impl RedisServer {
        fn start(extra_args: &[&str]) -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut server = RedisServer {
                child: None,
                port,
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            };
            server.restart();
            server
        }

        /// Starts (again) on the same port; waits until it answers PING.
        fn restart(&mut self) {
            assert!(self.child.is_none(), "already running");
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(&self.extra_args)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server)");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                    let mut buf = [0u8; 64];
                    if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).unwrap_or(0) > 0 {
                        return;
                    }
                }
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }

        fn signal(&self, sig: &str) {
            let pid = self.child.as_ref().unwrap().id().to_string();
            assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            if let Some(child) = self.child.as_mut() {
                let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn run<G, F>(fut_gen: G)
    where
        G: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .spawn(fut_gen)
            .unwrap()
            .join()
            .unwrap();
    }

    async fn set(client: &RedisClient, key: &str, value: &[u8]) {
        let reply = client.query(::redis::cmd("SET").arg(key).arg(value)).await.unwrap();
        assert_eq!(reply, Value::Okay);
    }

    #[test]
    fn get_of_missing_key_is_none() {
        run(|| async {
            let server = RedisServer::start(&[]);
            let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            assert_eq!(client.get("session:nope").await.unwrap(), None);
        });
    }

    #[test]
    fn get_returns_value_of_set_key_including_binary_and_large() {
        run(|| async {
            let server = RedisServer::start(&[]);
            let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            let session = br#"{"user_id":"u1","role":"admin"}"#;
            set(&client, "session:abc", session).await;
            assert_eq!(client.get("session:abc").await.unwrap().as_deref(), Some(&session[..]));

            let binary = b"a\r\n$3\r\n\0\xff";
            set(&client, "bin", binary).await;
            assert_eq!(client.get("bin").await.unwrap().as_deref(), Some(&binary[..]));

            // 1 MiB: the reply spans many socket reads.
            let large: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
            set(&client, "large", &large).await;
            assert_eq!(client.get("large").await.unwrap(), Some(large));
        });
    }

    #[test]
    fn mget_returns_values_and_none_in_key_order() {
        run(|| async {
            let server = RedisServer::start(&[]);
            let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            set(&client, "a", b"1").await;
            set(&client, "c", b"3").await;
            let got = client.mget(&["a", "b", "c", "d"]).await.unwrap();
            assert_eq!(got, vec![Some(b"1".to_vec()), None, Some(b"3".to_vec()), None]);
            assert_eq!(client.mget(&[]).await.unwrap(), Vec::<Option<Vec<u8>>>::new());
        });
    }

    #[test]
    fn ping_answers_and_wrong_type_is_server_error() {
        run(|| async {
            let server = RedisServer::start(&[]);
            let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            client.ping().await.unwrap();
            client.query(::redis::cmd("LPUSH").arg("list").arg("x")).await.unwrap();
            let err = client.get("list").await.unwrap_err();
            assert!(
                matches!(&err, RedisError::Server(msg) if msg.contains("WRONGTYPE")),
                "{err}"
            );
            // An error reply leaves the connection usable.
            client.ping().await.unwrap();
        });
    }

    #[test]
    fn concurrent_gets_from_50_tasks_each_get_their_own_value() {
        run(|| async {
            let server = RedisServer::start(&[]);
            let client = Rc::new(RedisClient::new(&server.url(), Duration::from_secs(5)).unwrap());
            for i in 0..50 {
                set(&client, &format!("k{i}"), format!("v{i}").as_bytes()).await;
            }
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    let client = Rc::clone(&client);
                    glommio::spawn_local(async move {
                        let key = format!("k{i}");
                        let want = format!("v{i}").into_bytes();
                        for round in 0..100 {
                            if (i + round) % 7 == 0 {
                                let got = client.mget(&[&key, "missing"]).await.unwrap();
                                assert_eq!(got, vec![Some(want.clone()), None]);
                            } else {
                                assert_eq!(client.get(&key).await.unwrap(), Some(want.clone()));
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
            // All 50 tasks shared one pipelined connection.
            let reply = client.query(::redis::cmd("CLIENT").arg("LIST")).await.unwrap();
            let Value::BulkString(list) = reply else {
                panic!("CLIENT LIST: {reply:?}")
            };
            assert_eq!(String::from_utf8(list).unwrap().lines().count(), 1);
        });
    }

    #[test]
    fn cancelled_caller_does_not_shift_replies() {
        run(|| async {
            let server = RedisServer::start(&[]);
            let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            set(&client, "x", b"x").await;
            set(&client, "y", b"y").await;
            // Poll a GET once (queued), then drop it before its reply.
            let mut first = Box::pin(client.get("x"));
            assert!(future::poll_once(&mut first).await.is_none());
            drop(first);
            assert_eq!(client.get("y").await.unwrap(), Some(b"y".to_vec()));
        });
    }

    #[test]
    fn stopped_server_fails_within_timeout_and_restart_recovers() {
        run(|| async {
            let mut server = RedisServer::start(&[]);
            let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            client.ping().await.unwrap();

            server.stop();
            let started = Instant::now();
            let err = client.get("k").await.unwrap_err();
            assert!(err.is_unavailable(), "{err}");
            assert!(started.elapsed() < TIMEOUT + Duration::from_millis(250));
            // Still down: every call fails, none hangs.
            let err = client.get("k").await.unwrap_err();
            assert!(matches!(err, RedisError::Unreachable(_)), "{err}");

            server.restart();
            set(&client, "k", b"back").await;
            assert_eq!(client.get("k").await.unwrap(), Some(b"back".to_vec()));
        });
    }

    #[test]
    fn frozen_server_times_out_and_resumed_server_recovers() {
        run(|| async {
            let server = RedisServer::start(&[]);
            let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            client.ping().await.unwrap();

            server.signal("-STOP");
            let started = Instant::now();
            let err = client.get("k").await.unwrap_err();
            let elapsed = started.elapsed();
            assert!(matches!(err, RedisError::Timeout), "{err}");
            assert!(
                elapsed >= TIMEOUT && elapsed < TIMEOUT + Duration::from_millis(250),
                "{elapsed:?}"
            );

            server.signal("-CONT");
            assert_eq!(client.get("k").await.unwrap(), None);
        });
    }

    #[test]
    fn connection_killed_by_server_is_replaced_without_error() {
        run(|| async {
            let server = RedisServer::start(&[]);
            let client = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            client.ping().await.unwrap();
            let mut admin = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            admin
                .write_all(
                    &::redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("TYPE")
                        .arg("normal")
                        .get_packed_command(),
                )
                .unwrap();
            let mut buf = [0u8; 64];
            assert!(admin.read(&mut buf).unwrap() > 0);
            // Let the driver see the EOF.
            Timer::new(Duration::from_millis(50)).await;
            assert_eq!(client.get("k").await.unwrap(), None);
        });
    }

    #[test]
    fn nothing_listening_is_unreachable_quickly() {
        run(|| async {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let client = RedisClient::new(&format!("redis://127.0.0.1:{port}"), TIMEOUT).unwrap();
            let started = Instant::now();
            let err = client.ping().await.unwrap_err();
            assert!(matches!(err, RedisError::Unreachable(_)), "{err}");
            assert!(started.elapsed() < TIMEOUT);
        });
    }

    #[test]
    fn password_and_db_from_url_are_used() {
        run(|| async {
            let server = RedisServer::start(&["--requirepass", "s3cr@t/pw"]);
            let port = server.port;
            let db2 = RedisClient::new(&format!("redis://:s3cr%40t%2Fpw@127.0.0.1:{port}/2"), TIMEOUT).unwrap();
            let db0 = RedisClient::new(&format!("redis://default:s3cr%40t%2Fpw@127.0.0.1:{port}"), TIMEOUT).unwrap();
            set(&db2, "only-in-2", b"yes").await;
            assert_eq!(db2.get("only-in-2").await.unwrap(), Some(b"yes".to_vec()));
            assert_eq!(db0.get("only-in-2").await.unwrap(), None);

            let wrong = RedisClient::new(&format!("redis://:nope@127.0.0.1:{port}"), TIMEOUT).unwrap();
            let err = wrong.get("k").await.unwrap_err();
            assert!(
                matches!(&err, RedisError::Server(msg) if msg.starts_with("AUTH failed")),
                "{err}"
            );
            let none = RedisClient::new(&server.url(), TIMEOUT).unwrap();
            let err = none.get("k").await.unwrap_err();
            assert!(
                matches!(&err, RedisError::Server(msg) if msg.contains("NOAUTH")),
                "{err}"
            );
        });
    }

    #[test]
    fn url_forms_parse() {
        let e = Endpoint::parse("redis://127.0.0.1").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.db), ("127.0.0.1", 6379, 0));
        assert!(e.password.is_none() && e.username.is_none());
        let e = Endpoint::parse("redis://:pw@redis.local:7000/3").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.db), ("redis.local", 7000, 3));
        assert_eq!(e.password.as_deref(), Some("pw"));
        let e = Endpoint::parse("redis://app:p%3Aw%40@[::1]:6380/").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.db), ("::1", 6380, 0));
        assert_eq!(
            (e.username.as_deref(), e.password.as_deref()),
            (Some("app"), Some("p:w@"))
        );
    }

    #[test]
    fn bad_urls_are_rejected_without_echoing_the_password() {
        for url in [
            "http://localhost",
            "rediss://localhost",
            "redis://",
            "redis://:hunter2@host:99999",
            "redis://:hunter2@host:0",
            "redis://:hunter2@host/x",
            "redis://hunter2@host",
            "redis://:hunter2@host?timeout=1",
            "redis://:hunt%zzer2@host",
            "redis://:hunter2@[::1",
        ] {
            let err = RedisClient::new(url, TIMEOUT).unwrap_err();
            assert!(matches!(err, RedisError::BadUrl(_)), "{url}: {err}");
            assert!(!err.to_string().contains("hunt"), "{url}: {err}");
        }
        let client = RedisClient::new("redis://:hunter2@host", TIMEOUT).unwrap();
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn reply_reader_handles_split_and_batched_replies() {
        let stream: &[u8] = b"$5\r\nhello\r\n*2\r\n$1\r\na\r\n$-1\r\n+PONG\r\n-ERR nope\r\n:7\r\n";
        let want = [
            Value::BulkString(b"hello".to_vec()),
            Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil]),
            Value::SimpleString("PONG".into()),
        ];
        for chunk in [1, 2, 3, 5, 7, stream.len()] {
            let mut reader = ReplyReader::default();
            let mut got = Vec::new();
            for part in stream.chunks(chunk) {
                reader
                    .feed(part, |v| {
                        got.push(v);
                        Ok(())
                    })
                    .unwrap();
            }
            assert_eq!(got.len(), 5, "chunk {chunk}");
            assert_eq!(got[..3], want[..], "chunk {chunk}");
            assert!(matches!(got[3], Value::ServerError(_)), "chunk {chunk}");
            assert_eq!(got[4], Value::Int(7), "chunk {chunk}");
        }
    }

    #[test]
    fn reply_reader_rejects_garbage() {
        let mut reader = ReplyReader::default();
        let result = reader.feed(b"?what\r\n", |_| Ok(()));
        assert!(matches!(result, Err(Failure::Protocol(_))));
    }
}
