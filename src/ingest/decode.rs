//! Kafka record -> [`Outbound`]: decode with simd-json, route, encode once.
//!
//! Runs on the ingest thread only. A [`Decoder`] keeps its parse buffers and
//! output scratch across records, so steady state allocates only the frames
//! it hands on. Field lookup follows SPEC §5: `payload.data`, then `payload`,
//! then the top level; the first level that has the key wins.

use std::time::{Instant, SystemTime};

use simd_json::prelude::*;
use simd_json::{BorrowedValue as Value, Buffers};

use crate::event::{Field, Outbound, RoutingKey};
use crate::protocol::frame;

/// Fields a public message may carry (SPEC §6 allowlist). Nothing else of an
/// event ever reaches a public connection.
pub const PUBLIC_FIELDS: [&str; 11] = [
    "id",
    "booking_id",
    "course_id",
    "room_id",
    "schedule_id",
    "session_id",
    "slots_remaining",
    "action",
    "status",
    "start_time",
    "end_time",
];

/// Fields of `availability.updated`, in output order.
const AVAILABILITY_FIELDS: [&str; 3] = ["course_id", "schedule_id", "slots_remaining"];

/// Why a record was skipped; the label of `fanout_events_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("record is not valid JSON")]
    InvalidJson,
    /// JSON, but not an object.
    #[error("record is not a JSON object")]
    NotObject,
    /// A record without a value (e.g. a tombstone).
    #[error("record has no value")]
    Empty,
}

impl DecodeError {
    /// Metric label of this reason.
    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::InvalidJson => "invalid_json",
            DecodeError::NotObject => "not_object",
            DecodeError::Empty => "empty",
        }
    }
}

/// Reusable decode state of the ingest thread.
#[derive(Default)]
pub struct Decoder {
    input: Vec<u8>,
    buffers: Buffers,
    scratch: Vec<u8>,
}

impl Decoder {
    /// Builds the outbound messages of one record consumed from `topic`.
    pub fn decode(
        &mut self,
        topic: &str,
        payload: Option<&[u8]>,
        ingested_at: Instant,
    ) -> Result<Outbound, DecodeError> {
        let payload = payload.filter(|p| !p.is_empty()).ok_or(DecodeError::Empty)?;
        self.input.clear();
        self.input.extend_from_slice(payload);
        let root = simd_json::to_borrowed_value_with_buffers(&mut self.input, &mut self.buffers)
            .map_err(|_| DecodeError::InvalidJson)?;
        let top = root.as_object().ok_or(DecodeError::NotObject)?;
        let payload = top.get("payload");
        let data = payload.and_then(|p| p.get("data")).filter(|d| d.is_object());
        // The body is payload.data when it is an object, else payload; a
        // record with no payload at all is its own body.
        let body = data.or(payload).unwrap_or(&root);
        let levels = Levels([data, payload.filter(|p| p.is_object()), Some(&root)]);

        let keys = routing_keys(&levels);
        let timestamp = top.get("timestamp").filter(|t| t.is_str());
        let stamp = Timestamp::new(timestamp);

        let out = &mut self.scratch;
        let (body_key, public) = shape(topic);
        out.clear();
        out.extend_from_slice(b"{\"type\":");
        write_json(out, &Value::from(topic));
        out.extend_from_slice(b",\"");
        out.extend_from_slice(body_key.as_bytes());
        out.extend_from_slice(b"\":");
        write_json(out, body);
        stamp.write(out);
        let admin_frame = frame::text(out);

        let public_frame = match public {
            Public::None => None,
            Public::AvailabilityUpdated => levels.find("slots_remaining").map(|_| {
                out.clear();
                out.extend_from_slice(b"{\"type\":\"availability.updated\"");
                for name in AVAILABILITY_FIELDS {
                    if let Some(value) = levels.find(name).filter(|v| is_public_value(v)) {
                        write_member(out, name, value);
                    }
                }
                stamp.write(out);
                frame::text(out)
            }),
            Public::AvailabilityChanged => {
                out.clear();
                out.extend_from_slice(b"{\"type\":\"availability.changed\",\"summary\":{");
                let mut first = true;
                for name in PUBLIC_FIELDS {
                    if let Some(value) = levels.find(name).filter(|v| is_public_value(v)) {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        write_json(out, &Value::from(name));
                        out.push(b':');
                        write_json(out, value);
                    }
                }
                out.push(b'}');
                stamp.write(out);
                Some(frame::text(out))
            }
        };
        Ok(Outbound {
            keys,
            admin_frame,
            public_frame,
            ingested_at,
        })
    }
}

