//! A real Kafka-protocol broker (tansu) for integration tests, on a free
//! loopback port.
//!
//! Owned by one test: `TansuBroker::start` spawns `tansu broker` with
//! in-memory storage from an empty temp directory (tansu reads a `.env` from
//! its working directory, so it must not inherit the crate's) and returns
//! once the broker answers a Kafka `ApiVersions` request. `create_topic` runs
//! the `tansu topic create` CLI against it. The broker's stdout and stderr go
//! to `tansu.log` in the temp directory; every panic here quotes its tail.
//! The binary comes from `$FANOUT_TANSU`, else
//! `$HOME/.cache/fanout/tansu/bin/tansu` (what `scripts/deps-up.sh` builds).
//! Invariant: while a `TansuBroker` lives, no other test uses its port or
//! directory; Drop kills the process and removes the directory.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, log_tail, unique_temp_dir};

/// How long a fresh broker may take to answer `ApiVersions`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/write timeout of the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Fresh ports to try when another process takes the probed port first.
const START_ATTEMPTS: usize = 5;
/// Environment variables tansu reads as defaults for its flags; removed so a
/// developer's shell cannot redirect the test broker.
const TANSU_ENV: &[&str] = &[
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "DATA_LAKE",
];

/// A `tansu broker` child process with in-memory storage on `127.0.0.1`.
pub struct TansuBroker {
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
}

impl TansuBroker {
    /// Starts a broker on a free loopback port and waits until it answers a
    /// Kafka `ApiVersions` request.
    ///
    /// Panics if the tansu binary is missing or the broker does not come up.
    pub fn start() -> Self {
        let binary = tansu_binary();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut broker = TansuBroker {
                port: free_port(),
                dir: unique_temp_dir("tansu"),
                binary: binary.clone(),
                child: None,
            };
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                // Probably lost the port to another test between probe and
                // bind; `broker` is dropped (killed, dir removed), retry.
                Err(failure) => last_failure = failure,
            }
        }
        panic!("tansu broker did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    /// The address clients take as `bootstrap.servers`: `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The loopback port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates `name` with `partitions` partitions through the tansu CLI.
    ///
    /// Panics if the CLI fails, including when the topic already exists.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let output = self
            .command()
            .args(["topic", "create", name])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string()])
            .output()
            .unwrap_or_else(|err| panic!("running {} topic create: {err}", self.binary.display()));
        if !output.status.success() {
            panic!(
                "tansu topic create {name:?} --partitions {partitions} failed with {}\n\
                 stdout: {}\nstderr: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log_tail()
            );
        }
    }

    /// The last lines of the broker's log, for a test's own panic messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("tansu.log")
    }

    /// A tansu command run from the broker's empty directory, without the
    /// environment variables that would override its flags.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        // NO_COLOR: the CLI logs through tracing, whose ANSI codes would
        // clutter panic messages.
        command.current_dir(&self.dir).env("NO_COLOR", "1").stdin(Stdio::null());
        for name in TANSU_ENV {
            command.env_remove(name);
        }
        command
    }

    /// Spawns the broker and waits for its `ApiVersions` answer. `Err` if it
    /// exited early; panics if it neither exits nor answers in time.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = File::create(&log_path).unwrap_or_else(|err| panic!("creating {}: {err}", log_path.display()));
        let log_err = log.try_clone().expect("cloning a file handle");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = self
            .command()
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|err| panic!("spawning {}: {err}", self.binary.display()));
        self.child = Some(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if probe_api_versions(self.port).is_ok() {
                return Ok(());
            }
            let child = self.child.as_mut().expect("set above");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("tansu broker exited with {status}\n{}", self.log_tail()));
            }
            // Only an early exit (most likely a lost port) is worth a retry;
            // a broker that hangs would hang again. Drop kills it.
            if Instant::now() >= deadline {
                panic!(
                    "tansu broker on port {} did not answer within {STARTUP_TIMEOUT:?}\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Where the tansu binary is: `$FANOUT_TANSU`, else the cache that
/// `scripts/deps-up.sh` fills. Panics with the fix if it is not there.
fn tansu_binary() -> PathBuf {
    let path = match std::env::var_os("FANOUT_TANSU") {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set, cannot find tansu");
            Path::new(&home).join(".cache/fanout/tansu/bin/tansu")
        }
    };
    if !path.is_file() {
        panic!(
            "tansu broker binary not found at {} (set FANOUT_TANSU or run scripts/deps-up.sh)",
            path.display()
        );
    }
    path
}

/// Sends a Kafka `ApiVersions` v0 request and waits for a response with the
/// same correlation id: the broker is accepting and serving requests.
fn probe_api_versions(port: u16) -> std::io::Result<()> {
    const API_VERSIONS_KEY: i16 = 18;
    const CORRELATION_ID: i32 = 0x0f0f;
    let client_id = b"fanout-test-probe";

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;

    // Request header v1: api_key, api_version, correlation_id, client_id.
    let mut body = Vec::new();
    body.extend_from_slice(&API_VERSIONS_KEY.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    stream.write_all(&request)?;

    // Response: size, then header v0 (correlation_id) and the body.
    let mut head = [0u8; 8];
    stream.read_exact(&mut head)?;
    let correlation_id = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if correlation_id != CORRELATION_ID {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("ApiVersions answered with correlation id {correlation_id}"),
        ));
    }
    Ok(())
}
