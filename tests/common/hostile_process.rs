//! A fanout process of the test's own, for the `hostile_*` tests: what an
//! attack costs the server alone is read from `/proc/<pid>` (resident memory,
//! its peak, the CPU time of its shard threads), apart from the test's own
//! threads and clients.
//!
//! [`EngineProcess`] runs the binary `cargo test` built (`fanout`, with the
//! embedded broker) on a free loopback port and kills it on drop; [`Usage`]
//! is one reading of its `/proc` files. [`raise_fd_limit`] lets a test (and
//! the server it starts) hold as many sockets as the hard limit allows.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Client, PATIENCE, http_request, metric_value};

/// A running `fanout` process; killed when dropped.
pub struct EngineProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// One reading of a process's `/proc` files.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// Peak resident set size since start or the last
    /// [`EngineProcess::reset_peak`] (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// User plus system CPU time of the shard threads (those that serve
    /// clients).
    pub cpu: Duration,
}

/// Mebibytes, for assertions and messages.
pub const MIB: u64 = 1024 * 1024;

impl EngineProcess {
    /// Starts `fanout` with one unpinned shard and the embedded broker, plus
    /// `args`; returns once `/readyz` answers 200.
    pub fn start(args: &[&str]) -> EngineProcess {
        raise_fd_limit();
        let mut command = Command::new(env!("CARGO_BIN_EXE_fanout"));
        command.args([
            "--kafka-brokers",
            "embedded",
            "--no-pin",
            "--listen",
            "127.0.0.1",
            "--port",
            "0",
        ]);
        if !args.contains(&"--shards") {
            command.args(["--shards", "1"]);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fanout binary");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut lines = stdout.lines().map_while(Result::ok);
        let addr = lines
            .find_map(|line| line.strip_prefix("fanout listening on ").map(str::to_string))
            .expect("fanout prints its address")
            .parse()
            .expect("a socket address");
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let server = EngineProcess { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.http_get("/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "fanout never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Reads the process's memory, and the CPU time of its shard threads,
    /// now.
    pub fn usage(&self) -> Usage {
        let dir = format!("/proc/{}", self.child.id());
        let status = std::fs::read_to_string(format!("{dir}/status")).expect("reading /proc/<pid>/status");
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
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("resetting the peak RSS of our own child");
    }

    /// A plain HTTP GET: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_request(self.addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
    }

    /// The value of one metric (summed over label sets for a bare name).
    pub fn metric(&self, name: &str) -> f64 {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "/metrics answers");
        metric_value(&body, name)
    }

    /// Waits up to `patience` until `metric(name)` satisfies `check`.
    pub fn wait_metric(&self, name: &str, patience: Duration, check: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + patience;
        loop {
            let value = self.metric(name);
            if check(value) {
                return value;
            }
            assert!(Instant::now() < deadline, "metric {name} stuck at {value}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A public WebSocket client, past its `connected` message.
    pub fn public_client(&self) -> Client {
        let stream = std::net::TcpStream::connect(self.addr).expect("tcp connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let url = format!("ws://{}/ws/availability", self.addr);
        let (ws, _) = tungstenite::client(url, stream).expect("upgrade succeeds");
        let mut client = Client { ws };
        let hello = client.recv_json();
        assert_eq!(hello["type"], "connected", "{hello}");
        client
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("waitpid").is_none()
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time of the threads named `shard-*` under `/proc/<pid>`: the
/// threads that serve clients. The process's other threads (Kafka, the
/// embedded broker) idle at about 0.1 s a second and would blur the cost of
/// an attack.
fn shard_cpu(dir: &str) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut jiffies = 0;
    for task in std::fs::read_dir(format!("{dir}/task")).expect("reading /proc/<pid>/task") {
        let Ok(stat) = std::fs::read_to_string(task.expect("a task entry").path().join("stat")) else {
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