/// The public derivative a topic has (SPEC §6).
enum Public {
    None,
    AvailabilityUpdated,
    AvailabilityChanged,
}

/// The admin message's body key and the public shape of a topic.
fn shape(topic: &str) -> (&'static str, Public) {
    match topic {
        "booking.created" | "booking.cancelled" | "booking.confirmed" => ("booking", Public::AvailabilityUpdated),
        "schedule.updated" | "schedule.deleted" => ("full_details", Public::AvailabilityChanged),
        "admin.notifications" => ("notification", Public::None),
        "assessment.submitted" => ("assessment", Public::None),
        _ => ("event", Public::None),
    }
}

/// The three lookup levels, most specific first.
struct Levels<'a, 'v>([Option<&'a Value<'v>>; 3]);

impl<'a, 'v> Levels<'a, 'v> {
    fn find(&self, key: &str) -> Option<&'a Value<'v>> {
        self.0.iter().flatten().copied().find_map(|level| level.get(key))
    }
}

fn routing_keys(levels: &Levels<'_, '_>) -> Vec<RoutingKey> {
    let mut keys = Vec::new();
    for field in Field::ALL {
        match levels.find(field.name()) {
            Some(Value::String(s)) if !s.is_empty() => keys.push((field, Box::from(s.as_ref()))),
            Some(Value::Array(items)) => {
                for item in items.iter() {
                    if let Some(s) = item.as_str().filter(|s| !s.is_empty())
                        && !keys.iter().any(|(f, k)| *f == field && &**k == s)
                    {
                        keys.push((field, Box::from(s)));
                    }
                }
            }
            _ => {}
        }
    }
    keys
}

/// Public messages carry scalars (and routing-key arrays of strings) only, so
/// an allowlisted name can never smuggle a nested personal object out.
fn is_public_value(value: &Value<'_>) -> bool {
    match value {
        Value::Static(_) | Value::String(_) => true,
        Value::Array(items) => items.iter().all(|item| item.is_str()),
        Value::Object(_) => false,
    }
}

fn write_member(out: &mut Vec<u8>, name: &str, value: &Value<'_>) {
    out.push(b',');
    write_json(out, &Value::from(name));
    out.push(b':');
    write_json(out, value);
}

fn write_json(out: &mut Vec<u8>, value: &Value<'_>) {
    value.write(out).expect("writing to a Vec cannot fail");
}

/// The message's `timestamp`: the envelope's string, else the ingest time.
struct Timestamp<'a, 'v>(Option<&'a Value<'v>>);

