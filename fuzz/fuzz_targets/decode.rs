//! libFuzzer entry for `fanout_fuzz::decode_record` (see fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fanout_fuzz::decode_record(data));
