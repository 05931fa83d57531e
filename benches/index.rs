//! `SubscriptionIndex`: lookup (hit and miss) at 10^3 and 10^5 keys, and
//! subscribe/unsubscribe churn at 10^5 keys.
//!
//! `cargo bench --bench index`; one element is one lookup, or one
//! subscribe or unsubscribe.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use fanout::event::Field;
use fanout::shard::ConnId;
use fanout::shard::index::SubscriptionIndex;

use common::Rng;

/// Distinct queries cycled through (random order over the whole index).
const QUERIES: usize = 4096;

fn prefix(field: Field) -> char {
    match field {
        Field::Course => 'C',
        Field::Room => 'R',
        Field::Session => 'S',
    }
}

/// `n` keys spread over the three fields, each with two subscribers.
fn index(n: usize) -> (SubscriptionIndex, Vec<(Field, String)>) {
    let mut index = SubscriptionIndex::default();
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let field = Field::ALL[i % 3];
        let key = common::key(prefix(field), i);
        index.subscribe(field, &key, ConnId(2 * i as u32));
        index.subscribe(field, &key, ConnId(2 * i as u32 + 1));
        keys.push((field, key));
    }
    assert_eq!(index.key_count(), n);
    (index, keys)
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_lookup");
    group.throughput(Throughput::Elements(1));
    for n in [1_000, 100_000] {
        let (index, keys) = index(n);
        let mut rng = Rng::new(11);
        let hits: Vec<(Field, String)> = (0..QUERIES).map(|_| keys[rng.below(n)].clone()).collect();
        // Same shape, absent values: an event for a key nobody watches.
        let misses: Vec<(Field, String)> = (0..QUERIES)
            .map(|i| (Field::ALL[i % 3], common::key('X', rng.below(n))))
            .collect();
        for (name, queries) in [("hit", &hits), ("miss", &misses)] {
            group.bench_with_input(BenchmarkId::new(name, n), queries, |b, queries| {
                let mut next = 0;
                b.iter(|| {
                    let (field, value) = &queries[next];
                    next = (next + 1) % QUERIES;
                    index.subscribers(*field, black_box(value)).len()
                })
            });
        }
    }
    group.finish();
}

fn churn(c: &mut Criterion) {
    let n = 100_000;
    let (mut index, keys) = index(n);
    let mut rng = Rng::new(13);
    let mut group = c.benchmark_group("index_churn");
    // One iteration is a subscribe and an unsubscribe: two operations.
    group.throughput(Throughput::Elements(2));

    // A key nobody has: subscribe inserts it (allocates), unsubscribe drops it.
    let fresh: Vec<(Field, String)> = (0..QUERIES)
        .map(|i| (Field::ALL[i % 3], common::key('N', rng.below(n))))
        .collect();
    group.bench_function(BenchmarkId::new("new_key", n), |b| {
        let mut next = 0;
        b.iter(|| {
            let (field, value) = &fresh[next];
            next = (next + 1) % QUERIES;
            index.subscribe(*field, black_box(value), ConnId(u32::MAX));
            index.unsubscribe(*field, black_box(value), ConnId(u32::MAX));
        })
    });

    // A watched key: a third subscriber joins and leaves.
    let existing: Vec<(Field, String)> = (0..QUERIES).map(|_| keys[rng.below(n)].clone()).collect();
    group.bench_function(BenchmarkId::new("existing_key", n), |b| {
        let mut next = 0;
        b.iter(|| {
            let (field, value) = &existing[next];
            next = (next + 1) % QUERIES;
            index.subscribe(*field, black_box(value), ConnId(u32::MAX));
            index.unsubscribe(*field, black_box(value), ConnId(u32::MAX));
        })
    });
    group.finish();
    assert_eq!(index.key_count(), n);
    assert_eq!(index.entry_count(), 2 * n);
}

fn main() {
    let mut c = common::criterion();
    lookup(&mut c);
    churn(&mut c);
    c.final_summary();
}
