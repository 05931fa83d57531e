//! Test harness: the real engine on loopback, real Kafka, real WebSockets.
//!
//! Every integration test (`tests/*.rs`, one behaviour per file) declares
//! `mod common;` and picks what it needs; each test owns everything it
//! starts, and Drop stops it. One module per thing a test talks to:
//!
//! - here: [`TestEngine`], fanout in this process on `127.0.0.1:0` with the
//!   embedded broker (librdkafka's mock cluster) or a given one; [`Client`],
//!   a tungstenite client over a real socket; the sentinel protocol below;
//!   and what works on any fanout at an address (HTTP, metrics, readiness).
//! - [`process`]: the `fanout` binary as a child process (`FanoutProcess`).
//! - [`raw`]: the WebSocket upgrade and frames by hand, for clients that
//!   misbehave on purpose.
//! - [`producer`]: the Kafka producer and offset reads (`Producer`).
//! - [`redis_server`], [`tansu`], [`haproxy`]: the real Redis, Kafka-protocol
//!   broker and load balancer as child processes; [`admin`]: admin sessions
//!   on that Redis.
//!
//! "Nothing arrives" is never judged by waiting: a test produces a sentinel
//! event after the records that must not reach a client
//! ([`TestEngine::produce_sentinel`]), and asserts the sentinel is the next
//! thing the client gets ([`Client::expect_sentinel`]). The sentinel is
//! produced only once the engine has consumed every record produced before
//! it, and the ingest thread hands events to each shard's inbox in the order
//! it consumed them, so anything those records made for the client would be
//! queued to its socket before the sentinel.
#![allow(dead_code)]

pub mod admin;
pub mod haproxy;
pub mod process;
pub mod producer;
pub mod raw;
pub mod redis_server;
pub mod tansu;

use std::cell::Cell;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use fanout::ingest::embedded::EmbeddedBroker;
use fanout::{Cli, Config, Engine};
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use self::producer::Producer;

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The `course_id` of sentinel events; a client sees them after
/// [`Client::watch_sentinel`] (or with scope all).
pub const SENTINEL_COURSE: &str = "SENTINEL";

/// A running engine and a producer into its broker.
pub struct TestEngine {
    engine: Option<Engine>,
    pub addr: SocketAddr,
    pub bootstrap: String,
    producer: Producer,
    /// Sentinels produced so far; each carries its number.
    sentinels: Cell<u32>,
}

impl TestEngine {
    /// Engine on the embedded broker, with `args` added to the defaults.
    pub fn start(args: &[&str]) -> TestEngine {
        Self::start_on("embedded", args)
    }

    /// Engine consuming from `brokers`, with `args` added to the defaults;
    /// returns once `/readyz` answers 200.
    pub fn start_on(brokers: &str, args: &[&str]) -> TestEngine {
        let test = Self::start_unready(brokers, args);
        test.wait_ready();
        test
    }

    /// Like [`TestEngine::start_on`], without waiting for readiness.
    pub fn start_unready(brokers: &str, args: &[&str]) -> TestEngine {
        let mut argv = vec![
            "fanout",
            "--no-pin",
            "--listen",
            "127.0.0.1",
            "--port",
            "0",
            "--kafka-brokers",
            brokers,
        ];
        if !args.contains(&"--shards") {
            argv.extend_from_slice(&["--shards", "1"]);
        }
        argv.extend_from_slice(args);
        let config =
            Config::from_cli(Cli::try_parse_from(&argv).expect("test flags parse")).expect("test config is valid");
        let engine = Engine::start(config).expect("engine starts");
        let addr = engine.local_addr();
        let bootstrap = engine.kafka_bootstrap().to_string();
        let producer = Producer::new(&bootstrap);
        TestEngine {
            engine: Some(engine),
            addr,
            bootstrap,
            producer,
            sentinels: Cell::new(0),
        }
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        wait_ready_at(self.addr, String::new);
    }

    /// Produces one record and waits until the broker has it.
    pub fn produce(&self, topic: &str, value: &str) {
        self.producer.produce_keyed(topic, None, value.as_bytes());
    }

    /// Produces a JSON value.
    pub fn produce_json(&self, topic: &str, value: &Value) {
        self.producer.produce_json(topic, value);
    }

    /// Produces `values` into one partition as one batch.
    pub fn produce_burst(&self, topic: &str, partition: i32, values: &[String]) {
        self.producer.produce_burst(topic, partition, values);
    }

    /// Produces raw bytes with an optional key.
    pub fn produce_keyed(&self, topic: &str, key: Option<&str>, value: &[u8]) {
        self.producer.produce_keyed(topic, key, value);
    }

    /// Produces a JSON value into one partition.
    pub fn produce_to_partition(&self, topic: &str, partition: i32, value: &Value) {
        self.producer.produce_to_partition(topic, partition, value);
    }

    /// Waits until the engine has consumed at least as many records as were
    /// produced through this handle: each of them is then in every shard's
    /// inbox or was skipped. (Only for records of topics the engine
    /// consumes, with no other consumer in its group.)
    pub fn wait_consumed(&self) {
        let produced = self.producer.count() as f64;
        self.wait_metric("fanout_events_consumed_total", |consumed| consumed >= produced);
    }

