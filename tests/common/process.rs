//! fanout as a child process: the real binary, its exit code and its log.
//!
//! Owned by one test: [`FanoutProcess::start`] runs `CARGO_BIN_EXE_fanout`
//! with the given flags (plus `--no-pin --listen 127.0.0.1`), waits for the
//! `fanout listening on ADDR` line and keeps stderr in `fanout.log` in a temp
//! directory; panics here quote its tail. Signals go to the child with
//! kill(2). Drop kills a child still running and removes the directory.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;

use super::{Client, PATIENCE, http_request, log_tail, metric_value, unique_temp_dir};

/// How long a starting fanout may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `fanout` child process.
pub struct FanoutProcess {
    child: Child,
    /// The address it printed.
    pub addr: SocketAddr,
    dir: PathBuf,
    /// Kept open: the child's later stdout lines go nowhere, never SIGPIPE.
    _stdout: mpsc::Receiver<String>,
}

/// How a child that was expected to fail to start ended.
pub struct Failed {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed to stdout.
    pub stdout: String,
    /// Everything it printed to stderr.
    pub stderr: String,
}

/// The command line: the binary with the test defaults and `args`.
pub fn fanout_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fanout"));
    command.args(["--no-pin", "--listen", "127.0.0.1"]).args(args);
    clean_env(command)
}

/// Like [`fanout_command`], started by `sh` after `limits` (e.g.
/// `ulimit -l 64`).
pub fn fanout_command_under(limits: &str, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{limits} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_fanout"))
        .args(["--no-pin", "--listen", "127.0.0.1"])
        .args(args);
    clean_env(command)
}

/// No colours, and none of the developer's fanout settings.
fn clean_env(mut command: Command) -> Command {
    command
        .env("NO_COLOR", "1")
        .env_remove("FANOUT_INSTANCE_ID")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKA_GROUP_ID")
        .env_remove("WS_PORT")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null());
    command
}

impl FanoutProcess {
    /// Starts `fanout` with `args` and waits for its address.
    ///
    /// Panics if it exits or prints no address within [`START_TIMEOUT`].
    pub fn start(args: &[&str]) -> FanoutProcess {
        Self::start_command(fanout_command(args))
    }

    /// Starts a prepared command (see [`fanout_command`]) and waits for its
    /// address.
    pub fn start_command(mut command: Command) -> FanoutProcess {
        let dir = unique_temp_dir("fanout");
        let log = File::create(dir.join("fanout.log")).expect("creating fanout.log");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning fanout");
        let lines = read_lines(child.stdout.take().expect("piped stdout"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("fanout listening on ") {
                        let addr = addr.trim().parse().expect("fanout prints a socket address");
                        return FanoutProcess {
                            child,
                            addr,
                            dir,
                            _stdout: lines,
                        };
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait");
                    panic!(
                        "fanout exited with {status} before serving\n{}",
                        log_tail(&dir.join("fanout.log"))
                    );
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "fanout printed no address within {START_TIMEOUT:?}\n{}",
                    log_tail(&dir.join("fanout.log"))
                );
            }
        }
    }

    /// Runs a command that must fail to start; returns how it ended.
    ///
    /// Panics if it is still running after [`START_TIMEOUT`].
    pub fn run_to_failure(mut command: Command) -> Failed {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning fanout");
        let deadline = Instant::now() + START_TIMEOUT;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fanout still running after {START_TIMEOUT:?}, expected it to fail");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("output");
        Failed {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0, "kill");
    }

    /// Waits for the child to exit, at most `limit`.
    ///
    /// Panics if it is still running then.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "fanout still running after {limit:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A plain HTTP GET: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_request(self.addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.http_get("/readyz");
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fanout never became ready: {status} {body}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of one metric (see [`metric_value`]).
    pub fn metric(&self, name: &str) -> f64 {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "/metrics");
        metric_value(&body, name)
    }

    /// Waits until `metric(name)` satisfies `check`.
    pub fn wait_metric(&self, name: &str, check: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.metric(name);
            if check(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "metric {name} stuck at {value}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("fanout.log")).unwrap_or_default()
    }

    /// The last lines of its log, for panic messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.join("fanout.log"))
    }
}

impl Drop for FanoutProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The child's stdout, line by line, from a reader thread.
fn read_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A public client on `/ws/availability` at `addr` (an instance or a
/// balancer), past its `connected` message.
pub fn public_client(addr: SocketAddr) -> Client {
    let request = format!("ws://{addr}/ws/availability")
        .into_client_request()
        .expect("valid url");
    let stream = std::net::TcpStream::connect(addr).expect("tcp connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let (ws, _) = tungstenite::client(request, stream).expect("upgrade succeeds");
    let mut client = Client { ws };
    let hello = client.recv_json();
    assert_eq!(hello["type"], "connected", "{hello}");
    client
}

/// The fields of the first JSON log line (`--log-format json`) whose
/// message is `message`.
pub fn log_event(log: &str, message: &str) -> Option<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["message"] == message)
}
