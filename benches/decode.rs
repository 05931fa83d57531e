//! Kafka payload decode: `ingest::decode::Decoder` (simd-json; builds and
//! frames both audience messages) against the same work done with
//! `serde_json::Value`, for a ~100-byte and a 1 KiB SPEC §5 envelope.
//!
//! `cargo bench --bench decode`; one element is one event.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use fanout::clock::Stamp;
use fanout::event::{Field, Outbound, RoutingKey};
use fanout::ingest::decode::Decoder;
use fanout::protocol::frame;
use fanout::route::PUBLIC_FIELDS;
use serde_json::Value;

use common::Size;

const TOPIC: &str = "booking.created";

/// The baseline: what `Decoder::decode` does for a `booking.created` record,
/// written plainly with serde_json (tree parse, `to_writer`). Same lookups,
/// same two messages, same framing; serde_json's map is sorted, so members
/// come out in another order.
#[derive(Default)]
struct SerdeDecoder {
    scratch: Vec<u8>,
}

impl SerdeDecoder {
    fn decode(&mut self, topic: &str, payload: &[u8], ingested: &Stamp) -> Option<Outbound> {
        let root: Value = serde_json::from_slice(payload).ok()?;
        let top = root.as_object()?;
        let payload = top.get("payload");
        let data = payload.and_then(|p| p.get("data")).filter(|d| d.is_object());
        let body = data.or(payload).unwrap_or(&root);
        let levels = [data, payload.filter(|p| p.is_object()), Some(&root)];
        let find = |key: &str| levels.iter().flatten().find_map(|level| level.get(key));

        let mut keys: Vec<RoutingKey> = Vec::new();
        for field in Field::ALL {
            match find(field.name()) {
                Some(Value::String(s)) if !s.is_empty() => keys.push((field, Box::from(s.as_str()))),
                Some(Value::Array(items)) => {
                    for s in items.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()) {
                        if !keys.iter().any(|(f, k)| *f == field && &**k == s) {
                            keys.push((field, Box::from(s)));
                        }
                    }
                }
                _ => {}
            }
        }
        let timestamp = top.get("timestamp").filter(|t| t.is_string());
        let write_stamp = |out: &mut Vec<u8>| {
            out.extend_from_slice(b",\"timestamp\":");
            match timestamp {
                Some(t) => serde_json::to_writer(&mut *out, t).expect("Vec write"),
                None => out.extend_from_slice(ingested.json()),
            }
            out.push(b'}');
        };
        let public_value = |v: &&Value| match v {
            Value::Object(_) => false,
            Value::Array(items) => items.iter().all(Value::is_string),
            _ => true,
        };

        let out = &mut self.scratch;
        let (body_key, availability_updated) = match topic {
            "booking.created" | "booking.cancelled" | "booking.confirmed" => ("booking", Some(true)),
            "schedule.updated" | "schedule.deleted" => ("full_details", Some(false)),
            _ => ("event", None),
        };
        out.clear();
        out.extend_from_slice(b"{\"type\":");
        serde_json::to_writer(&mut *out, topic).expect("Vec write");
        out.extend_from_slice(b",\"");
        out.extend_from_slice(body_key.as_bytes());
        out.extend_from_slice(b"\":");
        serde_json::to_writer(&mut *out, body).expect("Vec write");
        write_stamp(out);
        let admin_frame = frame::text(out);

        let public_frame = match availability_updated {
            None => None,
            Some(true) => find("slots_remaining").map(|_| {
                out.clear();
                out.extend_from_slice(b"{\"type\":\"availability.updated\"");
                for name in ["course_id", "schedule_id", "slots_remaining"] {
                    if let Some(value) = find(name).filter(public_value) {
                        out.push(b',');
                        serde_json::to_writer(&mut *out, name).expect("Vec write");
                        out.push(b':');
                        serde_json::to_writer(&mut *out, value).expect("Vec write");
                    }
                }
                write_stamp(out);
                frame::text(out)
            }),
            Some(false) => {
                out.clear();
                out.extend_from_slice(b"{\"type\":\"availability.changed\",\"summary\":{");
                let mut first = true;
                for name in PUBLIC_FIELDS {
                    if let Some(value) = find(name).filter(public_value) {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        serde_json::to_writer(&mut *out, name).expect("Vec write");
                        out.push(b':');
                        serde_json::to_writer(&mut *out, value).expect("Vec write");
                    }
                }
                out.push(b'}');
                write_stamp(out);
                Some(frame::text(out))
            }
        };
        Some(Outbound {
            keys,
            admin_frame,
            public_frame,
            ingested_at: ingested.at(),
        })
    }
}

fn json_of(frame: &[u8]) -> Value {
    serde_json::from_slice(frame::payload_of(frame)).expect("frames carry JSON")
}

/// Both decoders must agree (up to member order) before either is timed.
fn check_equivalent(payload: &[u8]) {
    let now = Stamp::now();
    let simd = Decoder::default()
        .decode(TOPIC, Some(payload), &now)
        .expect("valid envelope");
    let serde = SerdeDecoder::default()
        .decode(TOPIC, payload, &now)
        .expect("valid envelope");
    assert_eq!(simd.keys, serde.keys);
    assert_eq!(json_of(&simd.admin_frame), json_of(&serde.admin_frame));
    let public = |o: &Outbound| o.public_frame.as_deref().map(json_of);
    assert!(public(&simd).is_some());
    assert_eq!(public(&simd), public(&serde));
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in [Size::Small, Size::Large] {
        let payload = common::booking(size, "PIANO-101", "R-12", "S-7");
        check_equivalent(&payload);
        group.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: payload.len() as u64,
        });
        let id = format!("{}B", payload.len());
        let now = Stamp::now();

        let mut simd = Decoder::default();
        group.bench_with_input(BenchmarkId::new("simd_json", &id), &payload, |b, payload| {
            b.iter(|| simd.decode(TOPIC, Some(black_box(payload)), &now).expect("valid"))
        });
        let mut serde = SerdeDecoder::default();
        group.bench_with_input(BenchmarkId::new("serde_json", &id), &payload, |b, payload| {
            b.iter(|| serde.decode(TOPIC, black_box(payload), &now).expect("valid"))
        });

        // The parse alone (what the two decoders above add on top of it is
        // building the messages): copy + tape + borrowed tree, as `Decoder`.
        let (mut input, mut buffers) = (Vec::new(), simd_json::Buffers::default());
        group.bench_with_input(BenchmarkId::new("parse_only/simd_json", &id), &payload, |b, payload| {
            b.iter(|| {
                input.clear();
                input.extend_from_slice(black_box(payload));
                let value = simd_json::to_borrowed_value_with_buffers(&mut input, &mut buffers).expect("valid");
                black_box(&value);
            })
        });
        group.bench_with_input(
            BenchmarkId::new("parse_only/serde_json", &id),
            &payload,
            |b, payload| b.iter(|| serde_json::from_slice::<Value>(black_box(payload)).expect("valid")),
        );
    }
    group.finish();
}

fn main() {
    let mut c = common::criterion();
    decode(&mut c);
    c.final_summary();
}
