//! Where events come from: the [`EventSource`] seam and its in-memory twin.
//!
//! The ingest loop (`ingest::run`) polls a source, decodes what it gets and
//! hands it to the shards, then tells the source so; only then may the source
//! commit those positions (at-least-once into the engine, SPEC §5). The real
//! source is Kafka (`ingest::kafka::KafkaSource`); [`MemorySource`] lets the
//! loop's behaviour be tested without a broker. A source lives on the ingest
//! thread.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::Duration;

/// One record as a source hands it over, borrowed for the call.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The topic it was read from (authoritative over the envelope's).
    pub topic: &'a str,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// The value; `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
}

/// A stream of records with commit-after-hand-off positions.
pub trait EventSource {
    /// Waits up to `timeout` for records and passes each, in order, to
    /// `each`, at most `max` of them; stops early when `each` breaks.
    /// Returns how many were passed, or `None` once the source has ended
    /// (never, for Kafka).
    fn poll(
        &mut self,
        timeout: Duration,
        max: usize,
        each: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Option<usize>;

    /// Every record passed to `each` and not broken on is now in every
    /// shard's inbox: its position may be committed.
    fn handed_off(&mut self);

    /// Commits the handed-off positions now and waits for the broker
    /// (shutdown).
    fn commit_now(&mut self);
}

/// An in-memory, single-partition source for tests: records are pushed by
/// the test; positions are "committed" on hand-off and can be read back.
#[derive(Debug, Default)]
pub struct MemorySource {
    queue: VecDeque<(String, Option<Vec<u8>>)>,
    next_offset: i64,
    /// Offset after the last record passed on and not yet handed off.
    polled: Option<i64>,
    /// Offset after the last handed-off record.
    handed_off: i64,
    /// Offset after the last record committed by `commit_now`.
    committed: i64,
    closed: bool,
}

impl MemorySource {
    /// Appends a record to `topic`.
    pub fn push(&mut self, topic: &str, payload: Option<&[u8]>) {
        self.queue.push_back((topic.to_string(), payload.map(<[u8]>::to_vec)));
    }

    /// Ends the source once every pushed record has been polled.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The position a restarted consumer would resume from: the offset
    /// after the last handed-off record.
    pub fn handed_off_position(&self) -> i64 {
        self.handed_off
    }

    /// The position written by the last `commit_now`.
    pub fn committed_position(&self) -> i64 {
        self.committed
    }
}

impl EventSource for MemorySource {
    fn poll(
        &mut self,
        _timeout: Duration,
        max: usize,
        each: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Option<usize> {
        if self.queue.is_empty() && self.closed {
            return None;
        }
        let mut passed = 0;
        while passed < max {
            let Some((topic, payload)) = self.queue.pop_front() else {
                break;
            };
            let offset = self.next_offset;
            self.next_offset += 1;
            let record = Record {
                topic: &topic,
                partition: 0,
                offset,
                payload: payload.as_deref(),
            };
            if each(record).is_break() {
                break;
            }
            passed += 1;
            self.polled = Some(offset + 1);
        }
        Some(passed)
    }

    fn handed_off(&mut self) {
        if let Some(next) = self.polled.take() {
            self.handed_off = next;
        }
    }

    fn commit_now(&mut self) {
        self.handed_off();
        self.committed = self.handed_off;
    }
}
