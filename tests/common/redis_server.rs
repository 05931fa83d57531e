//! A real `redis-server` process for integration tests, on a free loopback port.
//!
//! Owned by one test: `RedisServer::start` spawns the process in its own temp
//! directory (no persistence: `--save "" --appendonly no`) and returns once it
//! answers `PING`. Tests seed sessions with `set`/`del`, which speak RESP over
//! a plain `std::net::TcpStream`, so the harness needs no Redis client crate;
//! `calls` counts what the engine asked of it.
//! `stop` kills the process to simulate Redis being down; `start_again`
//! brings up an empty one on the same port, so the engine's configured URL
//! stays valid.
//! Invariant: while a `RedisServer` lives, no other test uses its port or
//! directory; Drop kills the process and removes the directory.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, log_tail, unique_temp_dir};

/// How long a fresh `redis-server` may take to answer `PING`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read/write timeout of one harness command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Fresh ports to try when another process takes the probed port first.
const START_ATTEMPTS: usize = 5;

/// A `redis-server` child process bound to `127.0.0.1` on a free port.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it
    /// answers `PING`.
    ///
    /// Panics if `redis-server` is not installed or does not come up.
    pub fn start() -> Self {
        let dir = unique_temp_dir("redis");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = RedisServer {
                port: free_port(),
                dir: dir.clone(),
                child: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                // Probably lost the port to another test between probe and
                // bind; `server` is dropped (killed) and we retry elsewhere.
                Err(failure) => last_failure = failure,
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    /// The URL the engine takes as `--redis-url`: `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The loopback port the server listens on (kept across `start_again`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `SET key value`. Panics if the server is stopped or refuses.
    pub fn set(&self, key: &str, value: &str) {
        let reply = self.command(&["SET", key, value]);
        assert_eq!(reply, Reply::Simple("OK".into()), "SET {key:?} failed");
    }

    /// `GET key`: `None` when the key does not exist.
    pub fn get(&self, key: &str) -> Option<String> {
        match self.command(&["GET", key]) {
            Reply::Bulk(value) => value,
            other => panic!("GET {key:?}: unexpected reply {other:?}"),
        }
    }

    /// `DEL key`. Deleting a missing key is not an error.
    pub fn del(&self, key: &str) {
        match self.command(&["DEL", key]) {
            Reply::Integer(_) => {}
            other => panic!("DEL {key:?}: unexpected reply {other:?}"),
        }
    }

    /// How many times the server has run `command` (lowercase, e.g.
    /// `mget`), from `INFO commandstats`; 0 before the first.
    pub fn calls(&self, command: &str) -> u64 {
        let info = match self.command(&["INFO", "commandstats"]) {
            Reply::Bulk(Some(info)) => info,
            other => panic!("INFO commandstats: unexpected reply {other:?}"),
        };
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|rest| {
                let count = rest.split(',').next().unwrap_or(rest);
                count.parse().expect("calls is a number")
            })
            .unwrap_or(0)
    }

    /// Kills the server (SIGKILL, like a crash), so clients see Redis down.
    /// Its data is lost. Stopping a stopped server does nothing.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts an empty server again on the same port after `stop`, and waits
    /// until it answers `PING`. Panics if it is still running or cannot start.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: redis-server is still running");
        // The old listener is gone and redis-server sets SO_REUSEADDR, so the
        // port is ours unless another process grabbed it meanwhile: retry a
        // few times, then give up loudly.
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(failure) if Instant::now() >= deadline => {
                    panic!("redis-server did not start again on port {}: {failure}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Runs one command and returns its reply; panics on I/O errors.
    fn command(&self, args: &[&str]) -> Reply {
        assert!(self.child.is_some(), "redis-server on port {} is stopped", self.port);
        let reply = try_command(self.port, args).unwrap_or_else(|err| {
            panic!(
                "redis command {:?} on port {} failed: {err}\n{}",
                args[0],
                self.port,
                log_tail(&self.log_path())
            )
        });
        if let Reply::Error(message) = &reply {
            panic!("redis command {:?} answered an error: {message}", args[0]);
        }
        reply
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Spawns the process and waits for `PONG`. `Err` if it exited early;
    /// panics if it neither exits nor answers in time.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = File::create(&log_path).unwrap_or_else(|err| panic!("creating {}: {err}", log_path.display()));
        let log_err = log.try_clone().expect("cloning a file handle");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                panic!("redis-server is not installed (not found on PATH): run scripts/deps-up.sh")
            }
            Err(err) => panic!("spawning redis-server: {err}"),
        };
        self.child = Some(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if matches!(try_command(self.port, &["PING"]), Ok(Reply::Simple(pong)) if pong == "PONG") {
                return Ok(());
            }
            let child = self.child.as_mut().expect("set above");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("redis-server exited with {status}\n{}", log_tail(&log_path)));
            }
            // Only an early exit (most likely a lost port) is worth a retry;
            // a server that hangs would hang again. Drop kills it.
            if Instant::now() >= deadline {
                panic!(
                    "redis-server on port {} did not answer PING within {STARTUP_TIMEOUT:?}\n{}",
                    self.port,
                    log_tail(&log_path)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One RESP2 reply, as much of it as the harness needs.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
}

/// Sends `args` as a RESP array of bulk strings on a new connection and
/// reads one reply.
fn try_command(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, COMMAND_TIMEOUT)?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;

    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request)?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "connection closed"));
    }
    let line = line.trim_end_matches("\r\n");
    let bad = |what: &str| std::io::Error::new(ErrorKind::InvalidData, format!("{what}: {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply"))?;
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest.parse().map(Reply::Integer).map_err(|_| bad("bad integer")),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad("bad bulk length"))?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut body = vec![0; len as usize + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len as usize);
            let text = String::from_utf8(body).map_err(|_| bad("bulk string is not UTF-8"))?;
            Ok(Reply::Bulk(Some(text)))
        }
        _ => Err(bad("unsupported reply type")),
    }
}
