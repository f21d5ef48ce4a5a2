//! Fuzz target `sanitize`: see `qp2p::fuzzing::check_sanitize` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qp2p::fuzzing::check_sanitize(data));
