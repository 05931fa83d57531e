//! What one loopback `sendmsg` of a small WebSocket frame costs on this
//! machine: the floor under every per-delivery write a server makes.
//!
//! A listener on 127.0.0.1 accepts `--sockets` connections; the writer thread
//! (pinned to `--writer-cpu`, the server's core) owns the accepted ends, as a
//! server does, with TCP_NODELAY, and calls `sendmsg` round-robin over them,
//! each call carrying `--batch` frames of `--bytes` bytes in one iovec list.
//! A reader thread (pinned to `--reader-cpu`) drains the client ends through
//! epoll, so no send ever waits for buffer space for long. Reported per call
//! and per frame: the writer thread's CPU time (user and kernel, from
//! `getrusage(RUSAGE_THREAD)`) and wall time.
//!
//! Without `--sockets`/`--batch` it runs three cases: one socket, one frame
//! per call; 1000 sockets, one frame per call; 1000 sockets, 16 frames per
//! call (what coalescing buys per frame). Its last line,
//! `sendmsg_cpu_ns_per_call=N`, is the first case, for scripts.
//!
//! ```text
//! cargo run --release -p loadtest --example sendmsg_cost
//! cargo run --release -p loadtest --example sendmsg_cost -- --sockets 10000 --batch 4
//! ```
//!
//! Linux only; loopback only.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// One measured configuration.
#[derive(Clone, Copy)]
struct Case {
    /// Connections written round-robin.
    sockets: usize,
    /// Frames per `sendmsg`.
    batch: usize,
}

/// Command-line settings.
struct Settings {
    cases: Vec<Case>,
    calls: u64,
    frame_bytes: usize,
    writer_cpu: usize,
    reader_cpu: usize,
}

fn parse_args() -> anyhow::Result<Settings> {
    let mut sockets = None;
    let mut batch = None;
    let mut settings = Settings {
        cases: Vec::new(),
        calls: 200_000,
        frame_bytes: 120,
        writer_cpu: 1,
        reader_cpu: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sockets" => sockets = Some(value()?.parse().context("--sockets")?),
            "--batch" => batch = Some(value()?.parse().context("--batch")?),
            "--calls" => settings.calls = value()?.parse().context("--calls")?,
            "--bytes" => settings.frame_bytes = value()?.parse().context("--bytes")?,
            "--writer-cpu" => settings.writer_cpu = value()?.parse().context("--writer-cpu")?,
            "--reader-cpu" => settings.reader_cpu = value()?.parse().context("--reader-cpu")?,
            "-h" | "--help" => {
                println!(
                    "usage: sendmsg_cost [--sockets N] [--batch FRAMES] [--calls 200000] [--bytes 120] \
                     [--writer-cpu 1] [--reader-cpu 0]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    settings.cases = match (sockets, batch) {
        (None, None) => vec![
            Case { sockets: 1, batch: 1 },
            Case {
                sockets: 1000,
                batch: 1,
            },
            Case {
                sockets: 1000,
                batch: 16,
            },
        ],
        (s, b) => vec![Case {
            sockets: s.unwrap_or(1),
            batch: b.unwrap_or(1),
        }],
    };
    ensure!(settings.calls > 0, "--calls must be at least 1");
    ensure!(
        (2..=125).contains(&settings.frame_bytes),
        "--bytes must be 2..=125 (one small unmasked text frame)"
    );
    for c in &settings.cases {
        ensure!(c.sockets > 0 && c.batch > 0, "--sockets and --batch must be at least 1");
        ensure!(c.batch <= 1024, "--batch must be at most 1024 (IOV_MAX)");
    }
    Ok(settings)
}

/// Pins the calling thread to one CPU.
fn pin(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// This thread's (user, system) CPU time.
fn thread_cpu() -> (Duration, Duration) {
    // SAFETY: a zeroed rusage is valid output space for getrusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid rusage to write into.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Drains every client end until `stop`; epoll so one thread serves them all.
fn drain(clients: Vec<TcpStream>, stop: Arc<AtomicBool>, cpu: usize) -> anyhow::Result<u64> {
    pin(cpu)?;
    // SAFETY: epoll_create1 has no preconditions.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    ensure!(epfd >= 0, "epoll_create1: {}", std::io::Error::last_os_error());
    for (i, c) in clients.iter().enumerate() {
        c.set_nonblocking(true)?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: epfd and the socket are open descriptors; ev is valid.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, c.as_raw_fd(), &mut ev) } != 0 {
            bail!("epoll_ctl: {}", std::io::Error::last_os_error());
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: events has room for its length in entries.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, 50) };
        for ev in events.iter().take(n.max(0) as usize) {
            let mut c = &clients[ev.u64 as usize];
            loop {
                match c.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => total += k as u64,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("reading a client end"),
                }
            }
        }
    }
    // SAFETY: epfd is ours and closed once.
    unsafe { libc::close(epfd) };
    Ok(total)
}

