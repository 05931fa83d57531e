//! Live counters: connection progress (shared atomics, low rate) and
//! delivery counts plus the latency histogram (one slot per runtime thread,
//! merged when read).
//!
//! Subscriber tasks write; `run` reads once a second for the progress line
//! and at the end for the report. Delivery stats are per thread so 100k
//! subscribers on N threads never contend on one cache line: each thread
//! locks only its own (uncontended) slot.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Highest latency the histogram holds, in nanoseconds (larger ones are
/// clamped): 10 minutes.
const MAX_LATENCY_NANOS: u64 = 600_000_000_000;

/// Wall clock as Unix nanoseconds (what `schedule_id` carries).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Connection-phase and producer counters.
pub struct Progress {
    /// When the run started; the `*_at_nanos` fields count from here.
    pub epoch: Instant,
    /// Subscribers whose upgrade completed.
    pub connected: AtomicU64,
    /// Subscribers whose `subscribed` ack arrived.
    pub acked: AtomicU64,
    /// Subscribers that failed before their ack.
    pub failed: AtomicU64,
    /// Latest upgrade completion, nanoseconds since `epoch`.
    pub last_connected_at_nanos: AtomicU64,
    /// Latest ack, nanoseconds since `epoch`.
    pub last_acked_at_nanos: AtomicU64,
    /// Events handed to the sink.
    pub sent: AtomicU64,
    /// Subscribers closed by the server after their ack.
    pub closed_by_server: AtomicU64,
}

impl Progress {
    /// Fresh counters starting now.
    pub fn new() -> Self {
        Progress {
            epoch: Instant::now(),
            connected: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_connected_at_nanos: AtomicU64::new(0),
            last_acked_at_nanos: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            closed_by_server: AtomicU64::new(0),
        }
    }

    /// Time since `epoch` in nanoseconds.
    pub fn elapsed_nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Counts a completed upgrade.
    pub fn mark_connected(&self) {
        self.connected.fetch_add(1, Relaxed);
        self.last_connected_at_nanos.fetch_max(self.elapsed_nanos(), Relaxed);
    }

    /// Counts an ack.
    pub fn mark_acked(&self) {
        self.acked.fetch_add(1, Relaxed);
        self.last_acked_at_nanos.fetch_max(self.elapsed_nanos(), Relaxed);
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// Delivery counters of one runtime thread.
pub struct ThreadStats {
    /// `availability.updated` messages received.
    pub deliveries: u64,
    /// End-to-end latency, nanoseconds.
    pub latency: Histogram<u64>,
    /// Latest receive time, Unix nanoseconds.
    pub last_delivery_unix_nanos: u64,
    /// Messages of other types received after the ack.
    pub other_messages: u64,
}

impl ThreadStats {
    fn new() -> Self {
        ThreadStats {
            deliveries: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NANOS, 3).expect("static histogram bounds are valid"),
            last_delivery_unix_nanos: 0,
            other_messages: 0,
        }
    }
}

type Slot = Arc<Mutex<ThreadStats>>;

/// Every thread's slot; a thread registers on its first delivery.
static SLOTS: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: OnceCell<Slot> = const { OnceCell::new() };
}

/// Runs `f` on this thread's stats slot.
pub fn with_local<R>(f: impl FnOnce(&mut ThreadStats) -> R) -> R {
    LOCAL.with(|cell| {
        let slot = cell.get_or_init(|| {
            let slot = Arc::new(Mutex::new(ThreadStats::new()));
            SLOTS.lock().expect("stats registry poisoned").push(slot.clone());
            slot
        });
        f(&mut slot.lock().expect("thread stats poisoned"))
    })
}

/// Records one batch of deliveries read at `now_unix_nanos`, one send time
/// per delivery.
pub fn record_deliveries(now_unix_nanos: u64, send_unix_nanos: &[u64]) {
    if send_unix_nanos.is_empty() {
        return;
    }
    with_local(|s| {
        s.deliveries += send_unix_nanos.len() as u64;
        for &sent in send_unix_nanos {
            let latency = now_unix_nanos.saturating_sub(sent).max(1);
            s.latency.saturating_record(latency);
        }
        s.last_delivery_unix_nanos = s.last_delivery_unix_nanos.max(now_unix_nanos);
    });
}

/// Sum of every thread's stats.
pub struct Totals {
    /// Deliveries across threads.
    pub deliveries: u64,
    /// Merged latency histogram (only filled by `totals(true)`).
    pub latency: Histogram<u64>,
    /// Latest delivery, Unix nanoseconds (0: none).
    pub last_delivery_unix_nanos: u64,
    /// Other messages across threads.
    pub other_messages: u64,
}

/// Sums the threads' stats; merges histograms only if `with_latency`.
pub fn totals(with_latency: bool) -> Totals {
    let mut t = Totals {
        deliveries: 0,
        latency: ThreadStats::new().latency,
        last_delivery_unix_nanos: 0,
        other_messages: 0,
    };
    for slot in SLOTS.lock().expect("stats registry poisoned").iter() {
        let s = slot.lock().expect("thread stats poisoned");
        t.deliveries += s.deliveries;
        t.other_messages += s.other_messages;
        t.last_delivery_unix_nanos = t.last_delivery_unix_nanos.max(s.last_delivery_unix_nanos);
        if with_latency {
            t.latency.add(&s.latency).expect("same bounds on every slot");
        }
    }
    t
}

/// Latency quantile from a histogram of nanoseconds, in microseconds.
pub fn quantile_micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

/// Human size: bytes as KiB/MiB/GiB.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_024 => format!("{bytes}B"),
        1_024..1_048_576 => format!("{:.1}KiB", b / 1_024.0),
        1_048_576..1_073_741_824 => format!("{:.1}MiB", b / 1_048_576.0),
        _ => format!("{:.2}GiB", b / 1_073_741_824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_from_two_threads_are_summed() {
        let now = unix_nanos();
        record_deliveries(now, &[now - 1_000, now - 2_000]);
        std::thread::spawn(move || record_deliveries(now + 5, &[now - 3_000]))
            .join()
            .unwrap();
        let t = totals(true);
        // Other tests in this process may record too: check lower bounds.
        assert!(t.deliveries >= 3);
        assert!(t.latency.len() >= 3);
        assert!(t.last_delivery_unix_nanos >= now + 5);
    }

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(3 * 1_048_576), "3.0MiB");
    }
}