impl<'a, 'v> Timestamp<'a, 'v> {
    fn new(envelope: Option<&'a Value<'v>>) -> Self {
        Timestamp(envelope)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"timestamp\":");
        match self.0 {
            Some(value) => write_json(out, value),
            None => {
                out.push(b'"');
                out.extend_from_slice(iso_now().as_bytes());
                out.push(b'"');
            }
        }
        out.push(b'}');
    }
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-11-24T10:00:00.123Z`.
pub fn iso_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(topic: &str, json: &str) -> Result<Outbound, DecodeError> {
        Decoder::default().decode(topic, Some(json.as_bytes()), Instant::now())
    }

    fn json_of(frame: &[u8]) -> serde_json::Value {
        serde_json::from_slice(frame::payload_of(frame)).expect("frames carry JSON")
    }

    const BOOKING: &str = r#"{"topic":"booking.created","timestamp":"2026-11-23T10:00:00Z","event_type":"booking.created",
        "payload":{"id":"bk-1","action":"created","data":{"booking_id":"bk-1","course_id":"PIANO-101",
        "schedule_id":"sch-123","student_id":"st-9","slots_remaining":4}}}"#;

    #[test]
    fn booking_has_admin_and_public_shapes() {
        let out = decode("booking.created", BOOKING).expect("valid");
        assert_eq!(out.keys, vec![(Field::Course, "PIANO-101".into())]);
        let admin = json_of(&out.admin_frame);
        assert_eq!(admin["type"], "booking.created");
        assert_eq!(admin["booking"]["student_id"], "st-9");
        assert_eq!(admin["timestamp"], "2026-11-23T10:00:00Z");
        let public = json_of(out.public_frame.as_ref().expect("slots_remaining present"));
        assert_eq!(
            public,
            serde_json::json!({"type":"availability.updated","course_id":"PIANO-101",
                "schedule_id":"sch-123","slots_remaining":4,"timestamp":"2026-11-23T10:00:00Z"})
        );
    }

    #[test]
    fn booking_without_slots_has_no_public_message() {
        let out = decode("booking.cancelled", r#"{"payload":{"data":{"course_id":"C1"}}}"#).expect("valid");
        assert!(out.public_frame.is_none());
    }

    #[test]
    fn schedule_summary_keeps_only_allowlisted_scalars() {
        let out = decode(
            "schedule.updated",
            r#"{"payload":{"data":{"schedule_id":"s1","room_id":["R1","R2"],"teacher_email":"t@x",
                "status":{"email":"leak"},"start_time":"10:00"}}}"#,
        )
        .expect("valid");
        assert_eq!(out.keys, vec![(Field::Room, "R1".into()), (Field::Room, "R2".into())]);
        let public = json_of(out.public_frame.as_ref().expect("always present"));
        assert_eq!(public["type"], "availability.changed");
        assert_eq!(
            public["summary"],
            serde_json::json!({"room_id":["R1","R2"],"schedule_id":"s1","start_time":"10:00"})
        );
        assert!(public["timestamp"].is_string());
        assert_eq!(json_of(&out.admin_frame)["full_details"]["teacher_email"], "t@x");
    }

    #[test]
    fn keys_found_at_each_level_most_specific_wins() {
        let out = decode(
            "admin.notifications",
            r#"{"course_id":"TOP","room_id":"R-top","payload":{"room_id":"R-pay","data":{"session_id":"S"}}}"#,
        )
        .expect("valid");
        assert_eq!(
            out.keys,
            vec![
                (Field::Course, "TOP".into()),
                (Field::Room, "R-pay".into()),
                (Field::Session, "S".into())
            ]
        );
        assert!(out.public_frame.is_none());
        assert_eq!(
            json_of(&out.admin_frame)["notification"],
            serde_json::json!({"session_id":"S"})
        );
    }

    #[test]
    fn body_is_payload_when_data_is_not_an_object() {
        let out = decode("assessment.submitted", r#"{"payload":{"data":7,"course_id":"C"}}"#).expect("valid");
        assert_eq!(
            json_of(&out.admin_frame)["assessment"],
            serde_json::json!({"data":7,"course_id":"C"})
        );
    }

    #[test]
    fn unknown_topic_uses_event_key_and_bad_timestamp_is_ignored() {
        let out = decode("custom.topic", r#"{"timestamp":5,"payload":{"x":1}}"#).expect("valid");
        let admin = json_of(&out.admin_frame);
        assert_eq!(admin["type"], "custom.topic");
        assert_eq!(admin["event"], serde_json::json!({"x":1}));
        assert!(admin["timestamp"].as_str().expect("ingest time").ends_with('Z'));
    }

    #[test]
    fn bad_records_are_classified() {
        assert_eq!(decode("t", "{nope").unwrap_err(), DecodeError::InvalidJson);
        assert_eq!(decode("t", "[1,2]").unwrap_err(), DecodeError::NotObject);
        assert_eq!(
            Decoder::default().decode("t", None, Instant::now()).unwrap_err(),
            DecodeError::Empty
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes: Vec<u8>) {
            let _ = Decoder::default().decode("booking.created", Some(&bytes), Instant::now());
        }
    }
}
