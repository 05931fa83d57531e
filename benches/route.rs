//! Decode + route: `Decoder::decode` of a SPEC §5 envelope, then
//! `SubscriptionIndex::subscribers` for every routing key it carries, against
//! an index of 10^5 keys. The goal is decode + route >= 1 M events/s
//! on one core; the bench prints whether the median meets it.
//!
//! `cargo bench --bench route` (pin it: `taskset -c 1`); one element is one
//! event.

mod common;

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use fanout::clock::Stamp;
use fanout::event::Field;
use fanout::ingest::decode::Decoder;
use fanout::shard::ConnId;
use fanout::shard::index::SubscriptionIndex;

use common::{Rng, Size};

/// The target for decode + route on one core.
const GOAL_EVENTS_PER_SEC: f64 = 1_000_000.0;
/// Keys per field in the index: 10^5 in all.
const KEYS: [(Field, char, usize); 3] = [
    (Field::Course, 'C', 50_000),
    (Field::Room, 'R', 30_000),
    (Field::Session, 'S', 20_000),
];
/// Distinct envelopes cycled through, so lookups are spread over the index.
const PAYLOADS: usize = 4096;

/// Index of 10^5 keys with 1 to 3 subscribers each, plus two scope-all admins.
fn index() -> SubscriptionIndex {
    let mut index = SubscriptionIndex::default();
    let mut conn = 0u32;
    for (field, prefix, count) in KEYS {
        for i in 0..count {
            for _ in 0..=(i % 3) {
                index.subscribe(field, &common::key(prefix, i), ConnId(conn % 50_000));
                conn += 1;
            }
        }
    }
    index.add_scope_all(ConnId(50_000));
    index.add_scope_all(ConnId(50_001));
    index
}

fn payloads(size: Size) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(7);
    (0..PAYLOADS)
        .map(|_| {
            let [course, room, session] = KEYS.map(|(_, prefix, count)| common::key(prefix, rng.below(count)));
            common::booking(size, &course, &room, &session)
        })
        .collect()
}

/// Per-event times of criterion's measured samples (warm-up samples come
/// first and are dropped by taking the last `sample_size`).
type Samples = Rc<RefCell<Vec<(u64, Duration)>>>;

fn route(c: &mut Criterion) -> Vec<(String, Samples)> {
    let index = index();
    assert_eq!(index.key_count(), 100_000);
    let mut results = Vec::new();
    let mut group = c.benchmark_group("decode_route");
    group.throughput(Throughput::Elements(1));
    for size in [Size::Small, Size::Large] {
        let payloads = payloads(size);
        let mut decoder = Decoder::default();
        let now = Stamp::now();
        let samples: Samples = Rc::default();
        let recorded = samples.clone();
        let id = format!("{}B", payloads[0].len());
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut next = 0;
                for _ in 0..iters {
                    let out = decoder
                        .decode("booking.created", Some(black_box(&payloads[next])), &now)
                        .expect("valid envelope");
                    let mut recipients = index.scope_all().len();
                    for (field, value) in &out.keys {
                        recipients += index.subscribers(*field, value).len();
                    }
                    black_box((recipients, out));
                    next = (next + 1) % PAYLOADS;
                }
                let took = start.elapsed();
                recorded.borrow_mut().push((iters, took));
                took
            })
        });
        results.push((id, samples));
    }
    group.finish();
    results
}

fn main() {
    let mut c = common::criterion();
    let results = route(&mut c);
    c.final_summary();
    if !std::env::args().any(|arg| arg == "--bench") {
        return; // `cargo test`: one unoptimised iteration says nothing
    }
    for (id, samples) in results {
        let samples = samples.borrow();
        if samples.is_empty() {
            continue; // filtered out on the command line
        }
        let measured = &samples[samples.len().saturating_sub(common::SAMPLE_SIZE)..];
        let mut per_event: Vec<f64> = measured
            .iter()
            .map(|(iters, took)| took.as_secs_f64() / *iters as f64)
            .collect();
        per_event.sort_by(f64::total_cmp);
        let median = per_event[per_event.len() / 2];
        let rate = 1.0 / median;
        println!(
            "decode_route/{id}: median {:.0} ns/event = {:.2} M events/s on one core; goal >= 1 M events/s: {}",
            median * 1e9,
            rate / 1e6,
            if rate >= GOAL_EVENTS_PER_SEC { "MET" } else { "NOT MET" }
        );
    }
}
