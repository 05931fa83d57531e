//! Outbound encoding: `protocol::frame::text` (one allocation and copy per
//! message, done once per event) for 100 B, 1 KiB and 64 KiB payloads, and
//! the JSON of a `subscribed` reply.
//!
//! `cargo bench --bench encode`.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use fanout::event::Field;
use fanout::protocol::{Filters, Reply, frame};

fn text_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_text");
    for (label, len) in [("100B", 100), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let payload: Vec<u8> = b"{\"type\":\"availability.updated\",\"x\":\""
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &payload, |b, payload| {
            b.iter(|| frame::text(black_box(payload)))
        });
    }
    group.finish();
}

fn reply(c: &mut Criterion) {
    let mut filters = Filters::default();
    for (field, value) in [
        (Field::Course, "PIANO-101"),
        (Field::Course, "VIOLIN-201"),
        (Field::Room, "R-12"),
        (Field::Session, "S-2026-11-24-10"),
    ] {
        filters.insert(field, value);
    }
    let subscribed = Reply::Subscribed {
        filters: &filters,
        scope_all: false,
        omit_empty_filters: false,
    };
    let mut group = c.benchmark_group("reply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("subscribed_4_filters", |b| b.iter(|| black_box(&subscribed).encode()));
    group.bench_function("subscribed_4_filters_framed", |b| {
        b.iter(|| frame::text(&black_box(&subscribed).encode()))
    });
    group.finish();
}

fn main() {
    let mut c = common::criterion();
    text_frame(&mut c);
    reply(&mut c);
    c.final_summary();
}
