//! The unit that flows from the ingest thread to the shards.
//!
//! An [`Outbound`] is built once per Kafka record by `ingest::decode`: its
//! routing keys, and the admin and public messages already framed as
//! WebSocket text frames. It crosses to every shard behind one `Arc`; a shard
//! only reads it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

/// A routing key field of SPEC §6: what a filter can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `course_id`
    Course,
    /// `room_id`
    Room,
    /// `session_id`
    Session,
}

impl Field {
    /// Every field, in the order replies list them.
    pub const ALL: [Field; 3] = [Field::Course, Field::Room, Field::Session];

    /// The JSON key of the field.
    pub fn name(self) -> &'static str {
        match self {
            Field::Course => "course_id",
            Field::Room => "room_id",
            Field::Session => "session_id",
        }
    }

    /// The field a JSON key names, if any.
    pub fn from_name(name: &str) -> Option<Field> {
        match name {
            "course_id" => Some(Field::Course),
            "room_id" => Some(Field::Room),
            "session_id" => Some(Field::Session),
            _ => None,
        }
    }
}

/// One routing key of an event: field and value.
pub type RoutingKey = (Field, Box<str>);

/// One consumed event, ready to write: routing keys plus the pre-framed
/// message of each audience.
#[derive(Debug)]
pub struct Outbound {
    /// Routing keys found in the event (may be empty: scope-all admins only).
    pub keys: Vec<RoutingKey>,
    /// Full message for admin connections, framed.
    pub admin_frame: Bytes,
    /// Public derivative, framed; `None` when the topic has none for this event.
    pub public_frame: Option<Bytes>,
    /// When the ingest thread got the record, for the latency histogram.
    pub ingested_at: Instant,
}

/// What the ingest thread hands each shard.
pub type Dispatch = Arc<Outbound>;
