//! The JSON writing every outbound message shares: strings escaped once, by
//! one function.
//!
//! Messages are assembled by hand into a `Vec<u8>` (no intermediate tree):
//! the ingest thread builds event messages (`ingest::decode`), the shards
//! build replies (`protocol::reply`). Values taken from a parsed document are
//! written back with simd-json's own writer.

use simd_json::BorrowedValue as Value;
use simd_json::prelude::*;

/// Appends `s` as a JSON string literal, escaped.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_value(out, &Value::from(s));
}

/// Appends a parsed JSON value.
pub fn write_value(out: &mut Vec<u8>, value: &Value<'_>) {
    value.write(out).expect("writing to a Vec cannot fail");
}

/// Appends `,"name":value`: one more member of an object already opened.
pub fn write_member(out: &mut Vec<u8>, name: &str, value: &Value<'_>) {
    out.push(b',');
    write_str(out, name);
    out.push(b':');
    write_value(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\n\u{1}");
        assert_eq!(out, br#""a\"b\\c\n\u0001""#);
    }
}
