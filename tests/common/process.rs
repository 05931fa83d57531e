//! fanout as a child process: the real binary, for what only a process
//! shows (the environment fallbacks, its log, signals, the exit status,
//! start-up under a `ulimit`) and for what an attack costs the server alone
//! (resident memory and the CPU time of its shard threads, read from
//! `/proc/<pid>`, apart from the test's own threads and clients).
//!
//! Used by `environment`, `log_format`, `kafka_unavailable`,
//! `startup_failure`, `shutdown`, `scale_out` and the `hostile_*` tests;
//! in-process engines are [`super::TestEngine`]. Each test owns its
//! processes. [`FanoutProcess::start`] runs `CARGO_BIN_EXE_fanout` with
//! `--no-pin --listen 127.0.0.1` and the given flags and returns once it
//! printed `fanout listening on ADDR`; [`FanoutProcess::start_embedded`] is
//! the hostile tests' server (embedded broker, one shard, ready).
//!
//! Invariants: a child never inherits the developer's fanout settings (the
//! environment fallbacks of SPEC §8, `FANOUT_INSTANCE_ID`): only a test sets
//! them. Its stderr (the log) goes to `fanout.log` in a temp directory, and
//! panics here quote its tail; its stdout is drained as long as it lives, so
//! it never blocks on a full pipe. Drop kills a child still running and
//! removes the directory.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    Client, PATIENCE, http_get, log_tail, metric_value, metrics_at, public_client_at, unique_temp_dir, wait_metric_at,
    wait_ready_at,
};

/// How long a starting fanout may take to print its address (it starts the
/// embedded broker first, when asked to).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Mebibytes, for assertions and messages about memory.
pub const MIB: u64 = 1024 * 1024;

/// A running `fanout` child process.
pub struct FanoutProcess {
    child: Child,
    /// The address it printed: `fanout listening on ADDR`.
    pub addr: SocketAddr,
    /// With `--kafka-brokers embedded`: the address it printed to produce to.
    pub embedded_bootstrap: Option<String>,
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

/// One reading of a process's `/proc` files.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// Peak resident set size since start or the last
    /// [`FanoutProcess::reset_peak`] (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// User plus system CPU time of the shard threads (those that serve
    /// clients).
    pub cpu: Duration,
}

