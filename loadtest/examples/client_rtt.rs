//! How long a client message takes to be answered: the round trip of a
//! `subscribe` / `unsubscribe` pair (or `ping`) over one WebSocket, at a
//! time, on loopback: what the server's read path costs one client message.
//!
//! `--clients` connections (one thread each, pinned to `--cpu` when given)
//! each send a message, wait for its reply, and repeat `--iters` times;
//! messages alternate `subscribe` and `unsubscribe` of one course (each
//! changes the index), or are all `ping` with `--ping`. Reports the round
//! trip's p50 / p99 / p99.9 over all clients, and the replies per second.
//! With `--idle N`, N more connections stay open and silent meanwhile (the
//! server's bookkeeping of idle sockets must not slow the busy ones).
//!
//! ```text
//! cargo run --release -p loadtest --example client_rtt -- --server 127.0.0.1:8080
//! ```

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tungstenite::{Message, WebSocket};

struct Args {
    server: String,
    clients: usize,
    iters: usize,
    warmup: usize,
    idle: usize,
    ping: bool,
    cpu: Option<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        server: "127.0.0.1:8080".into(),
        clients: 1,
        iters: 20_000,
        warmup: 1_000,
        idle: 0,
        ping: false,
        cpu: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => args.server = value()?,
            "--clients" => args.clients = value()?.parse()?,
            "--iters" => args.iters = value()?.parse()?,
            "--warmup" => args.warmup = value()?.parse()?,
            "--idle" => args.idle = value()?.parse()?,
            "--cpu" => args.cpu = Some(value()?.parse()?),
            "--ping" => args.ping = true,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn connect(server: &str) -> anyhow::Result<WebSocket<TcpStream>> {
    let stream = TcpStream::connect(server).with_context(|| format!("connect {server}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{server}/ws/availability");
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).map_err(|e| anyhow::anyhow!("handshake: {e}"))?;
    let hello = ws.read()?;
    anyhow::ensure!(
        hello.to_text()?.contains("connected"),
        "expected connected, got {hello:?}"
    );
    Ok(ws)
}

fn pin(cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: the set is a plain bit mask on the stack, passed by pointer
    // with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn client(args: &Args, n: usize) -> anyhow::Result<Histogram<u64>> {
    pin(args.cpu);
    let mut ws = connect(&args.server)?;
    let course = format!("RTT{n}");
    let subscribe = format!(r#"{{"type":"subscribe","filters":{{"course_id":"{course}"}}}}"#);
    let unsubscribe = format!(r#"{{"type":"unsubscribe","topic":"course_id:{course}"}}"#);
    let ping = r#"{"type":"ping"}"#.to_string();
    let mut hist = Histogram::<u64>::new(3)?;
    for i in 0..args.warmup + args.iters {
        let message = match (args.ping, i % 2) {
            (true, _) => &ping,
            (false, 0) => &subscribe,
            (false, _) => &unsubscribe,
        };
        let started = Instant::now();
        ws.send(Message::text(message.as_str()))?;
        loop {
            match ws.read()? {
                Message::Text(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
                other => bail!("unexpected {other:?}"),
            }
        }
        if i >= args.warmup {
            hist.record(started.elapsed().as_nanos() as u64)?;
        }
    }
    Ok(hist)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    pin(args.cpu);
    let idle: Vec<_> = (0..args.idle)
        .map(|_| connect(&args.server))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let hist = std::thread::scope(|scope| {
        let args = &args;
        let handles: Vec<_> = (0..args.clients)
            .map(|n| scope.spawn(move || client(args, n)))
            .collect();
        let mut total = Histogram::<u64>::new(3)?;
        for handle in handles {
            total.add(handle.join().expect("client thread")?)?;
        }
        anyhow::Ok(total)
    })?;
    let elapsed = started.elapsed();
    let us = |q: f64| Duration::from_nanos(hist.value_at_quantile(q)).as_secs_f64() * 1e6;
    println!(
        "clients={} idle={} replies={} replies_per_s={:.0} rtt_us p50={:.1} p99={:.1} p99.9={:.1}",
        args.clients,
        idle.len(),
        hist.len(),
        (args.clients * (args.warmup + args.iters)) as f64 / elapsed.as_secs_f64(),
        us(0.5),
        us(0.99),
        us(0.999)
    );
    Ok(())
}