    /// Produces the next sentinel (a `booking.created` for
    /// [`SENTINEL_COURSE`]) once everything produced before it has been
    /// consumed, and returns its number for [`Client::expect_sentinel`].
    pub fn produce_sentinel(&self) -> u32 {
        self.wait_consumed();
        let number = self.sentinels.get() + 1;
        self.sentinels.set(number);
        self.produce_json("booking.created", &booking(SENTINEL_COURSE, number));
        number
    }

    /// A public client on `/ws/availability`, past its `connected` message.
    pub fn public_client(&self) -> Client {
        public_client_at(self.addr)
    }

    /// Opens a WebSocket to `path` with extra headers; `Err(status)` when the
    /// server refuses the upgrade.
    pub fn connect(&self, path: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
        connect(self.addr, path, headers)
    }

    /// A plain HTTP GET: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// `/metrics` as text.
    pub fn metrics(&self) -> String {
        metrics_at(self.addr)
    }

    /// The value of one metric line (exact name with labels), summed when
    /// the name matches several lines (pass the bare name).
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics(), name)
    }

    /// Waits until `metric(name)` satisfies `check`.
    pub fn wait_metric(&self, name: &str, check: impl Fn(f64) -> bool) -> f64 {
        wait_metric_at(self.addr, name, PATIENCE, check, String::new)
    }

    /// Stops the engine gracefully (SPEC §10).
    pub fn shutdown(mut self) {
        if let Some(engine) = self.engine.take() {
            engine.shutdown().expect("clean shutdown");
        }
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            let _ = engine.shutdown();
        }
    }
}

/// A public client of the engine at `addr`, past its `connected` message.
pub fn public_client_at(addr: SocketAddr) -> Client {
    let mut client = connect(addr, "/ws/availability", &[]).expect("upgrade succeeds");
    let hello = client.recv_json();
    assert_eq!(hello["type"], "connected", "{hello}");
    client
}

/// Opens a WebSocket to `path` of the engine at `addr` with extra headers;
/// `Err(status)` when the server refuses the upgrade.
pub fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
    let url = format!("ws://{addr}{path}");
    let mut request = url.into_client_request().expect("valid url");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    match tungstenite::client(request, stream) {
        Ok((ws, _)) => Ok(Client { ws }),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(err) => panic!("handshake failed unexpectedly (no answer within {PATIENCE:?}?): {err}"),
    }
}

/// A broker of the test's own with `partitions` partitions of
/// `booking.created` (it outlives the engines started on it), and the engine
/// flags for consumer group `group` plus `extra`.
pub fn own_broker(partitions: i32, group: &'static str, extra: &[&'static str]) -> (EmbeddedBroker, Vec<&'static str>) {
    let broker = EmbeddedBroker::start(&["booking.created".to_string()], partitions).expect("broker");
    // One instance id, so a restarted engine resumes from the same positions.
    let mut args = vec![
        "--topics",
        "booking.created",
        "--kafka-group-id",
        group,
        "--instance-id",
        "restarted",
    ];
    // The mock broker sits out fetch.wait.max.ms (see src/ingest/kafka/).
    args.extend(["--kafka-opt", "fetch.wait.max.ms=1"]);
    args.extend_from_slice(extra);
    (broker, args)
}

// What follows works on any fanout at `addr`: a `TestEngine` in this
// process or a `process::FanoutProcess`; their methods of the same names
// call these. `context` adds to a failure message (a child's log).

/// A plain HTTP GET to the fanout at `addr`: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
}

/// `/metrics` of the fanout at `addr`, as text.
pub fn metrics_at(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "GET /metrics");
    body
}

/// Waits until `/readyz` of the fanout at `addr` answers 200 (at most 30 s:
/// the first partition assignment can be slow on a loaded machine).
pub fn wait_ready_at(addr: SocketAddr, context: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(addr, "/readyz");
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never became ready: {status} {body}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `patience` until metric `name` of the fanout at `addr`
/// satisfies `check`; on failure, shows every metric and then `context()`.
///
/// Polls every 20 ms; on a wait longer than [`PATIENCE`], every 50 ms: the
/// long waits are those of the `hostile_*` tests, which measure the
/// server's shard CPU, and every scrape is served by a shard.
pub fn wait_metric_at(
    addr: SocketAddr,
    name: &str,
    patience: Duration,
    check: impl Fn(f64) -> bool,
    context: impl Fn() -> String,
) -> f64 {
    let poll = if patience > PATIENCE {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(20)
    };
    let deadline = Instant::now() + patience;
    loop {
        // A scrape the engine could not answer in time (a shard busy with
        // thousands of upgrades) is "not yet", until the wait's own limit.
        let (status, text) = http_get(addr, "/metrics");
        if status != 200 {
            assert!(
                Instant::now() < deadline,
                "GET /metrics answered {status} until the end of the wait; {}",
                context()
            );
            std::thread::sleep(poll);
            continue;
        }
        let value = metric_value(&text, name);
        if check(value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "metric {name} stuck at {value}; every metric:\n{text}\n{}",
            context()
        );
        std::thread::sleep(poll);
    }
}

/// Sums the samples of `name` (a bare name matches every label set; a name
/// with labels matches that line only).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| *series == name || series.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
        .map(|(_, value)| value.parse::<f64>().expect("metric value is a number"))
        .sum()
}