/// The command line: the binary with `--no-pin --listen 127.0.0.1` and
/// `args`, in a clean environment.
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
    /// Starts `fanout` with `args` (see [`fanout_command`]) and waits for
    /// its address.
    pub fn start(args: &[&str]) -> FanoutProcess {
        Self::start_command(fanout_command(args))
    }

    /// Like [`FanoutProcess::start`], with the variables `env` set (they may
    /// be the fallbacks of SPEC §8).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> FanoutProcess {
        let mut command = fanout_command(args);
        command.envs(env.iter().copied());
        Self::start_command(command)
    }

    /// The server of the `hostile_*` tests: the embedded broker, port 0,
    /// one shard unless `args` say `--shards`, plus `args`; returns once
    /// `/readyz` answers 200. It logs only warnings, so logging costs it
    /// nothing an attack would be blamed for, and it (and the test) may hold
    /// as many open files as the hard limit allows ([`raise_fd_limit`]).
    pub fn start_embedded(args: &[&str]) -> FanoutProcess {
        raise_fd_limit();
        let mut flags = vec!["--kafka-brokers", "embedded", "--port", "0"];
        if !args.contains(&"--shards") {
            flags.extend(["--shards", "1"]);
        }
        flags.extend_from_slice(args);
        let mut command = fanout_command(&flags);
        command.env("RUST_LOG", "warn");
        let server = Self::start_command(command);
        server.wait_ready();
        server
    }

    /// Starts a prepared command (see [`fanout_command`]) and waits for its
    /// address.
    ///
    /// Panics if it exits or prints no address within [`START_TIMEOUT`].
    pub fn start_command(mut command: Command) -> FanoutProcess {
        let dir = unique_temp_dir("fanout");
        let log = File::create(dir.join("fanout.log")).expect("creating fanout.log");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning fanout");
        let lines = read_lines(child.stdout.take().expect("piped stdout"));
        let mut embedded_bootstrap = None;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(bootstrap) = line.strip_prefix("embedded Kafka broker: produce to ") {
                        embedded_bootstrap = Some(bootstrap.trim().to_string());
                    }
                    if let Some(addr) = line.strip_prefix("fanout listening on ") {
                        let addr = addr.trim().parse().expect("fanout prints a socket address");
                        return FanoutProcess {
                            child,
                            addr,
                            embedded_bootstrap,
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
        // SAFETY: plain kill(2) on our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0, "kill");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("waitpid").is_none()
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
                "fanout still running {limit:?} after it was asked to stop\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A plain HTTP GET: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        wait_ready_at(self.addr, || self.log_tail());
    }

    /// The value of one metric (see [`metric_value`]).
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&metrics_at(self.addr), name)
    }

    /// Waits until `metric(name)` satisfies `check`.
    pub fn wait_metric(&self, name: &str, check: impl Fn(f64) -> bool) -> f64 {
        self.wait_metric_within(name, PATIENCE, check)
    }

    /// Waits up to `patience` until `metric(name)` satisfies `check` (see
    /// [`wait_metric_at`]).
    pub fn wait_metric_within(&self, name: &str, patience: Duration, check: impl Fn(f64) -> bool) -> f64 {
        wait_metric_at(self.addr, name, patience, check, || self.log_tail())
    }

    /// A public WebSocket client, past its `connected` message.
    pub fn public_client(&self) -> Client {
        public_client_at(self.addr)
    }

    /// Reads the process's memory, and the CPU time of its shard threads,
    /// now.
    pub fn usage(&self) -> Usage {
        let dir = format!("/proc/{}", self.child.id());
        let status = fs::read_to_string(format!("{dir}/status")).expect("reading /proc/<pid>/status");
        let kib = |field: &str| -> u64 {
            let line = status
                .lines()
                .find(|l| l.starts_with(field))
                .unwrap_or_else(|| panic!("no {field} in /proc status"));
            line[field.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .expect("a number of kB")
        };
        Usage {
            rss_bytes: kib("VmRSS:") * 1024,
            peak_rss_bytes: kib("VmHWM:") * 1024,
            cpu: shard_cpu(&dir),
        }
    }

    /// Resets the peak resident set size to the current one (Linux 4.0+:
    /// `echo 5 > /proc/<pid>/clear_refs`), so `peak_rss_bytes` covers only
    /// what follows.
    pub fn reset_peak(&self) {
        fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("resetting the peak RSS of our own child");
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("fanout.log")).unwrap_or_default()
    }

    /// The last lines of its log, for panic messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.join("fanout.log"))
    }

    /// The fields of the first JSON log line (`--log-format json`) whose
    /// message is `message`.
    pub fn log_event(&self, message: &str) -> Option<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["message"] == message)
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

/// CPU time of the threads named `shard-*` under `/proc/<pid>`: the
/// threads that serve clients. The process's other threads (Kafka, the
/// embedded broker) idle at about 0.1 s a second and would blur the cost of
/// an attack.
fn shard_cpu(dir: &str) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut jiffies = 0;
    for task in fs::read_dir(format!("{dir}/task")).expect("reading /proc/<pid>/task") {
        let Ok(stat) = fs::read_to_string(task.expect("a task entry").path().join("stat")) else {
            continue; // the thread ended
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with("shard-") {
            continue;
        }
        // utime and stime are fields 14 and 15: 11 and 12 after the state.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        jiffies += fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    }
    Duration::from_millis(jiffies * 1000 / ticks)
}

/// Raises this process's soft open-file limit to its hard limit (children
/// inherit it); returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0, "getrlimit");
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
        }
    }
    limit.rlim_cur
}
