//! Client messages applied to a connection's filters and the shard's index
//! (SPEC §4), all or nothing, and the index kept in step when connections
//! leave.
//!
//! Runs on the shard, from `input` (one parsed message at a time) and from
//! the close path. Every change to the index goes through here, and the
//! index gauges are published after each. Each message costs O(set +
//! message): the filter set is merged and pruned with a hash set
//! (`Filters`), and each index change is O(1) (`index`).

use bytes::Bytes;

use super::index::SubscriptionIndex;
use super::{Conn, ConnId, Role, Shard};
use crate::protocol::frame;
use crate::protocol::{ClientMessage, ProtocolError, Reply, Topic};

impl Shard {
    /// Applies a message to the connection and the index; all or nothing.
    /// Returns the framed reply.
    pub(super) fn apply(&self, conn: &mut Conn, id: ConnId, message: ClientMessage) -> Result<Bytes, ProtocolError> {
        let mut index = self.index.borrow_mut();
        let reply = match message {
            ClientMessage::Subscribe { filters, scope_all } => {
                if scope_all && conn.role != Role::Admin {
                    return Err(ProtocolError::Forbidden);
                }
                let max = self.config.max_filters;
                let added = conn
                    .filters
                    .extend_within(filters, max)
                    .map_err(|_| ProtocolError::TooManyFilters(max))?;
                for (field, value) in conn.filters.iter().skip(added) {
                    index.subscribe(field, value, id);
                }
                if scope_all {
                    conn.scope_all = true;
                    index.add_scope_all(id);
                }
                Reply::Subscribed {
                    filters: &conn.filters,
                    scope_all: conn.scope_all,
                    omit_empty_filters: scope_all,
                }
                .encode()
            }
            ClientMessage::UnsubscribeTopic { topic, target } => {
                match target {
                    Topic::Filter(field, value) => {
                        if conn.filters.remove(field, &value) {
                            index.unsubscribe(field, &value, id);
                        }
                    }
                    Topic::ScopeAll => {
                        conn.scope_all = false;
                        index.remove_scope_all(id);
                    }
                }
                Reply::Unsubscribed {
                    topic: Some(&topic),
                    filters: &conn.filters,
                    scope_all: conn.scope_all,
                }
                .encode()
            }
            ClientMessage::UnsubscribeFilters(filters) => {
                conn.filters
                    .remove_all(&filters, |field, value| index.unsubscribe(field, value, id));
                Reply::Unsubscribed {
                    topic: None,
                    filters: &conn.filters,
                    scope_all: conn.scope_all,
                }
                .encode()
            }
            ClientMessage::UnsubscribeAll => {
                remove_from_index(&mut index, id, conn);
                conn.filters.clear();
                conn.scope_all = false;
                Reply::Unsubscribed {
                    topic: None,
                    filters: &conn.filters,
                    scope_all: false,
                }
                .encode()
            }
            ClientMessage::Ping => Reply::Pong.encode(),
        };
        self.publish_index_gauges(&index);
        Ok(frame::text(&reply))
    }

    /// Takes every index entry of connection `id` away (idempotent); its
    /// filters stay, for the record.
    pub(super) fn unindex(&self, id: ConnId, conn: &Conn) {
        let mut index = self.index.borrow_mut();
        remove_from_index(&mut index, id, conn);
        self.publish_index_gauges(&index);
    }

    /// Publishes the index gauges; call after every index change (O(1)).
    pub(super) fn publish_index_gauges(&self, index: &SubscriptionIndex) {
        self.metrics.index_keys.set(index.key_count() as i64);
        self.metrics.index_entries.set(index.entry_count() as i64);
    }
}

/// Removes the entries of `conn`'s filters and scope from `index`.
fn remove_from_index(index: &mut SubscriptionIndex, id: ConnId, conn: &Conn) {
    for (field, value) in conn.filters.iter() {
        index.unsubscribe(field, value, id);
    }
    if conn.scope_all {
        index.remove_scope_all(id);
    }
}