/// Sends raw bytes and reads the whole response: (status, body).
pub fn http_request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(raw.as_bytes()).expect("write request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A WebSocket client over a real socket.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
}

/// What a read ended with.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Closed(Option<u16>),
    Nothing,
}

impl Client {
    pub fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string());
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    /// Next JSON message, failing the test after [`PATIENCE`].
    pub fn recv_json(&mut self) -> Value {
        match self.recv_within(PATIENCE) {
            Received::Json(value) => value,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// Next message within `wait`: JSON, a close, or nothing.
    pub fn recv_within(&mut self, wait: Duration) -> Received {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Received::Nothing;
            }
            self.ws.get_ref().set_read_timeout(Some(left)).expect("timeout");
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return Received::Json(serde_json::from_str(&text).expect("server sends JSON"));
                }
                Ok(Message::Close(frame)) => return Received::Closed(frame.map(|f: CloseFrame| f.code.into())),
                Ok(_) => continue, // ping/pong: tungstenite answers pings itself
                Err(tungstenite::Error::Io(err))
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Received::Nothing;
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Received::Closed(None);
                }
                Err(err) => {
                    eprintln!("read error: {err}");
                    return Received::Closed(None);
                }
            }
        }
    }

    /// Subscribes to [`SENTINEL_COURSE`], so sentinels reach this client.
    pub fn watch_sentinel(&mut self) {
        self.send_json(json!({"type": "subscribe", "filters": {"course_id": SENTINEL_COURSE}}));
        let reply = self.recv_json();
        assert_eq!(reply["type"], "subscribed", "{reply}");
    }

    /// Every message before sentinel `number`, which must come next after
    /// them (see [`TestEngine::produce_sentinel`]).
    pub fn recv_until_sentinel(&mut self, number: u32) -> Vec<Value> {
        let mut before = Vec::new();
        loop {
            let message = self.recv_json();
            // Public shape (availability.updated) or admin shape (booking).
            let course = message.get("course_id").or_else(|| message["booking"].get("course_id"));
            if course.and_then(Value::as_str) != Some(SENTINEL_COURSE) {
                before.push(message);
                continue;
            }
            let slots = message
                .get("slots_remaining")
                .or_else(|| message["booking"].get("slots_remaining"));
            assert_eq!(
                slots.and_then(Value::as_u64),
                Some(u64::from(number)),
                "sentinels arrive in order: {message}"
            );
            return before;
        }
    }

    /// Asserts sentinel `number` is the next message: nothing produced
    /// before it reached this client.
    pub fn expect_sentinel(&mut self, number: u32) {
        let before = self.recv_until_sentinel(number);
        assert!(before.is_empty(), "arrived before sentinel {number}: {before:?}");
    }

    /// Reads the server's next Ping and answers it at once; fails on a
    /// message, a close or [`PATIENCE`] without one.
    pub fn expect_ping(&mut self) {
        self.ws.get_ref().set_read_timeout(Some(PATIENCE)).expect("timeout");
        match self.ws.read() {
            // tungstenite queued the Pong; flush sends it now.
            Ok(Message::Ping(_)) => self.ws.flush().expect("send pong"),
            other => panic!("expected a ping, got {other:?}"),
        }
    }

    /// Waits for the server's close frame; returns its code.
    pub fn expect_close(&mut self) -> Option<u16> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.recv_within(deadline.saturating_duration_since(Instant::now())) {
                Received::Closed(code) => return code,
                Received::Json(_) => continue,
                Received::Nothing => panic!("no close within {PATIENCE:?}"),
            }
        }
    }

    /// Subscribes and returns the `subscribed` reply.
    pub fn subscribe(&mut self, filters: Value) -> Value {
        self.send_json(json!({"type": "subscribe", "filters": filters}));
        let reply = self.recv_json();
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }
}

/// A `booking.created` envelope with `slots_remaining`, routed by `course`.
pub fn booking(course: &str, slots: u32) -> Value {
    json!({
        "topic": "booking.created",
        "timestamp": "2026-11-23T10:00:00Z",
        "payload": {"data": {"booking_id": format!("bk-{slots}"), "course_id": course,
            "schedule_id": "sch-1", "student_id": "st-9", "slots_remaining": slots}}
    })
}

// Helpers of the process harnesses (redis_server, tansu).
/// A port that was free a moment ago (the OS picks it; we release it).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// A new empty directory under the system temp dir, unique per process and
/// call.
pub fn unique_temp_dir(what: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "fanout-{what}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("creating {}: {err}", dir.display()));
    dir
}

/// The last lines of a child process's log, for panic messages.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", path.display())
}
