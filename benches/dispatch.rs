//! Ingest -> shard hand-off through `shard::inbox`: `InboxSender::send` of an
//! `Arc<Outbound>` to a shard on a glommio `LocalExecutor` that takes them
//! with `AttachedInbox::recv_batch`, as `shard::executor` does.
//!
//! Two measurements, printed as cost per operation:
//! - throughput: one producer sends as fast as it can (the receiver is busy,
//!   so most sends ring no doorbell); rounds of [`EVENTS`] events;
//! - wake-up latency: the receiver is parked on its doorbell; one event is
//!   sent, and the receiver records how long after the send started it had
//!   the event in hand. The producer then waits for an ack and sleeps so the
//!   receiver parks again.
//!
//! The producer runs on the first CPU of the process's affinity mask and the
//! receiver on the last: under `taskset -c 1` both share one core (each
//! hand-off that wakes the other side is a context switch); under
//! `taskset -c 0,1` they are on two cores, as ingest and a shard are in
//! production. `harness = false`, no criterion: the receiver needs its own
//! pinned executor. Without `--bench` (i.e. under `cargo test`) it runs a
//! short smoke version.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout::event::{Dispatch, Field, Outbound};
use fanout::protocol::frame;
use fanout::shard::inbox::{Inbox, Received, inbox};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

/// Events per throughput round.
const EVENTS: usize = 1_000_000;
/// Throughput rounds; the median is reported.
const ROUNDS: usize = 5;
/// Parked wake-ups measured (after [`WARM_UP`] unrecorded ones).
const WAKE_UPS: usize = 5_000;
/// Unrecorded wake-ups first.
const WARM_UP: usize = 200;
/// `--inbox-capacity`'s default.
const CAPACITY: usize = 4096;
/// `shard::executor`'s batch size.
const BATCH: usize = 256;
/// How long the producer waits after an ack so the receiver is parked.
const PARK_GAP: Duration = Duration::from_micros(200);

fn outbound(ingested_at: Instant, admin: &bytes::Bytes, public: &bytes::Bytes) -> Outbound {
    Outbound {
        keys: vec![(Field::Course, "PIANO-101".into())],
        admin_frame: admin.clone(),
        public_frame: Some(public.clone()),
        ingested_at,
    }
}

