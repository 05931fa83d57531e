//! Wall-clock time as messages carry it: RFC 3339, UTC, milliseconds.
//!
//! Used by the ingest thread (an event without a `timestamp` gets the time
//! of ingest, SPEC §6) and by the shards (`pong`, SPEC §4). Pure functions,
//! any thread.

use std::io::Write as _;
use std::time::SystemTime;

/// Appends now, quoted as a JSON string, e.g. `"2026-11-24T10:00:00.123Z"`.
pub fn write_now_json(out: &mut Vec<u8>) {
    let now = humantime::format_rfc3339_millis(SystemTime::now());
    write!(out, "\"{now}\"").expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_a_quoted_utc_timestamp_with_millis() {
        let mut out = Vec::new();
        write_now_json(&mut out);
        let text = String::from_utf8(out).expect("ASCII");
        assert_eq!(text.len(), "\"2026-11-24T10:00:00.123Z\"".len(), "{text}");
        assert!(text.starts_with("\"20") && text.ends_with("Z\""), "{text}");
    }
}
