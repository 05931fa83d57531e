//! libFuzzer entry for `fanout_fuzz::http_head` (see fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fanout_fuzz::http_head(data));
