//! libFuzzer entry for `fanout_fuzz::frame` (see fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fanout_fuzz::frame(data));
