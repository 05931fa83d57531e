//! libFuzzer entry for `fanout_fuzz::client_message` (see fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fanout_fuzz::client_message(data));
