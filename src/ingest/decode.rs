//! Kafka record -> [`Outbound`]: parse with simd-json, find the fields,
//! let [`route`] write each audience's message, frame once.
//!
//! Runs on the ingest thread only. A [`Decoder`] keeps its parse buffers and
//! output scratch across records, so steady state allocates only the frames
//! it hands on. Field lookup follows SPEC §5: `payload.data`, then `payload`,
//! then the top level; the first level that has the key wins.

use simd_json::prelude::*;
use simd_json::{BorrowedValue as Value, Buffers};

use crate::clock::Stamp;
use crate::event::{Field, Outbound, RoutingKey};
use crate::protocol::frame;
use crate::route::{self, Fields};

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
    /// Builds the outbound messages of one record consumed from `topic`,
    /// taken at `ingested`.
    pub fn decode(&mut self, topic: &str, payload: Option<&[u8]>, ingested: &Stamp) -> Result<Outbound, DecodeError> {
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
        let timestamp = top.get("timestamp");
        // The record's topic is authoritative (SPEC §5), whatever the
        // envelope says.
        let route = route::route(topic);

        let out = &mut self.scratch;
        out.clear();
        route::write_admin(out, topic, route, body);
        route::write_timestamp(out, timestamp, ingested.json());
        let admin_frame = frame::text(out);

        out.clear();
        let public_frame = route::write_public(out, route, &levels).then(|| {
            route::write_timestamp(out, timestamp, ingested.json());
            frame::text(out)
        });
        Ok(Outbound {
            keys: routing_keys(&levels),
            admin_frame,
            public_frame,
            ingested_at: ingested.at(),
        })
    }
}

/// The three lookup levels, most specific first.
struct Levels<'a, 'v>([Option<&'a Value<'v>>; 3]);

impl<'v> Fields<'v> for Levels<'_, 'v> {
    fn find(&self, key: &str) -> Option<&Value<'v>> {
        self.0.iter().flatten().find_map(|level| level.get(key))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(topic: &str, json: &str) -> Result<Outbound, DecodeError> {
        Decoder::default().decode(topic, Some(json.as_bytes()), &Stamp::now())
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
    fn an_event_without_a_timestamp_carries_its_ingest_stamp_in_both_messages() {
        let stamp = Stamp::now();
        let body = r#"{"payload":{"data":{"course_id":"C1","slots_remaining":2}}}"#;
        let out = Decoder::default()
            .decode("booking.created", Some(body.as_bytes()), &stamp)
            .expect("valid");
        let stamped = serde_json::from_slice::<serde_json::Value>(stamp.json()).expect("a JSON string");
        assert_eq!(json_of(&out.admin_frame)["timestamp"], stamped);
        let public = json_of(out.public_frame.as_ref().expect("slots_remaining present"));
        assert_eq!(public["timestamp"], stamped);
        assert_eq!(out.ingested_at, stamp.at());
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
            Decoder::default().decode("t", None, &Stamp::now()).unwrap_err(),
            DecodeError::Empty
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes: Vec<u8>) {
            let _ = Decoder::default().decode("booking.created", Some(&bytes), &Stamp::now());
        }
    }
}
