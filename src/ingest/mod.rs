//! The ingest thread: poll the source -> decode -> hand to every shard ->
//! let the source commit.
//!
//! One thread, pinned to `--ingest-core`. It owns the [`EventSource`] (Kafka
//! in production), the decoder's buffers and the inbox senders. A position is
//! committed only after its event sits in every shard's inbox, so a commit
//! never covers an event the shards did not get (at-least-once into the
//! engine, SPEC §5). Bad records are counted, logged at most once a second,
//! and skipped.

pub mod decode;
pub mod dispatch;
pub mod embedded;
pub mod kafka;
pub mod source;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::decode::Decoder;
use self::dispatch::Dispatcher;
pub use self::source::{EventSource, MemorySource, Record};
use crate::clock::Stamp;
use crate::metrics::{IngestMetrics, SKIP_REASONS};

/// Longest a poll blocks, so a stop request is seen promptly.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Records taken per poll: those the source already holds are decoded and
/// handed on with one wake-up of each shard, and their positions committed
/// together, and share one clock reading (`clock::Stamp`). Bounds the wait
/// of a batch's first record for its last, and so how far a stamp lags its
/// last record (~1 µs of decoding each).
const RECORDS_PER_POLL: usize = 256;

/// Starts the ingest thread; it runs until `stop` is set, the source ends
/// or a shard is gone, then commits and returns.
pub fn spawn<S: EventSource + Send + 'static>(
    mut source: S,
    dispatcher: Dispatcher,
    metrics: Arc<IngestMetrics>,
    core: Option<usize>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("ingest".into()).spawn(move || {
        if let Some(core) = core
            && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
        {
            tracing::warn!(core, "could not pin the ingest thread");
        }
        run(&mut source, &dispatcher, &metrics, &stop);
        // Let the shards start closing their clients while we commit.
        drop(dispatcher);
        source.commit_now();
    })
}

/// The loop of the ingest thread; returns when `stop` is set, the source
/// ends, or a shard is gone.
pub fn run(source: &mut impl EventSource, dispatcher: &Dispatcher, metrics: &IngestMetrics, stop: &AtomicBool) {
    let mut decoder = Decoder::default();
    let mut warn_limit = WarnLimit::default();
    while !stop.load(Ordering::Relaxed) {
        let mut shard_gone = false;
        // The clocks are read once per poll, at its first record: the rest
        // were fetched already and follow within microseconds. A wait on a
        // full inbox ends the reading's use.
        let mut stamp: Option<Stamp> = None;
        let polled = source.poll(POLL_TIMEOUT, RECORDS_PER_POLL, &mut |record| {
            metrics.events_consumed.inc();
            let ingested = stamp.get_or_insert_with(Stamp::now);
            match decoder.decode(record.topic, record.payload, ingested) {
                Ok(outbound) => match dispatcher.dispatch(Arc::new(outbound)) {
                    Ok(waited) if waited.is_zero() => {}
                    Ok(_) => stamp = None,
                    Err(_) => {
                        shard_gone = true;
                        return ControlFlow::Break(());
                    }
                },
                Err(err) => {
                    let at = SKIP_REASONS
                        .iter()
                        .position(|r| *r == err.reason())
                        .expect("every reason is listed");
                    metrics.events_skipped[at].inc();
                    if warn_limit.allow() {
                        tracing::warn!(
                            topic = record.topic,
                            partition = record.partition,
                            offset = record.offset,
                            reason = err.reason(),
                            "skipping kafka record: {err}"
                        );
                    }
                }
            }
            ControlFlow::Continue(())
        });
        // One wake-up per batch: a shard finds all of it waiting.
        dispatcher.wake();
        if shard_gone {
            // At shutdown a send waiting on a full inbox gives up the same way.
            if !stop.load(Ordering::Relaxed) {
                tracing::error!("a shard is gone; ingest stops");
            }
            return;
        }
        source.handed_off();
        if polled.is_none() {
            return;
        }
    }
}

/// At most one warning a second; the metrics count every case.
#[derive(Default)]
struct WarnLimit {
    last: Option<Instant>,
}

impl WarnLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Gauge;
    use crate::protocol::frame;
    use crate::shard::inbox;

    fn dispatcher(shards: usize) -> (Dispatcher, Vec<inbox::Inbox>, Arc<IngestMetrics>) {
        let metrics = Arc::new(IngestMetrics::default());
        let (senders, inboxes) = (0..shards).map(|_| inbox::inbox(16).expect("socketpair")).unzip();
        let depths: Arc<[Gauge]> = (0..shards).map(|_| Gauge::default()).collect();
        (Dispatcher::new(senders, depths, metrics.clone()), inboxes, metrics)
    }

    fn course_of(inbox: &inbox::Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.try_recv())
            .map(|event| {
                let json: serde_json::Value =
                    serde_json::from_slice(frame::payload_of(&event.admin_frame)).expect("JSON");
                json["booking"]["course_id"].as_str().unwrap_or("").to_string()
            })
            .collect()
    }

    #[test]
    fn every_shard_gets_every_event_in_order_and_bad_records_are_counted() {
        let (dispatcher, inboxes, metrics) = dispatcher(2);
        let mut source = MemorySource::default();
        source.push("booking.created", Some(br#"{"payload":{"course_id":"C1"}}"#));
        source.push("booking.created", Some(b"{not json"));
        source.push("booking.created", Some(b"[1]"));
        source.push("booking.created", None);
        source.push("booking.created", Some(br#"{"payload":{"course_id":"C2"}}"#));
        source.close();
        run(&mut source, &dispatcher, &metrics, &AtomicBool::new(false));
        for inbox in &inboxes {
            assert_eq!(course_of(inbox), ["C1", "C2"]);
        }
        assert_eq!(metrics.events_consumed.get(), 5);
        let skipped: Vec<u64> = metrics.events_skipped.iter().map(|c| c.get()).collect();
        assert_eq!(skipped, [1, 1, 1]);
        // Skipped records are handed off too: nothing is re-read for them.
        assert_eq!(source.handed_off_position(), 5);
    }

    #[test]
    fn a_record_no_shard_took_is_not_committed() {
        let (dispatcher, mut inboxes, metrics) = dispatcher(1);
        let mut source = MemorySource::default();
        source.push("booking.created", Some(br#"{"payload":{"course_id":"C1"}}"#));
        run(&mut source, &dispatcher, &metrics, &AtomicBool::new(true));
        assert_eq!(source.handed_off_position(), 0, "stop was set before the first poll");
        drop(inboxes.pop());
        run(&mut source, &dispatcher, &metrics, &AtomicBool::new(false));
        assert_eq!(
            source.handed_off_position(),
            0,
            "the shard was gone: nothing handed off"
        );
        source.commit_now();
        assert_eq!(source.committed_position(), 0);
    }
}