fn frames() -> (bytes::Bytes, bytes::Bytes) {
    (
        frame::text(br#"{"type":"booking.created","booking":{"course_id":"PIANO-101","slots_remaining":4},"timestamp":"2026-11-23T10:00:00Z"}"#),
        frame::text(br#"{"type":"availability.updated","course_id":"PIANO-101","slots_remaining":4,"timestamp":"2026-11-23T10:00:00Z"}"#),
    )
}

/// Starts the receiver on `core`; `body` gets the attached inbox. Returns
/// once the inbox is attached.
fn receiver<T, F>(
    core: usize,
    inbox: Inbox,
    body: impl FnOnce(fanout::shard::inbox::AttachedInbox) -> F + Send + 'static,
) -> glommio::ExecutorJoinHandle<T>
where
    T: Send + 'static,
    F: Future<Output = T> + 'static,
{
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let handle = LocalExecutorBuilder::new(Placement::Fixed(core))
        .name("bench-shard")
        .io_memory(1 << 20)
        .spawn(move || {
            let inbox = inbox.attach();
            ready_tx.send(()).expect("bench main waits");
            body(inbox)
        })
        .expect("glommio executor starts (needs io_uring and `ulimit -l` >= 1 MiB)");
    ready_rx.recv().expect("receiver attached");
    handle
}

/// One throughput round: (time from first send to last event received,
/// batches the receiver took).
fn throughput_round(events: usize, receiver_core: usize, pool: &[Dispatch]) -> (Duration, usize) {
    let (tx, rx) = inbox(CAPACITY).expect("socketpair");
    let handle = receiver(receiver_core, rx, move |mut inbox| async move {
        let mut batch = Vec::with_capacity(BATCH);
        let (mut received, mut batches) = (0, 0);
        let mut last = None;
        while inbox.recv_batch(&mut batch, BATCH).await == Received::Events {
            received += batch.len();
            batches += 1;
            batch.clear();
            if received == events {
                last = Some(Instant::now());
            }
        }
        (received, batches, last.expect("every event arrived"))
    });
    let start = Instant::now();
    for i in 0..events {
        tx.send(pool[i % pool.len()].clone()).expect("receiver alive");
        tx.wake();
    }
    drop(tx);
    let (received, batches, last) = handle.join().expect("receiver ran");
    assert_eq!(received, events);
    (last - start, batches)
}

/// Parked wake-ups: (send-start -> event in hand, cost of `send` itself), ns.
fn wake_ups(samples: usize, receiver_core: usize) -> (Histogram<u64>, Histogram<u64>) {
    let (admin, public) = frames();
    let (tx, rx) = inbox(CAPACITY).expect("socketpair");
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let handle = receiver(receiver_core, rx, move |mut inbox| async move {
        let mut latency = Histogram::<u64>::new(3).expect("histogram");
        let mut batch = Vec::with_capacity(BATCH);
        let mut seen = 0;
        while inbox.recv_batch(&mut batch, BATCH).await == Received::Events {
            for event in batch.drain(..) {
                let ns = event.ingested_at.elapsed().as_nanos() as u64;
                if seen >= WARM_UP {
                    latency.record(ns.max(1)).expect("in range");
                }
                seen += 1;
            }
            ack_tx.send(()).expect("producer waits");
        }
        latency
    });
    let mut send_cost = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..WARM_UP + samples {
        std::thread::sleep(PARK_GAP);
        let at = Instant::now();
        tx.send(Arc::new(outbound(at, &admin, &public)))
            .expect("receiver alive");
        tx.wake();
        let ns = at.elapsed().as_nanos() as u64;
        if i >= WARM_UP {
            send_cost.record(ns.max(1)).expect("in range");
        }
        ack_rx.recv().expect("receiver acks");
    }
    drop(tx);
    (handle.join().expect("receiver ran"), send_cost)
}

fn print_hist(name: &str, h: &Histogram<u64>) {
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "{name}: n={} p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
        h.len(),
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.9)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max()),
    );
}

fn main() {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let (events, rounds, wake) = if bench {
        (EVENTS, ROUNDS, WAKE_UPS)
    } else {
        (10_000, 1, 50)
    };

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (producer, receiver) = match (cores.first(), cores.last()) {
        (Some(first), Some(last)) => (*first, last.id),
        _ => panic!("no CPU in the affinity mask"),
    };
    assert!(core_affinity::set_for_current(producer), "pin the producer");
    let layout = if producer.id == receiver {
        "same core"
    } else {
        "two cores"
    };
    println!(
        "dispatch: producer on CPU {}, receiver (glommio) on CPU {receiver} ({layout}); inbox capacity {CAPACITY}, batch {BATCH}",
        producer.id
    );

    let (admin, public) = frames();
    let pool: Vec<Dispatch> = (0..2 * CAPACITY)
        .map(|_| Arc::new(outbound(Instant::now(), &admin, &public)))
        .collect();
    let mut per_op = Vec::new();
    for round in 0..rounds {
        let (took, batches) = throughput_round(events, receiver, &pool);
        let ns = took.as_nanos() as f64 / events as f64;
        println!(
            "dispatch/throughput round {round}: {events} events in {:.1} ms = {ns:.1} ns/event ({:.2} M events/s), mean batch {:.1}",
            took.as_secs_f64() * 1e3,
            1e3 / ns,
            events as f64 / batches as f64
        );
        per_op.push(ns);
    }
    per_op.sort_by(f64::total_cmp);
    let median = per_op[per_op.len() / 2];
    println!(
        "dispatch/throughput: median {median:.1} ns/event = {:.2} M events/s per shard inbox",
        1e3 / median
    );

    let (latency, send_cost) = wake_ups(wake, receiver);
    print_hist("dispatch/wake_parked (send start -> event in hand)", &latency);
    print_hist(
        "dispatch/send_to_parked (InboxSender::send, rings the doorbell)",
        &send_cost,
    );
}
