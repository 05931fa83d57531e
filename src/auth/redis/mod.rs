//! Minimal Redis client for one glommio shard: `GET`, `MGET`, `PING`; the
//! production [`SessionStore`].
//!
//! The admin endpoint (SPEC §2) looks up `session:<id>` here, and the
//! re-check (SPEC §3.4) reads it again; `/readyz` calls [`RedisClient::ping`].
//! The `redis` crate only encodes commands and parses RESP; the bytes move over
//! a glommio [`TcpStream`](glommio::net::TcpStream) because redis' async
//! client needs tokio.
//!
//! This file holds the client and its errors; `endpoint` parses the URL and
//! `connection` holds the pipelined socket and its driver task; `tests` runs
//! them against a real `redis-server`.
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

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use ::redis::{Cmd, Value};
use futures_lite::future;
use glommio::timer::Timer;

use self::connection::{Connection, Failure, Slot, Waiter};
use self::endpoint::Endpoint;
use super::{SessionStore, StoreError, StoreFuture};

mod connection;
mod endpoint;
#[cfg(test)]
mod tests;

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

/// The Redis key of a session id.
pub fn session_key(session_id: &str) -> String {
    format!("session:{session_id}")
}

impl SessionStore for RedisClient {
    fn session<'a>(&'a self, session_id: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.get(&session_key(session_id)).await.map_err(store_error) })
    }

    fn sessions<'a>(&'a self, session_ids: &'a [&'a str]) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(async move {
            let keys: Vec<String> = session_ids.iter().map(|id| session_key(id)).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.mget(&keys).await.map_err(store_error)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { RedisClient::ping(self).await.map_err(store_error) })
    }
}

/// Redis answered `WRONGTYPE`: the key holds no session. Anything else
/// means Redis could not give an answer (503 at the upgrade).
fn store_error(err: RedisError) -> StoreError {
    if err.is_wrong_type() {
        StoreError::NotASession
    } else {
        StoreError::Unavailable(err.to_string())
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
