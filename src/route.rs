//! SPEC §6 as code: which audience gets which message shape for a topic,
//! and what a public message may carry.
//!
//! The ingest thread's decoder parses a record and hands this module a way
//! to look fields up ([`Fields`]); this module writes the admin message and,
//! when the topic has one, the public derivative. Nothing else in the crate
//! decides what a public connection sees.
//! Invariant: a public message carries only [`PUBLIC_FIELDS`], each a scalar
//! or an array of strings, so no personal field or nested object leaks.

use simd_json::BorrowedValue as Value;
use simd_json::prelude::*;

use crate::json;

/// Fields a public message may carry (SPEC §6 allowlist).
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
pub const AVAILABILITY_FIELDS: [&str; 3] = ["course_id", "schedule_id", "slots_remaining"];

/// The public derivative a topic has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicShape {
    /// Admins only (`admin.notifications`, `assessment.submitted`, others).
    None,
    /// `availability.updated`, when the event carries `slots_remaining`.
    AvailabilityUpdated,
    /// `availability.changed` with an allowlisted `summary`.
    AvailabilityChanged,
}

/// What SPEC §6 sends for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The admin message's body key (`booking`, `full_details`, ...).
    pub admin_body_key: &'static str,
    /// The public message's shape.
    pub public: PublicShape,
}

/// The route of `topic`; a topic not named by SPEC §6 goes to admins only,
/// under `event`.
pub fn route(topic: &str) -> Route {
    let (admin_body_key, public) = match topic {
        "booking.created" | "booking.cancelled" | "booking.confirmed" => ("booking", PublicShape::AvailabilityUpdated),
        "schedule.updated" | "schedule.deleted" => ("full_details", PublicShape::AvailabilityChanged),
        "admin.notifications" => ("notification", PublicShape::None),
        "assessment.submitted" => ("assessment", PublicShape::None),
        _ => ("event", PublicShape::None),
    };
    Route { admin_body_key, public }
}

/// Looks a named field up in a decoded event (SPEC §5: `payload.data`, then
/// `payload`, then the top level).
pub trait Fields<'v> {
    /// The value of `name`, from the most specific level that has it.
    fn find(&self, name: &str) -> Option<&Value<'v>>;
}

/// Appends the admin message `{"type":<topic>,"<key>":<body>` (the caller
/// ends it with [`write_timestamp`]).
pub fn write_admin(out: &mut Vec<u8>, topic: &str, route: Route, body: &Value<'_>) {
    out.extend_from_slice(b"{\"type\":");
    json::write_str(out, topic);
    out.push(b',');
    json::write_str(out, route.admin_body_key);
    out.push(b':');
    json::write_value(out, body);
}

/// Appends the public message of `route` up to its timestamp (the caller
/// ends it with [`write_timestamp`]); false, and nothing appended, when the
/// event has no public message.
pub fn write_public<'v>(out: &mut Vec<u8>, route: Route, fields: &impl Fields<'v>) -> bool {
    match route.public {
        PublicShape::None => false,
        PublicShape::AvailabilityUpdated => {
            if fields.find("slots_remaining").is_none() {
                return false;
            }
            out.extend_from_slice(b"{\"type\":\"availability.updated\"");
            for name in AVAILABILITY_FIELDS {
                if let Some(value) = fields.find(name).filter(|v| is_public_value(v)) {
                    json::write_member(out, name, value);
                }
            }
            true
        }
        PublicShape::AvailabilityChanged => {
            out.extend_from_slice(b"{\"type\":\"availability.changed\",\"summary\":{");
            let mut first = true;
            for name in PUBLIC_FIELDS {
                if let Some(value) = fields.find(name).filter(|v| is_public_value(v)) {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    json::write_str(out, name);
                    out.push(b':');
                    json::write_value(out, value);
                }
            }
            out.push(b'}');
            true
        }
    }
}

/// Ends a message with `,"timestamp":..}`: the envelope's timestamp when it
/// is a string, else `ingested` (the time of ingest as a JSON string,
/// [`crate::clock::Stamp::json`]).
pub fn write_timestamp(out: &mut Vec<u8>, envelope: Option<&Value<'_>>, ingested: &[u8]) {
    out.extend_from_slice(b",\"timestamp\":");
    match envelope.filter(|t| t.is_str()) {
        Some(value) => json::write_value(out, value),
        None => out.extend_from_slice(ingested),
    }
    out.push(b'}');
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Flat<'a, 'v>(&'a Value<'v>);

    impl<'v> Fields<'v> for Flat<'_, 'v> {
        fn find(&self, name: &str) -> Option<&Value<'v>> {
            self.0.get(name)
        }
    }

    fn public_of(topic: &str, event: &str) -> Option<serde_json::Value> {
        let mut bytes = event.as_bytes().to_vec();
        let value = simd_json::to_borrowed_value(&mut bytes).expect("JSON");
        let mut out = Vec::new();
        write_public(&mut out, route(topic), &Flat(&value)).then(|| {
            out.push(b'}');
            serde_json::from_slice(&out).expect("valid JSON")
        })
    }

    #[test]
    fn every_topic_of_the_spec_has_its_shape() {
        assert_eq!(route("booking.confirmed").public, PublicShape::AvailabilityUpdated);
        assert_eq!(route("schedule.deleted").admin_body_key, "full_details");
        assert_eq!(route("admin.notifications").public, PublicShape::None);
        assert_eq!(route("assessment.submitted").admin_body_key, "assessment");
        assert_eq!(route("anything.else").admin_body_key, "event");
    }

    #[test]
    fn a_booking_without_slots_has_no_public_message() {
        assert_eq!(public_of("booking.created", r#"{"course_id":"C1"}"#), None);
    }

    #[test]
    fn public_messages_keep_only_allowlisted_scalars() {
        let public = public_of(
            "schedule.updated",
            r#"{"schedule_id":"s1","teacher_email":"t@x","status":{"email":"leak"},"room_id":["R1",{"x":1}]}"#,
        )
        .expect("schedule topics always have one");
        assert_eq!(
            public,
            serde_json::json!({"type":"availability.changed","summary":{"schedule_id":"s1"}})
        );
    }
}
