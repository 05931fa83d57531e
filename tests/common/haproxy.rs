//! A real HAProxy in front of fanout instances, running `deploy/haproxy.cfg`.
//!
//! Owned by one test: [`Haproxy::start`] runs `haproxy -db` (foreground) on
//! the deployment's own config, with the addresses, a short health-check
//! interval and a stats socket in a temp directory given through the
//! environment variables the config reads (see its header), and returns
//! once the frontend accepts connections. Server states are read from the
//! stats socket (`show stat`). The binary comes from `$FANOUT_HAPROXY`, else
//! `haproxy` on PATH, else `/usr/sbin/haproxy` (what `scripts/deps-up.sh`
//! installs). Output goes to `haproxy.log` in the temp directory; panics
//! quote its tail. Drop kills the process and removes the directory.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, log_tail, unique_temp_dir};

/// How long haproxy may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports to try when another process takes the probed port first.
const START_ATTEMPTS: usize = 5;
/// Health-check interval in the tests (the deployment default is 2 s).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// An `haproxy` child process balancing over fanout instances.
pub struct Haproxy {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Haproxy {
    /// Starts haproxy on a free loopback port in front of `instances`
    /// (`fanout1`, `fanout2` in the config).
    ///
    /// Panics if the binary is missing or haproxy does not come up.
    pub fn start(instances: [SocketAddr; 2]) -> Haproxy {
        let binary = haproxy_binary();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = unique_temp_dir("haproxy");
            let port = free_port();
            let log = File::create(dir.join("haproxy.log")).expect("creating haproxy.log");
            let child = Command::new(&binary)
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .env("FANOUT_LB_BIND", format!("127.0.0.1:{port}"))
                .env("FANOUT_INSTANCE_1", instances[0].to_string())
                .env("FANOUT_INSTANCE_2", instances[1].to_string())
                .env("FANOUT_LB_CHECK_INTER", format!("{}ms", CHECK_INTERVAL.as_millis()))
                .env("FANOUT_LB_MAXCONN", "1000")
                .env("FANOUT_LB_STATS_SOCKET", dir.join("admin.sock"))
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|err| panic!("spawning {}: {err}", binary.display()));
            let mut haproxy = Haproxy {
                port,
                dir,
                child: Some(child),
            };
            match haproxy.wait_accepting() {
                Ok(()) => return haproxy,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("haproxy did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    /// The balancer's address: clients connect here.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The state haproxy reports for `server` (`UP`, `DOWN`, `UP 1/2`, ...).
    pub fn server_status(&self, server: &str) -> String {
        let stats = self.command("show stat");
        let mut lines = stats.lines();
        let header = lines.next().unwrap_or_default().trim_start_matches("# ");
        let column = |name: &str| header.split(',').position(|c| c == name);
        let (Some(proxy), Some(name), Some(status)) = (column("pxname"), column("svname"), column("status")) else {
            panic!("unexpected stats header: {header}\n{}", self.log_tail());
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|fields| fields.get(proxy) == Some(&"fanout") && fields.get(name) == Some(&server))
            .and_then(|fields| fields.get(status).map(|s| s.to_string()))
            .unwrap_or_else(|| panic!("no server {server} in the stats\n{stats}"))
    }

    /// Waits until haproxy reports `server` exactly `want` (`UP`, `DOWN`).
    pub fn wait_status(&self, server: &str, want: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.server_status(server);
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy reports {server} {status:?}, expected {want:?} within {limit:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of haproxy's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.join("haproxy.log"))
    }

    /// Sends one command to the stats socket and returns the answer.
    fn command(&self, command: &str) -> String {
        let mut socket = UnixStream::connect(self.dir.join("admin.sock"))
            .unwrap_or_else(|err| panic!("haproxy stats socket: {err}\n{}", self.log_tail()));
        socket.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        socket.write_all(format!("{command}\n").as_bytes()).expect("write");
        let mut answer = String::new();
        socket.read_to_string(&mut answer).expect("read");
        answer
    }

    /// Waits until the frontend accepts and the stats socket answers.
    /// `Err` if haproxy exited (probably a lost port); panics on a hang.
    fn wait_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if TcpStream::connect(self.addr()).is_ok() && self.dir.join("admin.sock").exists() {
                return Ok(());
            }
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("haproxy exited with {status}\n{}", self.log_tail()));
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not accept within {STARTUP_TIMEOUT:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Where haproxy is: `$FANOUT_HAPROXY`, else on PATH, else `/usr/sbin`.
/// Panics with the fix if it is nowhere.
fn haproxy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FANOUT_HAPROXY") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file());
    let path = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"));
    if !path.is_file() {
        panic!("haproxy not found on PATH or at /usr/sbin/haproxy (set FANOUT_HAPROXY or run scripts/deps-up.sh)");
    }
    path
}
