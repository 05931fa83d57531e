//! The real `fanout` binary as a child process, for what only the process
//! shows: environment fallbacks, log lines, signals and the exit status.
//!
//! [`FanoutProcess::start`] runs `target/.../fanout` with the given flags and
//! environment and returns once it printed the address it listens on. The
//! environment fallbacks of SPEC §8 are removed from what the child inherits,
//! so only the test sets them. stderr (the log) goes to a file in a temp
//! directory. Drop kills the process and removes the directory.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{http_request, metric_value, unique_temp_dir, wait_metric_at};

/// How long the binary may take to print its address (it starts the
/// embedded broker first).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variables fanout reads as flag defaults (SPEC §8).
pub const FALLBACK_ENV: [&str; 4] = ["KAFKA_BROKERS", "KAFKA_GROUP_ID", "WS_PORT", "REDIS_URL"];

/// A running `fanout` process.
pub struct FanoutProcess {
    child: Child,
    /// The address it printed: `fanout listening on ADDR`.
    pub addr: SocketAddr,
    /// With `--kafka-brokers embedded`: the address it printed to produce to.
    pub embedded_bootstrap: Option<String>,
    dir: PathBuf,
    /// Lines of its stdout; kept so the child never writes to a closed pipe.
    stdout: mpsc::Receiver<String>,
}

impl FanoutProcess {
    /// Starts the binary with `args` and the environment `env`; returns once
    /// it printed its address. Panics if it exits or stays silent instead.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> FanoutProcess {
        let dir = unique_temp_dir("fanout-bin");
        let stderr = fs::File::create(dir.join("stderr.log")).expect("create the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_fanout"));
        command.args(args).current_dir(&dir);
        for name in FALLBACK_ENV {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the fanout binary");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let (lines, stdout_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let mut process = FanoutProcess {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            embedded_bootstrap: None,
            dir,
            stdout: stdout_lines,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match process.stdout.recv_timeout(left) {
                Ok(line) => line,
                Err(err) => panic!("fanout printed no address ({err}); its log:\n{}", process.log()),
            };
            if let Some(bootstrap) = line.strip_prefix("embedded Kafka broker: produce to ") {
                process.embedded_bootstrap = Some(bootstrap.to_string());
            }
            if let Some(addr) = line.strip_prefix("fanout listening on ") {
                process.addr = addr.parse().expect("fanout prints a socket address");
                return process;
            }
        }
    }

    /// Waits until `/readyz` on `addr` answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_request(self.addr, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n").0 != 200 {
            assert!(Instant::now() < deadline, "never ready; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of metric `name` (summed over its label sets, see
    /// [`metric_value`]).
    pub fn metric(&self, name: &str) -> f64 {
        let (status, body) = http_request(self.addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(status, 200, "GET /metrics");
        metric_value(&body, name)
    }

    /// Waits until `metric(name)` satisfies `check`.
    pub fn wait_metric(&self, name: &str, check: impl Fn(f64) -> bool) -> f64 {
        wait_metric_at(self.addr, name, check, || format!("log:\n{}", self.log()))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: plain kill(2) on our own child, which has not been reaped.
        let sent = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill(SIGTERM)");
    }

    /// Waits for the process to exit; panics if it still runs after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for fanout") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "fanout still running {limit:?} after it was asked to stop; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What it wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for FanoutProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