/// What one case measured.
struct Measured {
    user: Duration,
    sys: Duration,
    wall: Duration,
}

fn measure(case: Case, s: &Settings) -> anyhow::Result<Measured> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::with_capacity(case.sockets);
    let mut servers = Vec::with_capacity(case.sockets);
    for _ in 0..case.sockets {
        clients.push(TcpStream::connect(addr).context("connecting on loopback")?);
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        servers.push(server);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, cpu) = (stop.clone(), s.reader_cpu);
        thread::spawn(move || drain(clients, stop, cpu))
    };

    let fds: Vec<i32> = servers.iter().map(|c| c.as_raw_fd()).collect();
    let (writer_cpu, calls, frame_bytes) = (s.writer_cpu, s.calls, s.frame_bytes);
    let result = thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<Measured> {
                pin(writer_cpu)?;
                // An unmasked text frame (RFC 6455 5.2): FIN + opcode 1,
                // 7-bit length; the iovecs point at it (built here: raw
                // pointers stay on this thread).
                let mut frame = vec![b'x'; frame_bytes];
                frame[0] = 0x81;
                frame[1] = (frame_bytes - 2) as u8;
                let iov: Vec<libc::iovec> = (0..case.batch)
                    .map(|_| libc::iovec {
                        iov_base: frame.as_ptr() as *mut libc::c_void,
                        iov_len: frame.len(),
                    })
                    .collect();
                let call_bytes = frame_bytes * case.batch;
                // Warm up: every socket's first write, page faults, caches.
                for &fd in &fds {
                    send_all(fd, &iov, call_bytes)?;
                }
                let (u0, s0) = thread_cpu();
                let t0 = Instant::now();
                for i in 0..calls {
                    send_all(fds[(i % fds.len() as u64) as usize], &iov, call_bytes)?;
                }
                let wall = t0.elapsed();
                let (u1, s1) = thread_cpu();
                Ok(Measured {
                    user: u1 - u0,
                    sys: s1 - s0,
                    wall,
                })
            })
            .join()
            .expect("writer thread panicked")
    });
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader thread panicked")?;
    result
}

/// One `sendmsg` of the whole iovec list; a short write (full send buffer)
/// is finished with further calls, which then count as part of this one.
fn send_all(fd: i32, iov: &[libc::iovec], bytes: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed msghdr is valid; we set the iovec list it reads.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len();
    // SAFETY: fd is an open socket; msg points at live iovecs.
    let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        bail!("sendmsg: {}", std::io::Error::last_os_error());
    }
    let mut sent = sent as usize;
    while sent < bytes {
        // Rare: flatten the rest and write it out.
        let rest: Vec<u8> = iov
            .iter()
            // SAFETY: each iovec points at a live frame of iov_len bytes.
            .flat_map(|v| unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) })
            .copied()
            .skip(sent)
            .collect();
        // SAFETY: fd is an open socket; rest is a live buffer.
        let n = unsafe { libc::send(fd, rest.as_ptr() as *const libc::c_void, rest.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            bail!("send: {}", std::io::Error::last_os_error());
        }
        sent += n as usize;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let s = parse_args()?;
    println!(
        "sendmsg_cost: {} calls per case, {}-byte frames, writer on CPU {}, reader on CPU {}",
        s.calls, s.frame_bytes, s.writer_cpu, s.reader_cpu
    );
    let mut first_ns = None;
    for case in s.cases.clone() {
        let m = measure(case, &s)?;
        let cpu = m.user + m.sys;
        let per_call = cpu.as_nanos() as f64 / s.calls as f64;
        let frames = (s.calls * case.batch as u64) as f64;
        println!(
            "  {:>5} socket(s), {:>3} frame(s)/call: {:>7.0} ns CPU per call ({:.0}% kernel), \
             {:>6.0} ns CPU per frame, {:>7.0} ns wall per call",
            case.sockets,
            case.batch,
            per_call,
            100.0 * m.sys.as_secs_f64() / cpu.as_secs_f64().max(1e-12),
            cpu.as_nanos() as f64 / frames,
            m.wall.as_nanos() as f64 / s.calls as f64,
        );
        first_ns.get_or_insert(per_call);
    }
    println!("sendmsg_cpu_ns_per_call={:.0}", first_ns.expect("at least one case"));
    Ok(())
}
