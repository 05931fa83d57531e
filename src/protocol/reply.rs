//! The server's answers to a client (SPEC §3, §4), encoded as JSON text.
//!
//! Built on the connection's shard, one reply per client message; the
//! caller frames it. Every string goes through [`json::write_str`].

use super::{Filters, ProtocolError};
use crate::clock;
use crate::event::Field;
use crate::json::write_str;

/// Server messages that answer a client, encoded as JSON.
pub enum Reply<'a> {
    /// After the upgrade.
    Connected {
        /// Process-unique client id.
        client_id: &'a str,
        /// Admin connections say so.
        admin: bool,
    },
    /// After a subscribe.
    Subscribed {
        /// Whole filter set after the change.
        filters: &'a Filters,
        /// Connection has scope all.
        scope_all: bool,
        /// Leave out an empty `filters` (a scope-only subscribe).
        omit_empty_filters: bool,
    },
    /// After an unsubscribe.
    Unsubscribed {
        /// Echoed topic, for the topic form.
        topic: Option<&'a str>,
        /// Remaining filters.
        filters: &'a Filters,
        /// Connection still has scope all.
        scope_all: bool,
    },
    /// Answer to `{"type":"ping"}`.
    Pong,
    /// An error the connection survives.
    Error(&'a ProtocolError),
}

impl Reply<'_> {
    /// The JSON text of the reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        match self {
            Reply::Connected { client_id, admin } => {
                out.extend_from_slice(b"{\"type\":\"connected\",\"clientId\":");
                write_str(&mut out, client_id);
                if *admin {
                    out.extend_from_slice(b",\"role\":\"admin\"");
                }
            }
            Reply::Subscribed {
                filters,
                scope_all,
                omit_empty_filters,
            } => {
                out.extend_from_slice(b"{\"type\":\"subscribed\"");
                if !(*omit_empty_filters && filters.is_empty()) {
                    write_filters(&mut out, filters);
                }
                write_scope(&mut out, *scope_all);
            }
            Reply::Unsubscribed {
                topic,
                filters,
                scope_all,
            } => {
                out.extend_from_slice(b"{\"type\":\"unsubscribed\"");
                if let Some(topic) = topic {
                    out.extend_from_slice(b",\"topic\":");
                    write_str(&mut out, topic);
                }
                write_filters(&mut out, filters);
                write_scope(&mut out, *scope_all);
            }
            Reply::Pong => {
                out.extend_from_slice(b"{\"type\":\"pong\",\"timestamp\":");
                clock::write_now_json(&mut out);
            }
            Reply::Error(error) => {
                out.extend_from_slice(b"{\"type\":\"error\",\"code\":");
                write_str(&mut out, error.code());
                out.extend_from_slice(b",\"message\":");
                write_str(&mut out, &error.to_string());
            }
        }
        out.push(b'}');
        out
    }
}

fn write_filters(out: &mut Vec<u8>, filters: &Filters) {
    out.extend_from_slice(b",\"filters\":{");
    let mut first_field = true;
    for field in Field::ALL {
        let mut values = filters.values(field).peekable();
        if values.peek().is_none() {
            continue;
        }
        if !first_field {
            out.push(b',');
        }
        first_field = false;
        write_str(out, field.name());
        out.extend_from_slice(b":[");
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, value);
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn write_scope(out: &mut Vec<u8>, scope_all: bool) {
    if scope_all {
        out.extend_from_slice(b",\"scope\":\"all\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(pairs: &[(Field, &str)]) -> Filters {
        let mut f = Filters::default();
        for (field, value) in pairs {
            f.insert(*field, value);
        }
        f
    }

    #[test]
    fn replies_echo_the_whole_set() {
        let f = filters(&[(Field::Course, "C1"), (Field::Room, "R\"1")]);
        let reply = Reply::Subscribed {
            filters: &f,
            scope_all: true,
            omit_empty_filters: false,
        }
        .encode();
        assert_eq!(
            String::from_utf8(reply).expect("utf8"),
            r#"{"type":"subscribed","filters":{"course_id":["C1"],"room_id":["R\"1"]},"scope":"all"}"#
        );
        let empty = Filters::default();
        let reply = Reply::Unsubscribed {
            topic: None,
            filters: &empty,
            scope_all: false,
        }
        .encode();
        assert_eq!(reply, br#"{"type":"unsubscribed","filters":{}}"#);
        let reply = Reply::Subscribed {
            filters: &empty,
            scope_all: true,
            omit_empty_filters: true,
        }
        .encode();
        assert_eq!(reply, br#"{"type":"subscribed","scope":"all"}"#);
    }

    #[test]
    fn error_reply_shape() {
        let reply = Reply::Error(&ProtocolError::InvalidFormat).encode();
        assert_eq!(
            reply,
            br#"{"type":"error","code":"invalid_format","message":"Invalid format"}"#
        );
    }
}
