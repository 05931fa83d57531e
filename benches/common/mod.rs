//! Inputs shared by the benches: SPEC §5 envelopes, key names and a tiny
//! deterministic RNG. Included with `mod common;`; not every bench uses all
//! of it.
#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;

/// Samples per benchmark (criterion's default is 100).
pub const SAMPLE_SIZE: usize = 50;

/// Criterion settings that keep the whole suite under three minutes on the
/// 2-core machine; `--measurement-time` etc. on the command line override.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2))
        .sample_size(SAMPLE_SIZE)
        .configure_from_args()
}

/// The two envelope sizes of the decode and route benches.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    /// About 100 bytes: only a course, the availability fields.
    Small,
    /// Exactly 1024 bytes: every routing key, a nested student, notes.
    Large,
}

/// Exact length of a [`Size::Large`] envelope.
pub const LARGE_LEN: usize = 1024;

/// A `booking.created` envelope of SPEC §5 naming `course` (and, when large,
/// `room` and `session`). Key values of equal length give equal sizes.
pub fn booking(size: Size, course: &str, room: &str, session: &str) -> Vec<u8> {
    match size {
        Size::Small => format!(
            r#"{{"timestamp":"2026-11-23T10:00:00Z","payload":{{"data":{{"course_id":"{course}","slots_remaining":4}}}}}}"#
        )
        .into_bytes(),
        Size::Large => {
            let head = format!(
                r#"{{"topic":"booking.created","timestamp":"2026-11-23T10:00:00Z","event_type":"booking.created","payload":{{"id":"bk-1","action":"created","data":{{"booking_id":"bk-0001234","course_id":"{course}","room_id":"{room}","session_id":"{session}","schedule_id":"sch-123","student_id":"st-9","slots_remaining":4,"status":"confirmed","start_time":"2026-11-24T10:00:00Z","end_time":"2026-11-24T11:00:00Z","price":{{"amount":4500,"currency":"EUR"}},"student":{{"id":"st-9","name":"Ada Lovelace","email":"ada@example.org","phone":"+44 20 7946 0000","guardian":null}},"tags":["piano","beginner","weekday"],"notes":""#
            );
            let tail = r#""}}}"#;
            let pad = LARGE_LEN
                .checked_sub(head.len() + tail.len())
                .expect("the large envelope's fixed part fits in 1 KiB");
            let mut out = head.into_bytes();
            out.extend(b"Bring the grade 1 book; lift at the back entrance. ".iter().cycle().take(pad));
            out.extend_from_slice(tail.as_bytes());
            out
        }
    }
}

/// The `i`-th key of a field, e.g. `C-00042`; all of one width.
pub fn key(prefix: char, i: usize) -> String {
    format!("{prefix}-{i:06}")
}

/// xorshift64*: deterministic, dependency-free, good enough to scatter keys.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}
